//! Merging a snapshot into the origin (design note §3, "Merge S into the origin").
//!
//! From the moment [`Store::merge_snapshot`] returns, the origin reads what S read: S
//! becomes a ghost that still counts as visible at every address the merge has not
//! reached, and origin reads of those addresses come from S. The background merge then
//! visits every address that has elements, in order, in batches:
//!
//! 1. for each address where S reads an element: copy the origin out for the other
//!    versions that still read it (exactly as an origin write does), then **commit**;
//! 2. write S's data over the origin, then **flush the origin**;
//! 3. advance the persistent cursor past the batch and apply the delete rules at each
//!    address (S no longer counts there, so its chunks are freed or handed down), then
//!    **commit**.
//!
//! A crash redoes the interrupted batch from step 1, which is idempotent: the copy-outs
//! of step 1 are committed before step 2 overwrites anything, and S's elements are
//! freed only by the commit that also moves the cursor. An origin write to an address
//! not merged yet merges that address first, alone, and records it in a persistent
//! set, so the cursor never merges it again (design note E8).
use super::{Dev, Store};
use crate::{
    rules::View,
    tables::{JobKind, JobRec},
    Error, Result,
};
use blockdev::ids::{Addr, Label, SnapId, TxnId};

/// Addresses merged per batch (three durability points per batch).
pub const MERGE_BATCH: usize = 64;

impl Store {
    /// A running merge, if any: (job id, job). Several origins may each have one
    /// (a group's members merged together).
    pub(crate) fn merge_job(&self) -> Option<(u32, JobRec)> {
        self.jobs
            .iter()
            .find(|(_, j)| j.kind == JobKind::Merge)
            .map(|(i, j)| (*i, *j))
    }

    /// The merge into origin `k`, if one runs (its cursor starts at the origin's
    /// first address and stays in its range).
    pub(crate) fn merge_job_of(&self, k: super::OriginId) -> Option<(u32, JobRec)> {
        self.jobs
            .iter()
            .find(|(_, j)| j.kind == JobKind::Merge && super::addr_origin(j.cursor) == k)
            .map(|(i, j)| (*i, *j))
    }

    /// The label being merged, if address `a` is not merged yet.
    pub(crate) fn merging_at(&self, a: u64) -> Option<Label> {
        let (_, j) = self.merge_job_of(super::addr_origin(a))?;
        (a >= j.cursor && !self.merged_ahead.contains(&a)).then_some(j.target)
    }

    /// The rules' view of the version tree at address `a`.
    pub(crate) fn view_at(&mut self, a: u64) -> View<'_> {
        let merging = self.merging_at(a);
        let root = self.root_of_origin(super::addr_origin(a));
        View {
            anc: self.vt.prepare(),
            root,
            merging,
        }
    }

    /// Whether a merge is running.
    pub fn is_merging(&self) -> bool {
        self.merge_job().is_some()
    }

    /// Set the lock-free merge flag from the job table (at open).
    pub(super) fn with_merging_flag(self) -> Self {
        self.merging_flag
            .store(self.is_merging(), std::sync::atomic::Ordering::SeqCst);
        self
    }

    /// Merge snapshot `id` into the origin: the origin reads what it read, at once
    /// (durable on return); the snapshot disappears; every other snapshot keeps what
    /// it read. The copy runs in the background ([`Store::background_step`]).
    pub fn merge_snapshot(&mut self, id: SnapId) -> Result<TxnId> {
        self.merge_snapshots(&[id])
    }

    /// Merge several snapshots, each into its own origin (a group's members), in one
    /// commit: every origin reads its snapshot at once, or, refused, none changes.
    /// One merge per origin at a time; each snapshot of another origin.
    pub fn merge_snapshots(&mut self, ids: &[SnapId]) -> Result<TxnId> {
        let mut plan = Vec::with_capacity(ids.len());
        for &id in ids {
            let l = self.label_of(id)?;
            self.check_merge_size(id)?;
            let k = self.origin_of(Dev::Snap(id))?;
            // the merge writes the origin: its device must be there
            self.origin_device(k)?;
            if self.merge_job_of(k).is_some() || plan.iter().any(|&(_, _, o)| o == k) {
                return Err(Error::Busy(
                    "a merge into this origin is already running; one merge per origin at a time"
                        .into(),
                ));
            }
            plan.push((id, l, k));
        }
        self.check_writable()?;
        self.ensure_room(0, 0)?;
        // before the merges take effect: origin reads and settled writes of their
        // origins go through the store from now on
        for &(_, _, k) in &plan {
            self.new_copy_epoch(k);
        }
        self.merging_flag
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.latching(|s| {
            for &(id, l, _) in &plan {
                s.retire_only(id, l, JobKind::Merge);
            }
            s.commit()
        })
    }

    /// Run the merge to its end now (a snapshot of the origin must see the merged
    /// origin, design note E7).
    pub fn finish_merge(&mut self) -> Result<()> {
        while let Some((id, _)) = self.merge_job() {
            self.latching(|s| s.merge_batch(id, MERGE_BATCH))?;
        }
        Ok(())
    }

    /// Merge one batch of the running merge, if there is one (`MERGE_BATCH`
    /// addresses, committed); returns whether a merge still runs. A caller that must
    /// wait for the merge to end (a snapshot of the origin, design note E7) calls it
    /// once per hold of the store, so that other devices' I/O goes on in between
    /// (`SharedStore::finish_merge`).
    pub fn merge_step(&mut self) -> Result<bool> {
        if let Some((id, _)) = self.merge_job() {
            self.latching(|s| s.merge_batch(id, MERGE_BATCH))?;
        }
        Ok(self.is_merging())
    }

    /// Merge up to `batch` addresses (steps 1-3 of the module documentation).
    pub(crate) fn merge_batch(&mut self, id: u32, batch: usize) -> Result<()> {
        let Some(job) = self.jobs.get(&id).copied() else {
            return Ok(());
        };
        let mut addrs = Vec::new();
        let mut cur = job.cursor;
        let k = super::addr_origin(job.cursor);
        while addrs.len() < batch {
            match self.elements.next_populated(&mut self.cache, Addr(cur))? {
                Some(a) if super::addr_origin(a.0) == k => {
                    if !self.merged_ahead.contains(&a.0) {
                        addrs.push(a.0);
                    }
                    cur = a.0 + 1;
                }
                _ => break,
            }
        }
        let Some(&last) = addrs.last() else {
            return self.end_merge(id, job);
        };
        for &a in &addrs {
            self.merge_copy_out(a, job.target)?;
        }
        self.commit()?;
        for &a in &addrs {
            self.merge_write_origin(a, job.target)?;
        }
        self.flush_origin(k)?;
        if let Some(j) = self.jobs.get_mut(&id) {
            j.cursor = last + 1;
        }
        self.dirty_jobs.insert(id);
        self.changed = true;
        for &a in &addrs {
            self.normalize_at(a)?;
        }
        self.commit()?;
        Ok(())
    }

    /// Merge address `a` ahead of the cursor (an origin write is about to change it).
    pub(crate) fn merge_address_now(&mut self, a: u64) -> Result<()> {
        let Some(s) = self.merging_at(a) else {
            return Ok(());
        };
        self.merge_copy_out(a, s)?;
        self.commit()?;
        self.merge_write_origin(a, s)?;
        self.flush_origin(super::addr_origin(a))?;
        self.merged_ahead.insert(a);
        self.dirty_merged.insert(a);
        self.changed = true;
        self.normalize_at(a)?;
        self.commit()?;
        Ok(())
    }

    fn reads_element(&mut self, a: u64, s: Label) -> Result<bool> {
        let e = self.load_elems_shared(a)?;
        let view = self.view_at(a);
        Ok(view.reader(&e, s) != view.root)
    }

    /// Step 1: copy the origin out for the other readers, if S reads an element here.
    fn merge_copy_out(&mut self, a: u64, s: Label) -> Result<()> {
        if self.reads_element(a, s)? {
            self.copy_out(a)?;
        }
        Ok(())
    }

    /// Step 2: S's data over the origin.
    fn merge_write_origin(&mut self, a: u64, s: Label) -> Result<()> {
        let e = self.load_elems_shared(a)?;
        let view = self.view_at(a);
        if view.reader(&e, s) == view.root {
            return Ok(());
        }
        let mut buf = vec![0u8; self.chunk_len(a)];
        self.read_as(&e, s, a, 0, &mut buf)?;
        self.moved();
        let pos = self.origin_pos(a);
        self.origin_device(super::addr_origin(a))?
            .write_at(&buf, pos)
            .map_err(super::origin_io(pos))
    }

    /// Apply the delete rules at `a` (with S counted only where not merged).
    pub(crate) fn normalize_at(&mut self, a: u64) -> Result<()> {
        let before = self.load_elems(a)?;
        let mut after = before.clone();
        self.view_at(a).normalize(&mut after);
        self.store_elems(a, &before, &after, &[])
    }

    fn flush_origin(&mut self, k: super::OriginId) -> Result<()> {
        self.origin_device(k)?.flush().map_err(super::origin_io(0))
    }

    fn end_merge(&mut self, id: u32, job: JobRec) -> Result<()> {
        self.jobs.remove(&id);
        // another origin's merge may still run (a group's members)
        self.merging_flag
            .store(self.is_merging(), std::sync::atomic::Ordering::SeqCst);
        self.dirty_jobs.insert(id);
        // this origin's addresses merged ahead of the cursor; the others' stay
        let k = super::addr_origin(job.cursor);
        let done: Vec<u64> = self
            .merged_ahead
            .iter()
            .copied()
            .filter(|&a| super::addr_origin(a) == k)
            .collect();
        for a in done {
            self.merged_ahead.remove(&a);
            self.dirty_merged.insert(a);
        }
        self.changed = true;
        self.reshape(job.start)?;
        self.commit()?;
        Ok(())
    }
}
