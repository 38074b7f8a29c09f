//! The chunk allocator: which chunks of the store hold data, which hold metadata
//! blocks, which are free.
//!
//! The allocator is not persisted: on open it is rebuilt from the committed trees
//! (every node block and every element's chunks), which are the only truth. That walk
//! also proves that nothing is referenced twice. A metadata chunk is cut into 4 KiB
//! blocks handed out to the B-trees one by one.
//!
//! # Invariants
//! - A chunk or block freed in the open transaction is not reused before it commits
//!   (`pending_*`), since the committed trees may still reference it.
//! - A commit whose superblock is still being written ([`Allocator::seal`]) keeps
//!   its frees apart (`sealed_*`) until that superblock is durable
//!   ([`Allocator::release_sealed`]): frees of the transaction opened meanwhile are
//!   not released with them.
//! - `fresh` holds the data chunks allocated in the open transaction: nothing committed
//!   or being committed references them, so they may be overwritten in place freely.
use crate::{format::*, Error, Result, Space};
use blockdev::{
    ids::{BlockNr, ChunkNr},
    BlockKind, Corrupt, Reason,
};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Metadata blocks that must stay allocatable after an ordinary operation's data
/// (a copy-out, a snapshot write, a create) is allocated: the operation's own tree
/// changes come out of it, and [`REMEDY_RESERVE_BLOCKS`] of it are never touched by
/// ordinary operations. Larger operations ask for more ([`Allocator::ensure_for`]).
pub const META_RESERVE_BLOCKS: u64 = 256;

/// The part of the reserve kept for remedies: deleting a snapshot (its commit), the
/// steps of the background pass that frees its space, and their commits. Ordinary
/// operations refuse before they would allocate into it, so that deleting a
/// snapshot on a full store always frees space (issue 20; docs/architecture.md,
/// "A full store").
pub const REMEDY_RESERVE_BLOCKS: u64 = 128;

/// The tallest B-tree the bounds below assume: nodes of 4 KiB hold at least ~100
/// entries, so six levels index more than 10^12 keys.
pub const MAX_TREE_HEIGHT: u64 = 6;

/// Most metadata blocks one key change of one B-tree allocates in a transaction: a
/// copy of every node on the root-to-leaf path, a split at every level, a new root.
pub const TREE_CHANGE_BLOCKS: u64 = 2 * MAX_TREE_HEIGHT + 1;

/// Most metadata blocks one element change allocates: its key in the element tree
/// and its (label, region) count in the label index.
pub const ELEM_CHANGE_BLOCKS: u64 = 2 * TREE_CHANGE_BLOCKS;

#[derive(Debug, Clone)]
struct MetaChunk {
    used: Vec<bool>,
    nr_used: usize,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Allocator {
    nr_chunks: u64,
    blocks_per_chunk: u64,
    used: Vec<bool>,
    nr_used: u64,
    meta: HashMap<u64, MetaChunk>,
    meta_partial: BTreeSet<u64>,
    pending_chunks: Vec<ChunkNr>,
    pending_blocks: Vec<BlockNr>,
    /// The frees of the sealed transaction, whose superblock is on its way.
    sealed_chunks: Vec<ChunkNr>,
    sealed_blocks: Vec<BlockNr>,
    fresh: HashSet<ChunkNr>,
    hint: u64,
    reserved: u64,
    /// Calls that allocated or freed anything, or tried to ([`Allocator::ops`]).
    ops: u64,
}

fn double(b: u64) -> Error {
    Error::Corrupt(Corrupt {
        kind: BlockKind::Reference,
        block: BlockNr(b),
        reason: Reason::DoubleReference,
    })
}

fn out_of_range(b: u64) -> Error {
    Error::Corrupt(Corrupt {
        kind: BlockKind::Reference,
        block: BlockNr(b),
        reason: Reason::OutOfRange,
    })
}

impl Allocator {
    /// Everything free but the chunks that hold the superblock slots.
    pub fn new(store_len: u64, chunk_size: u32) -> Self {
        let nr_chunks = store_len / chunk_size as u64;
        let blocks_per_chunk = chunk_size as u64 / BLOCK_SIZE;
        let reserved = (NR_SUPERBLOCK_SLOTS * BLOCK_SIZE).div_ceil(chunk_size as u64);
        let mut used = vec![false; nr_chunks as usize];
        for u in used.iter_mut().take(reserved as usize) {
            *u = true;
        }
        Allocator {
            nr_chunks,
            blocks_per_chunk,
            used,
            nr_used: reserved.min(nr_chunks),
            meta: HashMap::new(),
            meta_partial: BTreeSet::new(),
            pending_chunks: Vec::new(),
            pending_blocks: Vec::new(),
            sealed_chunks: Vec::new(),
            sealed_blocks: Vec::new(),
            fresh: HashSet::new(),
            hint: reserved,
            reserved,
            ops: 0,
        }
    }

    /// Take `nr_chunks` chunks in all (more than now): the new ones are free. Nothing
    /// references them, so they are allocatable at once; the superblock that records
    /// the new store length commits with (or before) anything placed in them.
    pub fn grow(&mut self, nr_chunks: u64) {
        if nr_chunks > self.nr_chunks {
            self.used.resize(nr_chunks as usize, false);
            self.nr_chunks = nr_chunks;
        }
    }

    /// How many allocations and frees were made or tried so far. A space refusal
    /// records it: an error with no allocator call since its refusal changed no tree
    /// (`Store::latching`).
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Total chunks on the store.
    pub fn nr_chunks(&self) -> u64 {
        self.nr_chunks
    }
    /// Chunks in use (data, metadata, superblock), counting pending frees as used.
    pub fn nr_used(&self) -> u64 {
        self.nr_used
    }
    /// Chunks free now.
    pub fn nr_free(&self) -> u64 {
        self.nr_chunks - self.nr_used
    }
    /// Chunks holding metadata.
    pub fn nr_meta_chunks(&self) -> u64 {
        self.meta.len() as u64
    }
    /// Chunks reserved for the superblocks.
    pub fn nr_reserved(&self) -> u64 {
        self.reserved
    }
    /// Whether `c` was allocated in the open transaction.
    pub fn is_fresh(&self, c: ChunkNr) -> bool {
        self.fresh.contains(&c)
    }

    /// Fail with `NoSpace` unless `data` chunks plus the metadata reserve are free.
    pub fn ensure(&self, data: u64) -> Result<()> {
        self.ensure_for(data, 0)
    }

    /// Fail with `NoSpace` unless `data` chunks are free beside metadata room for
    /// `elem_changes` element changes ([`ELEM_CHANGE_BLOCKS`] each) on top of the
    /// remedy reserve, and never less than [`META_RESERVE_BLOCKS`]: the check of an
    /// ordinary operation, made before it changes anything.
    pub fn ensure_for(&self, data: u64, elem_changes: u64) -> Result<()> {
        let meta = (REMEDY_RESERVE_BLOCKS + elem_changes.saturating_mul(ELEM_CHANGE_BLOCKS))
            .max(META_RESERVE_BLOCKS);
        self.ensure_blocks(data, meta)
    }

    /// Fail with `NoSpace(Metadata)` unless `blocks` metadata blocks can be
    /// allocated: the check of a remedy step (a delete's pass), which may use the
    /// remedy reserve.
    pub fn ensure_meta(&self, blocks: u64) -> Result<()> {
        self.ensure_blocks(0, blocks)
    }

    /// Metadata blocks allocatable now (free blocks of partly used metadata chunks
    /// and every free chunk cut into blocks).
    pub fn meta_headroom(&self) -> u64 {
        self.partial_meta_free() + self.nr_free() * self.blocks_per_chunk
    }

    fn partial_meta_free(&self) -> u64 {
        self.meta_partial
            .iter()
            .map(|c| self.blocks_per_chunk - self.meta[c].nr_used as u64)
            .sum()
    }

    fn ensure_blocks(&self, data: u64, meta_blocks: u64) -> Result<()> {
        let need_meta_chunks = meta_blocks
            .saturating_sub(self.partial_meta_free())
            .div_ceil(self.blocks_per_chunk);
        if self.nr_free() < data.saturating_add(need_meta_chunks) {
            return Err(Error::NoSpace(if self.nr_free() < need_meta_chunks {
                Space::Metadata
            } else {
                Space::Data
            }));
        }
        Ok(())
    }

    fn take_chunk(&mut self) -> Option<u64> {
        if self.nr_used >= self.nr_chunks {
            return None;
        }
        let n = self.nr_chunks;
        for i in 0..n {
            let c = (self.hint + i) % n;
            if !self.used[c as usize] {
                self.used[c as usize] = true;
                self.nr_used += 1;
                self.hint = c + 1;
                return Some(c);
            }
        }
        None
    }

    /// A free data chunk (next-fit, so sequential copy-outs form extents).
    pub fn alloc_chunk(&mut self) -> Result<ChunkNr> {
        self.ops += 1;
        let c = self.take_chunk().ok_or(Error::NoSpace(Space::Data))?;
        self.fresh.insert(ChunkNr(c));
        Ok(ChunkNr(c))
    }

    /// Give back at once a data chunk that nothing has ever referenced (a copy-out's
    /// chunk that was not linked): no committed tree can name it, so it need not wait
    /// for a commit.
    pub fn unalloc_chunk(&mut self, c: ChunkNr) {
        self.ops += 1;
        self.fresh.remove(&c);
        if let Some(u) = self.used.get_mut(c.0 as usize) {
            if *u {
                *u = false;
                self.nr_used -= 1;
            }
        }
    }

    /// Give a data chunk back (reusable after commit).
    pub fn free_chunk(&mut self, c: ChunkNr) {
        self.ops += 1;
        self.pending_chunks.push(c);
    }

    /// The open transaction committed: pending frees become free.
    pub fn commit(&mut self) {
        self.seal();
        self.release_sealed();
    }

    /// The open transaction's superblock is built and a new transaction opens: its
    /// frees wait apart until that superblock is durable
    /// ([`release_sealed`](Self::release_sealed)), and what it allocated is no longer
    /// fresh (the superblock on its way references it).
    pub fn seal(&mut self) {
        self.sealed_chunks.append(&mut self.pending_chunks);
        self.sealed_blocks.append(&mut self.pending_blocks);
        self.fresh.clear();
    }

    /// The sealed transaction is durable: its frees become free. Returns whether
    /// data chunks were among them (`Store::frees`).
    pub fn release_sealed(&mut self) -> bool {
        let chunks = !self.sealed_chunks.is_empty();
        for c in std::mem::take(&mut self.sealed_chunks) {
            if self.used[c.0 as usize] {
                self.used[c.0 as usize] = false;
                self.nr_used -= 1;
            }
        }
        for b in std::mem::take(&mut self.sealed_blocks) {
            let c = b.0 / self.blocks_per_chunk;
            let i = (b.0 % self.blocks_per_chunk) as usize;
            let Some(m) = self.meta.get_mut(&c) else {
                continue;
            };
            if m.used[i] {
                m.used[i] = false;
                m.nr_used -= 1;
            }
            if m.nr_used == 0 {
                self.meta.remove(&c);
                self.meta_partial.remove(&c);
                self.used[c as usize] = false;
                self.nr_used -= 1;
            } else {
                self.meta_partial.insert(c);
            }
        }
        chunks
    }

    /// Mark a data chunk referenced by a committed element (rebuild on open).
    pub fn mark_chunk(&mut self, c: ChunkNr) -> Result<()> {
        if c.0 >= self.nr_chunks || c.0 < self.reserved {
            return Err(out_of_range(c.0));
        }
        if self.used[c.0 as usize] {
            return Err(double(c.0));
        }
        self.used[c.0 as usize] = true;
        self.nr_used += 1;
        Ok(())
    }

    /// Mark a metadata block referenced by a committed tree (rebuild on open).
    pub fn mark_block(&mut self, b: BlockNr) -> Result<()> {
        let c = b.0 / self.blocks_per_chunk;
        if c >= self.nr_chunks || c < self.reserved {
            return Err(out_of_range(b.0));
        }
        let bpc = self.blocks_per_chunk as usize;
        if !self.meta.contains_key(&c) {
            if self.used[c as usize] {
                return Err(double(b.0));
            }
            self.used[c as usize] = true;
            self.nr_used += 1;
            self.meta.insert(
                c,
                MetaChunk {
                    used: vec![false; bpc],
                    nr_used: 0,
                },
            );
        }
        let Some(m) = self.meta.get_mut(&c) else {
            return Err(double(b.0));
        };
        let i = (b.0 % self.blocks_per_chunk) as usize;
        if m.used[i] {
            return Err(double(b.0));
        }
        m.used[i] = true;
        m.nr_used += 1;
        if m.nr_used < bpc {
            self.meta_partial.insert(c);
        } else {
            self.meta_partial.remove(&c);
        }
        Ok(())
    }

    /// Chunks in use that are data chunks, and metadata blocks in use (for `check`).
    pub fn snapshot_usage(&self) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let mut data = BTreeSet::new();
        for c in self.reserved..self.nr_chunks {
            if self.used[c as usize] && !self.meta.contains_key(&c) {
                data.insert(c);
            }
        }
        let mut blocks = BTreeSet::new();
        for (c, m) in &self.meta {
            for (i, u) in m.used.iter().enumerate() {
                if *u {
                    blocks.insert(c * self.blocks_per_chunk + i as u64);
                }
            }
        }
        (data, blocks)
    }

    /// Frees not released yet, the open transaction's and the sealed one's
    /// (chunks, blocks), for `check` of an open store.
    pub fn pending(&self) -> (Vec<ChunkNr>, Vec<BlockNr>) {
        let chunks = self.pending_chunks.iter().chain(&self.sealed_chunks);
        let blocks = self.pending_blocks.iter().chain(&self.sealed_blocks);
        (chunks.copied().collect(), blocks.copied().collect())
    }
}

impl btree::MetaAlloc for Allocator {
    fn alloc_block(&mut self) -> btree::Result<BlockNr> {
        self.ops += 1;
        if let Some(&c) = self.meta_partial.iter().next() {
            let bpc = self.blocks_per_chunk;
            let Some(m) = self.meta.get_mut(&c) else {
                return Err(btree::Error::NoSpace);
            };
            if let Some(i) = m.used.iter().position(|u| !u) {
                m.used[i] = true;
                m.nr_used += 1;
                if m.nr_used as u64 == bpc {
                    self.meta_partial.remove(&c);
                }
                return Ok(BlockNr(c * bpc + i as u64));
            }
            self.meta_partial.remove(&c);
        }
        let c = self.take_chunk().ok_or(btree::Error::NoSpace)?;
        let bpc = self.blocks_per_chunk as usize;
        let mut m = MetaChunk {
            used: vec![false; bpc],
            nr_used: 1,
        };
        m.used[0] = true;
        if bpc > 1 {
            self.meta_partial.insert(c);
        }
        self.meta.insert(c, m);
        Ok(BlockNr(c * self.blocks_per_chunk))
    }

    fn free_block(&mut self, b: BlockNr) {
        self.ops += 1;
        self.pending_blocks.push(b);
    }
}
