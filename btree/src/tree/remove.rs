//! Remove one entry. Empty nodes leave their parent; a node that falls under a quarter
//! full is merged with a neighbour when both fit in one node; a root with one child
//! gives way to that child.
use super::{corrupt, Tree};
use crate::{format::MAX_DEPTH, node::Node, Codec, MetaAlloc, NodeCache, Result};
use blockdev::{ids::BlockNr, Reason};

impl<K: Codec + Ord, V: Codec> Tree<K, V> {
    /// Remove `k`; returns its value if it was present.
    pub fn remove(
        &mut self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        k: &K,
    ) -> Result<Option<V>> {
        let Some((nb, _, old)) = self.remove_rec(cache, alloc, self.root, k, 0)? else {
            return Ok(None);
        };
        self.root = nb;
        // Collapse: an internal root with one child, or with none.
        loop {
            let n = self.read(cache, self.root)?;
            if n.is_leaf() {
                break;
            }
            if n.nr_entries() == 0 {
                let old_root = self.root;
                self.root = self.new_node(cache, alloc, Node::new(true, self.tag))?;
                self.free(cache, alloc, old_root);
                break;
            }
            if n.nr_entries() == 1 {
                let child = Self::child_at(&n, 0);
                self.free(cache, alloc, self.root);
                self.root = child;
                continue;
            }
            break;
        }
        Ok(Some(old))
    }

    /// Returns (new block, entries left in it, removed value), or None if absent.
    fn remove_rec(
        &self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        b: BlockNr,
        k: &K,
        depth: usize,
    ) -> Result<Option<(BlockNr, usize, V)>> {
        if depth >= MAX_DEPTH {
            return Err(corrupt(b, Reason::TooDeep));
        }
        let n = self.read(cache, b)?;
        if n.is_leaf() {
            let Ok(i) = Self::search_leaf(&n, k) else {
                return Ok(None);
            };
            let old = Self::value_at(&n, i);
            let mut n = self.shadow(cache, alloc, b)?;
            n.remove_entry(i, Self::LEAF_ESIZE);
            let (nb, nr) = (n.blocknr(), n.nr_entries());
            cache.put_dirty(n)?;
            return Ok(Some((nb, nr, old)));
        }
        let idx = Self::search_internal(&n, k);
        let child = Self::child_at(&n, idx);
        let Some((c, left, old)) = self.remove_rec(cache, alloc, child, k, depth + 1)? else {
            return Ok(None);
        };
        let mut p = self.shadow(cache, alloc, b)?;
        if left == 0 {
            p.remove_entry(idx, Self::INT_ESIZE);
            self.free(cache, alloc, c);
        } else {
            Self::set_child(&mut p, idx, c);
            let child_node = self.read(cache, c)?;
            let cap = if child_node.is_leaf() {
                Self::LEAF_CAP
            } else {
                Self::INT_CAP
            };
            if left < cap / 4 && p.nr_entries() > 1 {
                self.try_merge(cache, alloc, &mut p, idx, cap)?;
            }
        }
        let (pb, nr) = (p.blocknr(), p.nr_entries());
        cache.put_dirty(p)?;
        Ok(Some((pb, nr, old)))
    }

    /// Merge child `idx` of `p` with a neighbour if both fit in three quarters of a node.
    fn try_merge(
        &self,
        cache: &mut NodeCache,
        alloc: &mut dyn MetaAlloc,
        p: &mut Node,
        idx: usize,
        cap: usize,
    ) -> Result<()> {
        let (li, ri) = if idx + 1 < p.nr_entries() {
            (idx, idx + 1)
        } else {
            (idx - 1, idx)
        };
        let (lb, rb) = (Self::child_at(p, li), Self::child_at(p, ri));
        let ln = self.read(cache, lb)?;
        let rn = self.read(cache, rb)?;
        if ln.is_leaf() != rn.is_leaf() {
            return Err(corrupt(rb, Reason::BadField));
        }
        if ln.nr_entries() + rn.nr_entries() > cap * 3 / 4 {
            return Ok(());
        }
        let esize = if ln.is_leaf() {
            Self::LEAF_ESIZE
        } else {
            Self::INT_ESIZE
        };
        let mut l = self.shadow(cache, alloc, lb)?;
        let first_right = l.nr_entries();
        l.append(&rn, esize);
        if !l.is_leaf() {
            // The right node's first key is not a bound; the parent's separator is.
            let sep = p.entry(ri, Self::INT_ESIZE)[..K::SIZE].to_vec();
            l.entry_mut(first_right, esize)[..K::SIZE].copy_from_slice(&sep);
        }
        Self::set_child(p, li, l.blocknr());
        cache.put_dirty(l)?;
        p.remove_entry(ri, Self::INT_ESIZE);
        self.free(cache, alloc, rb);
        Ok(())
    }
}
