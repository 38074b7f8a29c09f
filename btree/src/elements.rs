//! The versioned pointers: `(address, label) -> chunk or hole`, with extents.
//!
//! An element says what version `label` (and every version that inherits from it)
//! reads at origin chunk `address`: a chunk of the store, or a hole (zeros). One entry
//! of the underlying tree covers a run of up to [`MAX_EXTENT`] consecutive addresses
//! of one label, mapped to consecutive chunks (or all holes). Callers see single
//! addresses only; extents are split and merged here.
//!
//! One address may carry any number of elements: they are ordinary keys
//! `(address, label)` of the B+tree and spread over as many leaves as needed.
//!
//! # Invariants
//! - For a given label, extents never overlap.
//! - Every extent has `1 <= len <= MAX_EXTENT`; a chunk extent fits in 48 bits.
use crate::{Codec, MetaAlloc, NodeCache, Result, Tree, TreeStats};
use blockdev::{
    ids::{Addr, BlockNr, ChunkNr, Label},
    le, Reason,
};

/// Longest run of addresses one entry covers. Lookups scan this far back.
pub const MAX_EXTENT: u32 = 16;
/// Highest chunk number an element can name (48 bits).
pub const MAX_CHUNK: u64 = (1 << 48) - 1;
/// Encoded chunk number of a hole.
pub const HOLE_ENCODING: u64 = u64::MAX;
/// The tree tag of the element tree.
pub const ELEMENTS_TREE_TAG: u8 = 1;

/// What an element points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ptr {
    /// A chunk of the store holding the data.
    Chunk(ChunkNr),
    /// Reads as zeros.
    Hole,
}

/// Key of an element extent: its first address and its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElemKey {
    /// First origin chunk address covered.
    pub addr: Addr,
    /// The version it belongs to.
    pub label: Label,
}

/// Value of an element extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElemVal {
    /// Where the first address's data is.
    pub ptr: Ptr,
    /// How many consecutive addresses (and chunks) it covers.
    pub len: u32,
}

impl ElemVal {
    /// The pointer for address `addr` of an extent starting at `start`.
    pub fn ptr_at(&self, start: Addr, addr: Addr) -> Ptr {
        match self.ptr {
            Ptr::Hole => Ptr::Hole,
            Ptr::Chunk(c) => Ptr::Chunk(ChunkNr(c.0 + (addr.0 - start.0))),
        }
    }
}

impl Codec for ElemKey {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        le::put_u64(out, 0, self.addr.0);
        le::put_u32(out, 8, self.label.0);
    }
    fn decode(b: &[u8]) -> std::result::Result<Self, Reason> {
        Ok(ElemKey {
            addr: Addr(le::get_u64(b, 0)),
            label: Label(le::get_u32(b, 8)),
        })
    }
}

impl Codec for ElemVal {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        let p = match self.ptr {
            Ptr::Chunk(c) => c.0,
            Ptr::Hole => HOLE_ENCODING,
        };
        le::put_u64(out, 0, p);
        le::put_u32(out, 8, self.len);
    }
    fn decode(b: &[u8]) -> std::result::Result<Self, Reason> {
        let p = le::get_u64(b, 0);
        let len = le::get_u32(b, 8);
        if len == 0 || len > MAX_EXTENT {
            return Err(Reason::BadField);
        }
        let ptr = if p == HOLE_ENCODING {
            Ptr::Hole
        } else if p + len as u64 - 1 > MAX_CHUNK {
            return Err(Reason::OutOfRange);
        } else {
            Ptr::Chunk(ChunkNr(p))
        };
        Ok(ElemVal { ptr, len })
    }
}

/// The element index; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Elements {
    tree: Tree<ElemKey, ElemVal>,
}

fn contiguous(a: &ElemVal, b: Ptr) -> bool {
    match (a.ptr, b) {
        (Ptr::Hole, Ptr::Hole) => true,
        (Ptr::Chunk(x), Ptr::Chunk(y)) => x.0 + a.len as u64 == y.0,
        _ => false,
    }
}

impl Elements {
    /// A new, empty index.
    pub fn create(cache: &mut NodeCache, alloc: &mut dyn MetaAlloc) -> Result<Self> {
        Ok(Elements {
            tree: Tree::create(cache, alloc, ELEMENTS_TREE_TAG)?,
        })
    }

    /// The index rooted at `root`.
    pub fn open(root: BlockNr) -> Self {
        Elements {
            tree: Tree::open(root, ELEMENTS_TREE_TAG),
        }
    }

    /// The root block, for the superblock.
    pub fn root(&self) -> BlockNr {
        self.tree.root()
    }

    fn scan_start(a: Addr) -> ElemKey {
        ElemKey {
            addr: Addr(a.0.saturating_sub(MAX_EXTENT as u64 - 1)),
            label: Label(0),
        }
    }

    /// Every element at address `a`, sorted by label.
    pub fn at(&self, cache: &mut NodeCache, a: Addr) -> Result<Vec<(Label, Ptr)>> {
        let mut out = Vec::new();
        self.tree
            .range_from(cache, &Self::scan_start(a), &mut |k, v| {
                if k.addr > a {
                    return false;
                }
                if k.addr.0 + v.len as u64 > a.0 {
                    out.push((k.label, v.ptr_at(k.addr, a)));
                }
                true
            })?;
        out.sort_by_key(|e| e.0);
        Ok(out)
    }

    /// The extent of `label` that covers `a`.
    fn find(
        &self,
        cache: &mut NodeCache,
        a: Addr,
        label: Label,
    ) -> Result<Option<(ElemKey, ElemVal)>> {
        let mut found = None;
        self.tree
            .range_from(cache, &Self::scan_start(a), &mut |k, v| {
                if k.addr > a {
                    return false;
                }
                if k.label == label && k.addr.0 + v.len as u64 > a.0 {
                    found = Some((k, v));
                    return false;
                }
                true
            })?;
        Ok(found)
    }

    /// The element of `label` at `a`.
    pub fn get(&self, cache: &mut NodeCache, a: Addr, label: Label) -> Result<Option<Ptr>> {
        Ok(self
            .find(cache, a, label)?
            .map(|(k, v)| v.ptr_at(k.addr, a)))
    }

    /// Remove the element of `label` at `a`; returns what it pointed at.
    pub fn remove(
        &mut self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        a: Addr,
        label: Label,
    ) -> Result<Option<Ptr>> {
        let Some((k, v)) = self.find(cache, a, label)? else {
            return Ok(None);
        };
        let ptr = v.ptr_at(k.addr, a);
        let end = k.addr.0 + v.len as u64;
        if a.0 > k.addr.0 {
            let left = ElemVal {
                ptr: v.ptr,
                len: (a.0 - k.addr.0) as u32,
            };
            self.tree.insert(cache, alloc, k, left)?;
        } else {
            self.tree.remove(cache, alloc, &k)?;
        }
        if end > a.0 + 1 {
            let rk = ElemKey {
                addr: Addr(a.0 + 1),
                label,
            };
            let rv = ElemVal {
                ptr: v.ptr_at(k.addr, rk.addr),
                len: (end - a.0 - 1) as u32,
            };
            self.tree.insert(cache, alloc, rk, rv)?;
        }
        Ok(Some(ptr))
    }

    /// Set the element of `label` at `a` to `ptr`, merging with neighbouring extents
    /// of the same label when contiguous; returns what it pointed at before.
    pub fn set(
        &mut self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        a: Addr,
        label: Label,
        ptr: Ptr,
    ) -> Result<Option<Ptr>> {
        let old = self.remove(cache, alloc, a, label)?;
        if let Ptr::Chunk(c) = ptr {
            if c.0 > MAX_CHUNK {
                return Err(crate::tree::corrupt(BlockNr(0), Reason::OutOfRange));
            }
        }
        // Start a new extent, or extend the one ending at a - 1.
        let mut key = ElemKey { addr: a, label };
        let mut val = ElemVal { ptr, len: 1 };
        if a.0 > 0 {
            if let Some((pk, pv)) = self.find(cache, Addr(a.0 - 1), label)? {
                if pv.len < MAX_EXTENT && contiguous(&pv, ptr) {
                    key = pk;
                    val = ElemVal {
                        ptr: pv.ptr,
                        len: pv.len + 1,
                    };
                }
            }
        }
        // Absorb the extent starting at a + 1.
        let nk = ElemKey {
            addr: Addr(a.0 + 1),
            label,
        };
        if let Some(nv) = self.tree.get(cache, &nk)? {
            let next_ptr = nv.ptr;
            if val.len + nv.len <= MAX_EXTENT && contiguous(&val, next_ptr) {
                self.tree.remove(cache, alloc, &nk)?;
                val.len += nv.len;
            }
        }
        self.tree.insert(cache, alloc, key, val)?;
        Ok(old)
    }

    /// The lowest address `>= from` that carries any element.
    pub fn next_populated(&self, cache: &mut NodeCache, from: Addr) -> Result<Option<Addr>> {
        let mut found = None;
        self.tree
            .range_from(cache, &Self::scan_start(from), &mut |k, v| {
                if k.addr.0 + v.len as u64 > from.0 {
                    found = Some(Addr(k.addr.0.max(from.0)));
                    return false;
                }
                true
            })?;
        Ok(found)
    }

    /// The lowest address in `from..to` where a label `wanted` accepts holds an
    /// element (one range scan over the addresses, however many labels they carry).
    pub fn next_of_labels(
        &self,
        cache: &mut NodeCache,
        from: Addr,
        to: Addr,
        wanted: &dyn Fn(Label) -> bool,
    ) -> Result<Option<Addr>> {
        let mut found = None;
        self.tree
            .range_from(cache, &Self::scan_start(from), &mut |k, v| {
                if k.addr >= to {
                    return false;
                }
                // keys ascend by address, so the first match is the lowest address
                if k.addr.0 + v.len as u64 > from.0 && wanted(k.label) {
                    found = Some(Addr(k.addr.0.max(from.0)));
                    return false;
                }
                true
            })?;
        Ok(found)
    }

    /// Visit, in key order, every extent that covers an address in `from..to`, of any
    /// label (one range scan: the cost is the extents of the range, however large
    /// the address space around it).
    pub fn overlapping(
        &self,
        cache: &mut NodeCache,
        from: Addr,
        to: Addr,
        visit: &mut dyn FnMut(&ElemKey, &ElemVal),
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        self.tree
            .range_from(cache, &Self::scan_start(from), &mut |k, v| {
                if k.addr >= to {
                    return false;
                }
                if k.addr.0 + v.len as u64 > from.0 {
                    visit(&k, &v);
                }
                true
            })?;
        Ok(())
    }

    /// Visit every node block and every extent (for space rebuild and `check`).
    pub fn walk(
        &self,
        cache: &mut NodeCache,
        on_node: &mut dyn FnMut(BlockNr) -> Result<()>,
        on_extent: &mut dyn FnMut(&ElemKey, &ElemVal) -> Result<()>,
    ) -> Result<TreeStats> {
        self.tree.walk(cache, on_node, on_extent)
    }
}

#[cfg(test)]
mod tests;
