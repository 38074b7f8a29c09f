//! A copy-on-write B+tree with fixed-size keys and values.
//!
//! The tree is a root block number plus a tag; every operation takes the
//! [`NodeCache`] and, when it changes the tree, a [`MetaAlloc`]. Changing a node
//! written by an earlier transaction allocates a new block for it ("shadowing"), frees
//! the old one (reusable only after commit) and changes its parent the same way, up to
//! a new root. The caller stores the new [`Tree::root`] in its superblock at commit.
//!
//! Leaves hold `(K, V)` entries in key order; internal nodes hold `(K, child)` where
//! the key of entry `i > 0` is a lower bound of child `i` and an upper bound (exclusive)
//! of child `i - 1`. The key of entry 0 is not a bound.
mod insert;
mod remove;
mod walk;

pub use walk::TreeStats;

use crate::{
    format::{capacity, CHILD_SIZE, MAX_DEPTH},
    node::Node,
    Codec, Error, MetaAlloc, NodeCache, Result,
};
use blockdev::{ids::BlockNr, le, BlockKind, Corrupt, Reason};
use std::{marker::PhantomData, sync::Arc};

/// A B+tree of `K -> V`; see the module documentation.
pub struct Tree<K, V> {
    root: BlockNr,
    tag: u8,
    _p: PhantomData<(K, V)>,
}

impl<K, V> Clone for Tree<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for Tree<K, V> {}

impl<K, V> std::fmt::Debug for Tree<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tree(tag {}, root {})", self.tag, self.root)
    }
}

pub(crate) fn corrupt(block: BlockNr, reason: Reason) -> Error {
    Error::Corrupt(Corrupt {
        kind: BlockKind::Node,
        block,
        reason,
    })
}

impl<K: Codec + Ord, V: Codec> Tree<K, V> {
    pub(crate) const LEAF_ESIZE: usize = K::SIZE + V::SIZE;
    pub(crate) const INT_ESIZE: usize = K::SIZE + CHILD_SIZE;
    pub(crate) const LEAF_CAP: usize = capacity(K::SIZE + V::SIZE);
    pub(crate) const INT_CAP: usize = capacity(K::SIZE + CHILD_SIZE);

    /// A new, empty tree (one empty leaf) in the open transaction.
    pub fn create(cache: &mut NodeCache, alloc: &mut dyn MetaAlloc, tag: u8) -> Result<Self> {
        let b = alloc.alloc_block()?;
        let mut n = Node::new(true, tag);
        n.relocate(b, cache.txn());
        cache.put_dirty(n)?;
        Ok(Self::open(b, tag))
    }

    /// The tree whose root is `root` (read from a superblock; verified when read).
    pub fn open(root: BlockNr, tag: u8) -> Self {
        Tree {
            root,
            tag,
            _p: PhantomData,
        }
    }

    /// The root block, to store at commit.
    pub fn root(&self) -> BlockNr {
        self.root
    }

    pub(crate) fn read(&self, cache: &mut NodeCache, b: BlockNr) -> Result<Arc<Node>> {
        let validate = |n: &Node| -> std::result::Result<(), Reason> {
            let esize = if n.is_leaf() {
                Self::LEAF_ESIZE
            } else {
                Self::INT_ESIZE
            };
            let mut prev: Option<K> = None;
            for i in 0..n.nr_entries() {
                let k = K::decode(&n.entry(i, esize)[..K::SIZE])?;
                if n.is_leaf() {
                    V::decode(&n.entry(i, esize)[K::SIZE..])?;
                }
                if let Some(p) = prev {
                    if p >= k {
                        return Err(Reason::KeysOutOfOrder);
                    }
                }
                prev = Some(k);
            }
            Ok(())
        };
        cache.read(b, self.tag, (Self::LEAF_ESIZE, Self::INT_ESIZE), &validate)
    }

    /// Read a node for change: a private copy, relocated to a new block if it belongs
    /// to an earlier transaction (the old block is freed).
    pub(crate) fn shadow(
        &self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        b: BlockNr,
    ) -> Result<Node> {
        let n = self.read(cache, b)?;
        let mut n = (*n).clone();
        if n.txn() != cache.txn() {
            let nb = alloc.alloc_block()?;
            alloc.free_block(b);
            cache.forget(b);
            n.relocate(nb, cache.txn());
        }
        Ok(n)
    }

    pub(crate) fn new_node(
        &self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        mut n: Node,
    ) -> Result<BlockNr> {
        let b = alloc.alloc_block()?;
        n.relocate(b, cache.txn());
        cache.put_dirty(n)?;
        Ok(b)
    }

    pub(crate) fn free(&self, cache: &mut NodeCache, alloc: &mut dyn MetaAlloc, b: BlockNr) {
        alloc.free_block(b);
        cache.forget(b);
    }

    pub(crate) fn key_at(n: &Node, i: usize) -> K {
        let esize = if n.is_leaf() {
            Self::LEAF_ESIZE
        } else {
            Self::INT_ESIZE
        };
        // Verified on read: keys of a cached node decode.
        match K::decode(&n.entry(i, esize)[..K::SIZE]) {
            Ok(k) => k,
            Err(_) => unreachable!("key verified when the node was read"),
        }
    }

    pub(crate) fn value_at(n: &Node, i: usize) -> V {
        match V::decode(&n.entry(i, Self::LEAF_ESIZE)[K::SIZE..]) {
            Ok(v) => v,
            Err(_) => unreachable!("value verified when the node was read"),
        }
    }

    pub(crate) fn child_at(n: &Node, i: usize) -> BlockNr {
        BlockNr(le::get_u64(n.entry(i, Self::INT_ESIZE), K::SIZE))
    }

    pub(crate) fn set_child(n: &mut Node, i: usize, b: BlockNr) {
        le::put_u64(n.entry_mut(i, Self::INT_ESIZE), K::SIZE, b.0);
    }

    pub(crate) fn leaf_entry(k: &K, v: &V) -> Vec<u8> {
        let mut e = vec![0u8; Self::LEAF_ESIZE];
        k.encode(&mut e[..K::SIZE]);
        v.encode(&mut e[K::SIZE..]);
        e
    }

    pub(crate) fn internal_entry(k: &K, b: BlockNr) -> Vec<u8> {
        let mut e = vec![0u8; Self::INT_ESIZE];
        k.encode(&mut e[..K::SIZE]);
        le::put_u64(&mut e, K::SIZE, b.0);
        e
    }

    /// Position of `k` in a leaf: `Ok(i)` if present, `Err(i)` where it would go.
    pub(crate) fn search_leaf(n: &Node, k: &K) -> std::result::Result<usize, usize> {
        let (mut lo, mut hi) = (0, n.nr_entries());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match Self::key_at(n, mid).cmp(k) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The child of an internal node whose range holds `k`.
    pub(crate) fn search_internal(n: &Node, k: &K) -> usize {
        // last i > 0 with key[i] <= k, else 0
        let (mut lo, mut hi) = (1, n.nr_entries());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if Self::key_at(n, mid) <= *k {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - 1
    }

    /// The value of `k`.
    pub fn get(&self, cache: &mut NodeCache, k: &K) -> Result<Option<V>> {
        let mut b = self.root;
        for _ in 0..MAX_DEPTH {
            let n = self.read(cache, b)?;
            if n.is_leaf() {
                return Ok(match Self::search_leaf(&n, k) {
                    Ok(i) => Some(Self::value_at(&n, i)),
                    Err(_) => None,
                });
            }
            b = Self::child_at(&n, Self::search_internal(&n, k));
        }
        Err(corrupt(b, Reason::TooDeep))
    }

    /// Call `f` on every entry with key `>= lo`, in order, until it returns `false`.
    pub fn range_from(
        &self,
        cache: &mut NodeCache,
        lo: &K,
        f: &mut dyn FnMut(K, V) -> bool,
    ) -> Result<()> {
        self.range_rec(cache, self.root, lo, f, 0).map(|_| ())
    }

    fn range_rec(
        &self,
        cache: &mut NodeCache,
        b: BlockNr,
        lo: &K,
        f: &mut dyn FnMut(K, V) -> bool,
        depth: usize,
    ) -> Result<bool> {
        if depth >= MAX_DEPTH {
            return Err(corrupt(b, Reason::TooDeep));
        }
        let n = self.read(cache, b)?;
        if n.is_leaf() {
            let start = match Self::search_leaf(&n, lo) {
                Ok(i) | Err(i) => i,
            };
            for i in start..n.nr_entries() {
                if !f(Self::key_at(&n, i), Self::value_at(&n, i)) {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let start = Self::search_internal(&n, lo);
        for i in start..n.nr_entries() {
            if !self.range_rec(cache, Self::child_at(&n, i), lo, f, depth + 1)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The first entry with key `>= lo`.
    pub fn first_from(&self, cache: &mut NodeCache, lo: &K) -> Result<Option<(K, V)>> {
        let mut out = None;
        self.range_from(cache, lo, &mut |k, v| {
            out = Some((k, v));
            false
        })?;
        Ok(out)
    }

    /// Every entry with `lo <= key <= hi`, in order.
    pub fn collect_range(&self, cache: &mut NodeCache, lo: &K, hi: &K) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        self.range_from(cache, lo, &mut |k, v| {
            if k > *hi {
                return false;
            }
            out.push((k, v));
            true
        })?;
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests;
