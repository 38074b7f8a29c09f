//! Visit every node and entry of a tree, checking what a lookup cannot see: key bounds
//! between parent and child, equal leaf depth, depth limit. Used by the space-map
//! rebuild on open and by `check`.
use super::{corrupt, Tree};
use crate::{format::MAX_DEPTH, Codec, NodeCache, Result};
use blockdev::{ids::BlockNr, Reason};

/// Shape of a tree, for `status`, `dump` and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    /// Levels (a lone leaf is 1).
    pub depth: usize,
    /// Internal nodes.
    pub nr_internal: u64,
    /// Leaves.
    pub nr_leaves: u64,
    /// Entries in all leaves.
    pub nr_entries: u64,
}

impl<K: Codec + Ord, V: Codec> Tree<K, V> {
    /// Visit every node block (`on_node`) and every entry in key order (`on_entry`),
    /// verifying bounds. Stops at the first problem.
    pub fn walk(
        &self,
        cache: &mut NodeCache,
        on_node: &mut dyn FnMut(BlockNr) -> Result<()>,
        on_entry: &mut dyn FnMut(&K, &V) -> Result<()>,
    ) -> Result<TreeStats> {
        let mut st = TreeStats::default();
        let mut leaf_depth = None;
        self.walk_rec(
            cache,
            self.root,
            None,
            None,
            1,
            &mut leaf_depth,
            &mut st,
            on_node,
            on_entry,
        )?;
        st.depth = leaf_depth.unwrap_or(1);
        Ok(st)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_rec(
        &self,
        cache: &mut NodeCache,
        b: BlockNr,
        lo: Option<K>,
        hi: Option<K>,
        depth: usize,
        leaf_depth: &mut Option<usize>,
        st: &mut TreeStats,
        on_node: &mut dyn FnMut(BlockNr) -> Result<()>,
        on_entry: &mut dyn FnMut(&K, &V) -> Result<()>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(corrupt(b, Reason::TooDeep));
        }
        on_node(b)?;
        let n = self.read(cache, b)?;
        let nr = n.nr_entries();
        let in_bounds = |k: &K| lo.is_none_or(|l| *k >= l) && hi.is_none_or(|h| *k < h);
        if n.is_leaf() {
            match leaf_depth {
                Some(d) if *d != depth => return Err(corrupt(b, Reason::BadField)),
                _ => *leaf_depth = Some(depth),
            }
            st.nr_leaves += 1;
            st.nr_entries += nr as u64;
            for i in 0..nr {
                let k = Self::key_at(&n, i);
                if !in_bounds(&k) {
                    return Err(corrupt(b, Reason::KeysOutOfOrder));
                }
                on_entry(&k, &Self::value_at(&n, i))?;
            }
            return Ok(());
        }
        st.nr_internal += 1;
        for i in 0..nr {
            let k = Self::key_at(&n, i);
            if i > 0 && !in_bounds(&k) {
                return Err(corrupt(b, Reason::KeysOutOfOrder));
            }
            let clo = if i == 0 { lo } else { Some(k) };
            let chi = if i + 1 < nr {
                Some(Self::key_at(&n, i + 1))
            } else {
                hi
            };
            let child = Self::child_at(&n, i);
            self.walk_rec(
                cache,
                child,
                clo,
                chi,
                depth + 1,
                leaf_depth,
                st,
                on_node,
                on_entry,
            )?;
        }
        Ok(())
    }
}
