//! Space per origin: the chunks each origin's snapshots hold, and the optional quota
//! that keeps one origin from taking the whole pool.
//!
//! # What is counted
//! An origin's *used* space is the store chunks its addresses' elements name: every
//! copy-out of its old data and every chunk a write to one of its snapshots took.
//! Metadata is the pool's and is not counted per origin. The counts are rebuilt at
//! open from the elements (the walk that rebuilds the allocator) and kept by
//! `store_elems`, the one place an element set changes; they are not persisted.
//!
//! # The quota
//! A quota (`OriginRec::quota`, chunks; 0 for none) is checked beside the pool's
//! free space, before an operation changes anything ([`Store::room_for`] for
//! copy-outs, the same pre-check for snapshot writes), counting the copy-outs of the
//! origin in flight too. A refusal is a clean ENOSPC (`Space::Quota`) for that
//! origin's writes that need space, never a latch; under `delete-oldest` the policy
//! first deletes that origin's own oldest snapshots. Lowering a quota below what the
//! origin uses already deletes nothing: the origin's writes that need space are
//! refused until its snapshots are deleted.
use super::{OriginId, Store};
use crate::{Error, Result, Space};
use blockdev::ids::TxnId;

impl Store {
    /// The store chunks origin `k`'s snapshots hold.
    pub fn origin_used(&self, k: OriginId) -> u64 {
        self.origin_used.get(&k).copied().unwrap_or(0)
    }

    /// Origin `k`'s copy-outs in flight (chunks allocated, not yet linked).
    fn origin_in_flight(&self, k: OriginId) -> u64 {
        let first = super::pool_addr(k, 0);
        let end = super::pool_addr(k, 0).saturating_add(1 << crate::format::ORIGIN_SHIFT);
        self.copying.range(first..end).count() as u64
    }

    /// Whether origin `k`'s quota takes `need` more chunks (always, without one).
    pub(super) fn quota_room(&mut self, k: OriginId, need: u64) -> Result<()> {
        let quota = self.origins.get(&k).map_or(0, |o| o.quota);
        if quota == 0 || need == 0 {
            return Ok(());
        }
        let used = self.origin_used(k) + self.origin_in_flight(k);
        if used.saturating_add(need) <= quota {
            return Ok(());
        }
        Err(self.refusal(Error::NoSpace(Space::Quota)))
    }

    /// Set origin `k`'s quota to `chunks` (0: none). Durable on return.
    pub fn set_origin_quota(&mut self, k: OriginId, chunks: u64) -> Result<TxnId> {
        let name = match self.origins.get(&k) {
            Some(o) => o.name.clone(),
            None => return Err(Error::NoSuchOrigin(format!("#{k}"))),
        };
        self.check_writable()?;
        self.ensure_room(0, 2)?;
        self.latching(|s| {
            if let Some(o) = s.origins.get_mut(&k) {
                o.quota = chunks;
            }
            s.dirty_origins.insert(k);
            s.changed = true;
            s.commit()
        })?;
        tracing::info!(origin = %name, quota_chunks = chunks, "origin quota set");
        Ok(self.txn_id())
    }
}
