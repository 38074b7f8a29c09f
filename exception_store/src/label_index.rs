//! The label index: where each label holds elements, by region of addresses.
//!
//! The element tree is keyed by address, so "every address where label `l` holds an
//! element" is a walk of the whole tree. A delete pass needs exactly that set (for
//! the deleted label and its ghost ancestors), so this index keeps it: one entry
//! `(label, region) -> count` per region of [`REGION_CHUNKS`] consecutive addresses
//! in which the label holds at least one element, `count` being how many addresses of
//! the region it holds elements at. A pass then visits only the regions of the labels
//! it watches, and pruning one old snapshot costs work in proportion to the regions
//! its own data touches, not to the store.
//!
//! # Invariants
//! - For every label `l` and region `r`: the entry `(l, r)` exists iff `l` holds an
//!   element at some address of `r`, and its count is the number of such addresses
//!   (`1..=REGION_CHUNKS`). The store keeps this with every element change (one
//!   adjustment per label added to or removed from an address, in the same
//!   transaction as the change); `check` recomputes it from the elements.
//! - Label 0 never appears (the origin never holds elements).
use crate::{format::LABEL_INDEX_TREE_TAG, Result};
use blockdev::{
    ids::{BlockNr, Label},
    le, BlockKind, Corrupt, Reason,
};
use btree::{Codec, MetaAlloc, NodeCache, Tree};
use std::collections::BTreeMap;

/// Addresses per region of the label index.
pub const REGION_CHUNKS: u64 = 64;

/// The region of address `a`.
pub fn region_of(a: u64) -> u64 {
    a / REGION_CHUNKS
}

/// Key of an index entry: a label, then a region (entries of one label are adjacent,
/// in address order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionKey {
    /// The label holding elements.
    pub label: Label,
    /// The region (`address / REGION_CHUNKS`).
    pub region: u64,
}

impl Codec for RegionKey {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        le::put_u32(out, 0, self.label.0);
        le::put_u64(out, 4, self.region);
    }
    fn decode(b: &[u8]) -> std::result::Result<Self, Reason> {
        Ok(RegionKey {
            label: Label(le::get_u32(b, 0)),
            region: le::get_u64(b, 4),
        })
    }
}

/// Counts of a whole index, as recomputed from the elements (for building and
/// checking).
pub type Counts = BTreeMap<RegionKey, u32>;

/// Add one element extent (`len` addresses from `start`) of `label` to `counts`.
pub fn count_extent(counts: &mut Counts, label: Label, start: u64, len: u64) {
    let mut a = start;
    let end = start + len;
    while a < end {
        let region = region_of(a);
        let region_end = ((region + 1) * REGION_CHUNKS).min(end);
        *counts.entry(RegionKey { label, region }).or_default() += (region_end - a) as u32;
        a = region_end;
    }
}

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct LabelIndex {
    tree: Tree<RegionKey, u32>,
}

fn bad_count(region: u64) -> crate::Error {
    crate::Error::Corrupt(Corrupt {
        kind: BlockKind::Reference,
        block: BlockNr(region),
        reason: Reason::BadField,
    })
}

impl LabelIndex {
    /// An empty index.
    pub fn create(cache: &mut NodeCache, alloc: &mut dyn MetaAlloc) -> Result<Self> {
        Ok(LabelIndex {
            tree: Tree::create(cache, alloc, LABEL_INDEX_TREE_TAG)?,
        })
    }

    /// An index filled with `counts`.
    pub fn build(
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        counts: &Counts,
    ) -> Result<Self> {
        let mut ix = Self::create(cache, alloc)?;
        for (k, n) in counts {
            ix.tree.insert(cache, alloc, *k, *n)?;
        }
        Ok(ix)
    }

    /// The committed index rooted at `root`.
    pub fn open(root: BlockNr) -> Self {
        LabelIndex {
            tree: Tree::open(root, LABEL_INDEX_TREE_TAG),
        }
    }

    /// Root block (for the superblock).
    pub fn root(&self) -> BlockNr {
        self.tree.root()
    }

    /// Record that `label` gained (`delta = 1`) or lost (`delta = -1`) its element at
    /// address `a`. A count that would leave `1..=REGION_CHUNKS` means the index
    /// disagrees with the elements: a corruption error.
    pub fn adjust(
        &mut self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        label: Label,
        a: u64,
        delta: i64,
    ) -> Result<()> {
        let k = RegionKey {
            label,
            region: region_of(a),
        };
        let n = self.tree.get(cache, &k)?.unwrap_or(0) as i64 + delta;
        if n < 0 || n > REGION_CHUNKS as i64 {
            return Err(bad_count(k.region));
        }
        if n == 0 {
            self.tree.remove(cache, alloc, &k)?;
        } else {
            self.tree.insert(cache, alloc, k, n as u32)?;
        }
        Ok(())
    }

    /// The lowest region `>= from` where `label` holds elements.
    pub fn next_region(
        &self,
        cache: &mut NodeCache,
        label: Label,
        from: u64,
    ) -> Result<Option<u64>> {
        let lo = RegionKey {
            label,
            region: from,
        };
        Ok(self
            .tree
            .first_from(cache, &lo)?
            .and_then(|(k, _)| (k.label == label).then_some(k.region)))
    }

    /// Whether `label` holds any element.
    pub fn holds_any(&self, cache: &mut NodeCache, label: Label) -> Result<bool> {
        Ok(self.next_region(cache, label, 0)?.is_some())
    }

    /// Visit every node block and every entry (for space rebuild and `check`).
    pub fn walk(
        &self,
        cache: &mut NodeCache,
        on_node: &mut dyn FnMut(BlockNr) -> btree::Result<()>,
        on_entry: &mut dyn FnMut(&RegionKey, &u32) -> btree::Result<()>,
    ) -> Result<()> {
        self.tree.walk(cache, on_node, on_entry)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_counted_per_region() {
        let mut c = Counts::new();
        count_extent(&mut c, Label(3), REGION_CHUNKS - 2, 5);
        count_extent(&mut c, Label(3), 0, 1);
        count_extent(&mut c, Label(4), 7, 1);
        let got: Vec<(u32, u64, u32)> = c.iter().map(|(k, n)| (k.label.0, k.region, *n)).collect();
        assert_eq!(got, vec![(3, 0, 3), (3, 1, 3), (4, 0, 1)]);
    }

    #[test]
    fn key_roundtrip_keeps_order() {
        let a = RegionKey {
            label: Label(1),
            region: u64::MAX,
        };
        let b = RegionKey {
            label: Label(2),
            region: 0,
        };
        let mut buf = [0u8; 12];
        a.encode(&mut buf);
        assert_eq!(RegionKey::decode(&buf).unwrap(), a);
        assert!(a < b);
    }
}
