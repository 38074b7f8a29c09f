//! Insert (or replace) one entry, splitting full nodes on the way back up.
use super::{corrupt, Tree};
use crate::{format::MAX_DEPTH, node::Node, Codec, MetaAlloc, NodeCache, Result};
use blockdev::{ids::BlockNr, Reason};

enum Outcome<K> {
    /// The subtree now lives at this block.
    Moved(BlockNr),
    /// The subtree split in two: left block, first key of the right, right block.
    Split(BlockNr, K, BlockNr),
}

impl<K: Codec + Ord, V: Codec> Tree<K, V> {
    /// Set `k` to `v`; returns the value it replaced.
    pub fn insert(
        &mut self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        k: K,
        v: V,
    ) -> Result<Option<V>> {
        let (out, old) = self.insert_rec(cache, alloc, self.root, &k, &v, 0)?;
        match out {
            Outcome::Moved(b) => self.root = b,
            Outcome::Split(l, sep, r) => {
                let mut root = Node::new(false, self.tag);
                let lk = Self::key_at(&*self.read(cache, l)?, 0);
                root.insert_entry(0, Self::INT_ESIZE, &Self::internal_entry(&lk, l));
                root.insert_entry(1, Self::INT_ESIZE, &Self::internal_entry(&sep, r));
                self.root = self.new_node(cache, alloc, root)?;
            }
        }
        Ok(old)
    }

    fn insert_rec(
        &self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        b: BlockNr,
        k: &K,
        v: &V,
        depth: usize,
    ) -> Result<(Outcome<K>, Option<V>)> {
        if depth >= MAX_DEPTH {
            return Err(corrupt(b, Reason::TooDeep));
        }
        let n = self.read(cache, b)?;
        if n.is_leaf() {
            let pos = Self::search_leaf(&n, k);
            let mut n = self.shadow(cache, alloc, b)?;
            let nb = n.blocknr();
            match pos {
                Ok(i) => {
                    let old = Self::value_at(&n, i);
                    n.entry_mut(i, Self::LEAF_ESIZE)
                        .copy_from_slice(&Self::leaf_entry(k, v));
                    cache.put_dirty(n)?;
                    Ok((Outcome::Moved(nb), Some(old)))
                }
                Err(i) => {
                    let e = Self::leaf_entry(k, v);
                    let out = self.insert_entry(
                        cache,
                        alloc,
                        n,
                        i,
                        &e,
                        Self::LEAF_ESIZE,
                        Self::LEAF_CAP,
                    )?;
                    Ok((out, None))
                }
            }
        } else {
            let idx = Self::search_internal(&n, k);
            let child = Self::child_at(&n, idx);
            let (out, old) = self.insert_rec(cache, alloc, child, k, v, depth + 1)?;
            match out {
                Outcome::Moved(c) if c == child => Ok((Outcome::Moved(b), old)),
                Outcome::Moved(c) => {
                    let mut n = self.shadow(cache, alloc, b)?;
                    let nb = n.blocknr();
                    Self::set_child(&mut n, idx, c);
                    cache.put_dirty(n)?;
                    Ok((Outcome::Moved(nb), old))
                }
                Outcome::Split(l, sep, r) => {
                    let mut n = self.shadow(cache, alloc, b)?;
                    Self::set_child(&mut n, idx, l);
                    let e = Self::internal_entry(&sep, r);
                    let out = self.insert_entry(
                        cache,
                        alloc,
                        n,
                        idx + 1,
                        &e,
                        Self::INT_ESIZE,
                        Self::INT_CAP,
                    )?;
                    Ok((out, old))
                }
            }
        }
    }

    /// Insert an encoded entry into a shadowed node, splitting it when full.
    #[allow(clippy::too_many_arguments)]
    fn insert_entry(
        &self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        mut n: Node,
        i: usize,
        e: &[u8],
        esize: usize,
        cap: usize,
    ) -> Result<Outcome<K>> {
        let nb = n.blocknr();
        if n.nr_entries() < cap {
            n.insert_entry(i, esize, e);
            cache.put_dirty(n)?;
            return Ok(Outcome::Moved(nb));
        }
        // Split: sequential inserts at the end leave the left node full.
        let at = if i == n.nr_entries() {
            cap - cap / 8
        } else {
            cap / 2
        };
        let mut right = n.split_off(at, esize);
        if i < at {
            n.insert_entry(i, esize, e);
        } else {
            right.insert_entry(i - at, esize, e);
        }
        let sep = Self::key_at(&right, 0);
        cache.put_dirty(n)?;
        let rb = self.new_node(cache, alloc, right)?;
        Ok(Outcome::Split(nb, sep, rb))
    }
}
