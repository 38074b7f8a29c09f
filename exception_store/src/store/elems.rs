//! The per-address element cache and the write-back of one address's elements
//! (`store_elems`): the only place an element set changes, so the move counter, the
//! label index and each origin's used chunks (`origin_used`) are kept here.

use super::Store;
use crate::{format::BLOCK_SIZE, rules::Elems, Error, Result};
use blockdev::ids::{Addr, BlockNr, ChunkNr};
use btree::elements::Ptr;
use std::{collections::HashSet, sync::Arc};

/// Most elements held decoded in the per-address cache.
const ELEM_CACHE_ELEMENTS: usize = 1 << 18;

impl Store {
    pub(super) fn load_elems(&mut self, a: u64) -> Result<Elems> {
        Ok((*self.load_elems_shared(a)?).clone())
    }

    /// The elements of address `a`, through the per-address cache.
    pub(super) fn load_elems_shared(&mut self, a: u64) -> Result<Arc<Elems>> {
        if let Some(e) = self.elem_cache.get(&a) {
            return Ok(e.clone());
        }
        let e: Arc<Elems> = Arc::new(
            self.elements
                .at(&mut self.cache, Addr(a))?
                .into_iter()
                .collect(),
        );
        self.remember_elems(a, e.clone());
        Ok(e)
    }

    /// Put the exact element set of address `a` in the per-address cache.
    pub(super) fn remember_elems(&mut self, a: u64, e: Arc<Elems>) {
        self.elem_cache_len += e.len() + 1;
        if let Some(old) = self.elem_cache.put(a, e) {
            self.elem_cache_len -= old.len() + 1;
        }
        while self.elem_cache_len > ELEM_CACHE_ELEMENTS {
            match self.elem_cache.pop_lru() {
                Some((_, old)) => self.elem_cache_len -= old.len() + 1,
                None => break,
            }
        }
    }

    pub(super) fn forget_elems(&mut self, a: u64) {
        if let Some(old) = self.elem_cache.pop(&a) {
            self.elem_cache_len -= old.len() + 1;
        }
    }

    /// Write back the elements of address `a`: `before` as loaded, `after` as decided.
    /// Chunks named before (or allocated for this change, `new`) and not after are freed.
    ///
    /// `before` must be the address's element set as loaded, unchanged since: once
    /// the tree holds `after`, `after` is what a load would return, so it goes into
    /// the per-address cache and the next write to this address (the steady state
    /// after a copy-out) finds it there. On an error the address is left uncached.
    pub(super) fn store_elems(
        &mut self,
        a: u64,
        before: &Elems,
        after: &Elems,
        new: &[ChunkNr],
    ) -> Result<()> {
        if before != after {
            self.moved();
        }
        self.forget_elems(a);
        let mut changed = false;
        for (l, p) in before {
            if !after.contains_key(l) {
                self.elements
                    .remove(&mut self.cache, &mut self.alloc, Addr(a), *l)?;
                self.label_index
                    .adjust(&mut self.cache, &mut self.alloc, *l, a, -1)?;
                changed = true;
            } else if after.get(l) != Some(p) {
                changed = true;
            }
        }
        for (l, p) in after {
            if before.get(l) != Some(p) {
                self.elements
                    .set(&mut self.cache, &mut self.alloc, Addr(a), *l, *p)?;
                if !before.contains_key(l) {
                    self.label_index
                        .adjust(&mut self.cache, &mut self.alloc, *l, a, 1)?;
                }
                changed = true;
            }
        }
        let kept: HashSet<ChunkNr> = after
            .values()
            .filter_map(|p| match p {
                Ptr::Chunk(c) => Some(*c),
                Ptr::Hole => None,
            })
            .collect();
        // (an address's elements never name one chunk twice: `check`)
        let mut had = 0u64;
        for p in before.values() {
            if let Ptr::Chunk(c) = p {
                had += 1;
                if !kept.contains(c) {
                    self.alloc.free_chunk(*c);
                }
            }
        }
        if had != kept.len() as u64 {
            let used = self.origin_used.entry(super::addr_origin(a)).or_default();
            *used = (*used + kept.len() as u64).saturating_sub(had);
        }
        for c in new {
            if !kept.contains(c) {
                self.alloc.free_chunk(*c);
            }
        }
        if changed {
            self.dirty_addrs.insert(a);
            self.changed = true;
        }
        self.remember_elems(a, Arc::new(after.clone()));
        Ok(())
    }
}

pub(super) fn to_btree(e: Error) -> btree::Error {
    match e {
        Error::Corrupt(c) => btree::Error::Corrupt(c),
        Error::Io { source, offset, .. } => btree::Error::Io {
            block: BlockNr(offset / BLOCK_SIZE),
            source,
        },
        _ => btree::Error::NoSpace,
    }
}
