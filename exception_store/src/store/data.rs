//! Reads and writes of the origin and of snapshots, at any byte offset and length.
//!
//! Each request is cut at chunk boundaries. For every chunk the elements of that
//! address are loaded, the rules (`crate::rules`) decide, and the difference is
//! written back.
//!
//! # Crash safety of data
//! - Origin: before the origin chunk is overwritten, its old data is copied to a new
//!   store chunk and the element naming it is committed ([`Store::origin_prepare`]
//!   returns the transaction that must be durable first). An address whose elements
//!   changed in the open transaction is treated the same way: the origin waits for
//!   that commit, so no committed element set ever relies on origin data that is gone.
//! - Snapshots: data goes in place only into a chunk that nothing committed can read
//!   through another version: a chunk allocated in the open transaction, or one whose
//!   address has no uncommitted element change (then the committed and the in-memory
//!   readers are the same, because visibility changes commit at once). Otherwise the
//!   chunk is copied to a new one and the element moves (redirect on write).
use super::{
    addr_chunk, addr_origin, origin_io, pool_addr, read_plan::ReadSource as Source, store_io, Dev,
    OriginId, SpacePolicy, Store,
};
use crate::{
    rules::{Elems, SnapWrite},
    Result,
};
use blockdev::ids::{Label, SnapId, TxnId};
use btree::elements::Ptr;

/// The pool address of byte `pos` of a device of origin `k`.
fn pos_addr(k: OriginId, pos: u64, cs: u64) -> u64 {
    pool_addr(k, pos / cs)
}

/// What a write puts in a chunk.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Data(&'a [u8]),
    Zeroes,
    /// Discard: whole chunks become holes, partial chunks are left alone.
    Discard,
}

/// What one [`Store::room_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStep {
    /// The chunks fit now.
    Room,
    /// Some work done (a delete, or steps of its pass and a commit): ask again.
    Progress,
}

impl Store {
    /// Read `buf.len()` bytes of `dev` at `offset`.
    ///
    /// The read is planned first ([`Store::read_plan`]): pieces that continue each
    /// other on the same device (consecutive origin chunks, consecutive store chunks)
    /// are one piece, read with one `read_at`, so a 1 MiB read of 64 KiB chunks is
    /// usually one or a few reads, not sixteen.
    pub fn read(&mut self, dev: Dev, offset: u64, buf: &mut [u8]) -> Result<()> {
        let plan = self.read_plan(dev, offset, buf.len() as u64)?;
        let k = self.origin_of(dev)?;
        for p in plan {
            // the plan covers the buffer exactly (read_plan's invariants)
            let (at, n) = (p.buf_off as usize, p.len as usize);
            self.read_source(k, p.src, &mut buf[at..at + n])?;
        }
        Ok(())
    }

    /// Where version `l` reads byte `off` of address `a` (given its elements `e`).
    pub(super) fn locate(&mut self, e: &Elems, l: Label, a: u64, off: usize) -> Source {
        let view = self.view_at(a);
        let r = view.reader(e, l);
        if r == view.root {
            return Source::Origin(self.origin_pos(a) + off as u64);
        }
        match e.get(&r) {
            Some(Ptr::Chunk(c)) => Source::Store(c.0 * self.chunk_size + off as u64),
            _ => Source::Zeroes,
        }
    }

    /// Read `src` of a device of origin `k` (whose device an origin piece reads).
    fn read_source(&self, k: OriginId, src: Source, out: &mut [u8]) -> Result<()> {
        match src {
            Source::Origin(pos) => self
                .origin_device(k)?
                .read_at(out, pos)
                .map_err(origin_io(pos)),
            Source::Store(pos) => self.dev.read_at(out, pos).map_err(store_io(pos)),
            Source::Zeroes => {
                out.fill(0);
                Ok(())
            }
        }
    }

    /// Read what version `l` sees at address `a` (given its elements `e`).
    pub(crate) fn read_as(
        &mut self,
        e: &Elems,
        l: Label,
        a: u64,
        off: usize,
        out: &mut [u8],
    ) -> Result<()> {
        let src = self.locate(e, l, a, off);
        self.read_source(addr_origin(a), src, out)
    }

    /// Write `data` to `dev` at `offset`.
    pub fn write(&mut self, dev: Dev, offset: u64, data: &[u8]) -> Result<()> {
        self.check_dev_range(dev, offset, data.len() as u64)?;
        match dev {
            Dev::Origin(k) => {
                if self.origin_prepare(k, offset, data.len() as u64)?.is_some() {
                    self.commit()?;
                }
                self.origin_write_prepared(k, offset, data)
            }
            Dev::Snap(id) => self.snap_write(id, offset, data.len() as u64, Payload::Data(data)),
        }
    }

    /// Make `len` bytes of `dev` at `offset` read as zeros. Whole snapshot chunks
    /// become holes; no space is used for them.
    pub fn write_zeroes(&mut self, dev: Dev, offset: u64, len: u64) -> Result<()> {
        self.check_dev_range(dev, offset, len)?;
        match dev {
            Dev::Origin(k) => {
                if self.origin_prepare(k, offset, len)?.is_some() {
                    self.commit()?;
                }
                let zeros = vec![0u8; self.chunk_size as usize];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(zeros.len() as u64);
                    self.origin_write_prepared(k, offset + done, &zeros[..n as usize])?;
                    done += n;
                }
                Ok(())
            }
            Dev::Snap(id) => self.snap_write(id, offset, len, Payload::Zeroes),
        }
    }

    /// Discard: the range's contents become unspecified for `dev` and nothing else.
    /// On a snapshot, whole chunks become holes (read as zeros) and free their
    /// space; partial chunks are left as they are. On the origin, the old data is
    /// copied out for snapshots first, then the discard goes down to the device.
    pub fn discard(&mut self, dev: Dev, offset: u64, len: u64) -> Result<()> {
        self.check_dev_range(dev, offset, len)?;
        match dev {
            Dev::Origin(k) => {
                if self.origin_prepare(k, offset, len)?.is_some() {
                    self.commit()?;
                }
                self.origin_device(k)?
                    .discard(offset, len)
                    .map_err(origin_io(offset))
            }
            Dev::Snap(id) => self.snap_write(id, offset, len, Payload::Discard),
        }
    }

    /// First half of an origin write: copy out, for every chunk the range touches,
    /// the data that a snapshot still reads from the origin, all under `&mut self`
    /// (see `copy_out` for the copy-out without the lock). Returns the transaction
    /// that must commit before origin `k` may be written, if one must.
    pub fn origin_prepare(&mut self, k: OriginId, offset: u64, len: u64) -> Result<Option<TxnId>> {
        self.check_origin_range(k, offset, len)?;
        if len == 0 {
            return Ok(None);
        }
        let cs = self.chunk_size;
        let (first, last) = (
            pool_addr(k, offset / cs),
            pool_addr(k, (offset + len - 1) / cs),
        );
        // Copies under the lock; an address in flight is the three-step copy-out's
        // (`copy_out`), which every origin write waits for first.
        debug_assert!(self.copying.range(first..=last).next().is_none());
        for a in first..=last {
            if self.merging_at(a).is_some() {
                self.latching(|s| s.merge_address_now(a))?;
            }
        }
        self.latching(|s| s.copy_out_range(first, last))?;
        Ok(self.uncommitted_in(k, offset, len))
    }

    /// The transaction that must commit before a completed write to `offset..+len`
    /// of origin `k` survives losing this process's memory: the newest that changed
    /// an address the range touches and may not be durable yet (its element, hence
    /// where the data lives, may not be on disk yet: the open one, or the sealed one
    /// whose superblock is on its way), else none.
    pub fn uncommitted_in(&self, k: OriginId, offset: u64, len: u64) -> Option<TxnId> {
        if len == 0 || (self.dirty_addrs.is_empty() && self.inflight.is_none()) {
            return None;
        }
        let cs = self.chunk_size;
        let (first, last) = (
            pool_addr(k, offset / cs),
            pool_addr(k, (offset + len - 1) / cs),
        );
        (first..=last).filter_map(|a| self.addr_txn(a)).max()
    }

    /// [`uncommitted_in`](Self::uncommitted_in) for a range of any device (a
    /// snapshot's addresses are its origin's).
    pub fn snap_uncommitted_in(&self, dev: Dev, offset: u64, len: u64) -> Option<TxnId> {
        let k = self.origin_of(dev).ok()?;
        self.uncommitted_in(k, offset, len)
    }

    /// The transaction now open.
    pub fn cache_txn(&self) -> TxnId {
        self.cache.txn()
    }

    /// The transaction that must be durable for every change so far to be: the open
    /// one if anything changed since the last commit, else the sealed one whose
    /// superblock is on its way, else the last committed one.
    pub fn needed_txn(&self) -> TxnId {
        if self.changed {
            self.cache.txn()
        } else {
            self.inflight_txn().unwrap_or(self.sb.txn_id)
        }
    }

    /// Second half of an origin write: the data itself. Call only after
    /// [`origin_prepare`](Self::origin_prepare) for this range and the commit it asked for.
    pub fn origin_write_prepared(&mut self, k: OriginId, offset: u64, data: &[u8]) -> Result<()> {
        self.check_origin_range(k, offset, data.len() as u64)?;
        self.origin_device(k)?
            .write_at(data, offset)
            .map_err(origin_io(offset))
    }

    fn snap_write(&mut self, id: SnapId, offset: u64, len: u64, p: Payload) -> Result<()> {
        self.label_of(id)?;
        let dev_len = self.dev_size(Dev::Snap(id))?;
        let k = self.origin_of(Dev::Snap(id))?;
        let cs = self.chunk_size;
        let mut done = 0u64;
        while done < len {
            let pos = offset + done;
            let a = pos_addr(k, pos, cs);
            let off = (pos % cs) as usize;
            let clen = self.chunk_len_in(dev_len, addr_chunk(a));
            let n = ((clen - off) as u64).min(len - done) as usize;
            let part = match p {
                Payload::Data(d) => Payload::Data(&d[done as usize..done as usize + n]),
                other => other,
            };
            let whole = off == 0 && n == clen;
            if !matches!(part, Payload::Discard) || whole {
                self.latching(|s| s.snap_write_chunk(id, a, off, n, part))?;
            }
            done += n as u64;
        }
        Ok(())
    }

    fn snap_write_chunk(
        &mut self,
        id: SnapId,
        a: u64,
        off: usize,
        n: usize,
        p: Payload,
    ) -> Result<()> {
        let t0 = self.label_of(id)?;
        let before = self.load_elems(a)?;
        // the snapshot's own size: its last chunk may be short where the origin's,
        // grown since, is not
        let clen = self.chunk_len_in(self.dev_size(Dev::Snap(id))?, addr_chunk(a));
        let whole = off == 0 && n == clen;
        let to_hole = whole && !matches!(p, Payload::Data(_));
        let plan = self.view_at(a).snapshot_write(&before, t0);
        // Overwriting a chunk the snapshot owns, in place, changes no element and
        // needs no space: it goes through on a full store. Anything else is checked
        // here, before it changes anything, so that a refusal leaves the store as it
        // was (and writable).
        let owned_in_place = match plan {
            SnapWrite::InPlace(x) if !to_hole => match before.get(&x) {
                Some(Ptr::Chunk(c)) => self.alloc.is_fresh(*c) || self.addr_txn(a).is_none(),
                _ => false,
            },
            _ => false,
        };
        if !owned_in_place {
            let data = if to_hole { 0 } else { 1 };
            self.ensure_room(data + self.opts.min_free_chunks, 2)?;
            self.quota_room(addr_origin(a), data)?;
        }
        let mut after = before.clone();
        let (target, relabelled) = match plan {
            SnapWrite::InPlace(x) => (x, false),
            SnapWrite::Relabel(x) => {
                if let Some(ptr) = after.remove(&x) {
                    after.insert(t0, ptr);
                }
                (t0, true)
            }
            SnapWrite::Split => (self.split(id, t0), false),
            SnapWrite::Allocate => (t0, false),
        };
        let existing = after.get(&target).copied();
        if to_hole {
            after.insert(target, Ptr::Hole);
            return self.store_elems(a, &before, &after, &[]);
        }
        // In place into an existing chunk when that is crash-safe (module docs).
        if let Some(Ptr::Chunk(c)) = existing {
            if self.alloc.is_fresh(c) || (!relabelled && self.addr_txn(a).is_none()) {
                let pos = c.0 * self.chunk_size + off as u64;
                match p {
                    Payload::Data(d) => self.dev.write_at(d, pos),
                    _ => self.dev.write_at(&vec![0u8; n], pos),
                }
                .map_err(store_io(pos))?;
                return self.store_elems(a, &before, &after, &[]);
            }
        }
        // Otherwise a new chunk holding the whole new contents.
        let mut buf = vec![0u8; clen];
        if !whole {
            self.read_as(&before, t0, a, 0, &mut buf)?;
        }
        match p {
            Payload::Data(d) => buf[off..off + n].copy_from_slice(d),
            _ => buf[off..off + n].fill(0),
        }
        let c = self.alloc.alloc_chunk()?;
        let pos = c.0 * self.chunk_size;
        if let Err(e) = self.dev.write_at(&buf, pos) {
            self.alloc.free_chunk(c);
            return Err(store_io(pos)(e));
        }
        after.insert(target, Ptr::Chunk(c));
        self.store_elems(a, &before, &after, &[c])
    }

    /// Whether `need` data chunks for origin `k` fit beside the min-free guard and
    /// inside `k`'s quota (`quota`); when they do, a full episode the space policy
    /// logged is over.
    pub(super) fn room_for(&mut self, k: OriginId, need: u64) -> Result<()> {
        self.ensure_room(need + self.opts.min_free_chunks, need)?;
        self.quota_room(k, need)?;
        self.full_logged = false;
        Ok(())
    }

    /// The space policy: free room for `need` chunks of origin `k` (plus the min-free
    /// guard, inside its quota) by deleting the oldest snapshots that are neither
    /// held nor in use (served by a device, [`Store::set_in_use`]), or fail with
    /// `NoSpace`. The first refusal of an episode is logged; later ones are not,
    /// until a copy-out finds room again. All of it under the caller's `&mut self`;
    /// [`Store::room_step`] does the same in steps.
    pub(super) fn make_room(&mut self, k: OriginId, need: u64) -> Result<()> {
        while self.room_step(k, need, usize::MAX)? == RoomStep::Progress {}
        Ok(())
    }

    /// Whether `need` chunks fit now beside the min-free guard and the metadata
    /// reserve (what a copy-out of `need` addresses checks), changing nothing.
    pub fn fits(&self, need: u64) -> bool {
        self.alloc
            .ensure_for(need + self.opts.min_free_chunks, need)
            .is_ok()
    }

    /// Whether the space policy has a snapshot it may delete for origin `k`.
    pub(super) fn has_victim(&mut self, k: OriginId) -> bool {
        let quota_short = self.quota_room(k, 1).is_err();
        self.victim(k, quota_short).is_some()
    }

    /// What the space policy deletes next for origin `k`: the oldest snapshot of `k`
    /// that may go, else (unless only `k`'s quota is short, which no other origin's
    /// delete helps) the oldest of the pool. A snapshot may go when it is neither
    /// held nor in use, nor is any member of its group; a group member goes with its
    /// whole group, so that a group is never left half.
    fn victim(&self, k: OriginId, quota_short: bool) -> Option<(Vec<SnapId>, String)> {
        let free = |id: &SnapId| {
            self.snaps
                .get(id)
                .is_some_and(|r| !r.hold && !self.in_use.contains(id))
        };
        // every group's members, once (not a walk of every snapshot per candidate)
        let mut groups: std::collections::HashMap<u32, Vec<SnapId>> = Default::default();
        for (id, r) in self.snaps.iter().filter(|(_, r)| r.group != 0) {
            groups.entry(r.group).or_default().push(*id);
        }
        let members = |id: SnapId| -> Vec<SnapId> {
            match self.snaps.get(&id).and_then(|r| groups.get(&r.group)) {
                Some(m) => m.clone(),
                None => vec![id],
            }
        };
        let oldest = |of: Option<OriginId>| {
            self.snaps
                .iter()
                .filter(|(id, r)| of.is_none_or(|k| r.origin == k) && free(id))
                .filter(|(id, _)| members(**id).iter().all(free))
                .min_by_key(|(id, r)| (r.created, **id))
                .map(|(id, r)| {
                    let name = match self.origins.get(&r.origin) {
                        Some(o) if self.origins.len() > 1 => format!("{}@{}", o.name, r.name),
                        _ => r.name.clone(),
                    };
                    (members(*id), name)
                })
        };
        oldest(Some(k)).or_else(|| (!quota_short).then(|| oldest(None)).flatten())
    }

    /// One step of the space policy for `need` chunks of origin `k`:
    /// [`RoomStep::Room`] when they fit; else up to `budget` steps of the delete
    /// passes that run (then a commit, which gives back what they freed), or, with
    /// none running, the delete of the snapshot the policy takes next (`k`'s own
    /// oldest first, then the pool's); [`RoomStep::Progress`] after either. With
    /// nothing left to delete, or with the `Fail` policy, `NoSpace` (a refusal: the
    /// store stays writable). A caller that holds a lock around the store releases it between
    /// steps, so other devices' I/O goes on while a big snapshot is freed.
    pub fn room_step(&mut self, k: OriginId, need: u64, budget: usize) -> Result<RoomStep> {
        let full = match self.room_for(k, need) {
            Ok(()) => return Ok(RoomStep::Room),
            Err(e) => e,
        };
        let quota = matches!(full, crate::Error::NoSpace(crate::Space::Quota));
        let origin = self
            .origins
            .get(&k)
            .map_or_else(String::new, |o| o.name.clone());
        if self.opts.space_policy != SpacePolicy::DeleteOldest {
            if !std::mem::replace(&mut self.full_logged, true) {
                if quota {
                    tracing::warn!(
                        origin = %origin,
                        "origin's quota full: its writes that need space fail with ENOSPC (policy: fail)"
                    );
                } else {
                    tracing::warn!(
                        "store full: origin writes that need space fail with ENOSPC (policy: fail)"
                    );
                }
            }
            return Err(full);
        }
        let passes: Vec<u32> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.kind != crate::tables::JobKind::Merge)
            .map(|(i, _)| *i)
            .collect();
        if !passes.is_empty() {
            let mut done = 0;
            'steps: while done < budget {
                let mut any = false;
                for &i in &passes {
                    if self.jobs.contains_key(&i) {
                        self.latching(|s| s.pass_step(i))?;
                        any = true;
                        done += 1;
                        if done >= budget {
                            break 'steps;
                        }
                    }
                }
                if !any {
                    break;
                }
            }
            self.commit()?;
            return Ok(RoomStep::Progress);
        }
        let Some((ids, name)) = self.victim(k, quota) else {
            if !std::mem::replace(&mut self.full_logged, true) {
                if quota {
                    tracing::warn!(
                        origin = %origin,
                        "origin's quota full and every snapshot of it left is held or active: its writes that need space fail with ENOSPC"
                    );
                } else {
                    tracing::warn!(
                        "store full and every snapshot left is held or active: origin writes that need space fail with ENOSPC"
                    );
                }
            }
            return Err(self.refusal(full));
        };
        if quota {
            tracing::warn!(origin = %origin, snapshot = %name, "origin's quota full: deleting its oldest unheld snapshot");
        } else {
            tracing::warn!(snapshot = %name, "store full: deleting the oldest unheld snapshot");
        }
        self.delete_snapshots(&ids)?;
        self.auto_deleted += ids.len() as u64;
        Ok(RoomStep::Progress)
    }

    /// Implicit split: `t` becomes a ghost parent, the device moves to a new leaf.
    fn split(&mut self, id: SnapId, t: Label) -> Label {
        let t2 = self.new_label();
        self.vt.add_child(t2, t);
        let now = self.tick();
        self.vt.make_ghost(t, now);
        if let Some(r) = self.snaps.get_mut(&id) {
            r.label = t2;
        }
        self.dirty_versions.insert(t);
        self.dirty_versions.insert(t2);
        self.dirty_snaps.insert(id);
        t2
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Dev, Store, StoreOptions};
    use blockdev::{ids::Addr, MemDevice};
    use std::sync::Arc;

    const CS: u64 = 4096;

    fn store() -> Store {
        let origin = Arc::new(MemDevice::new(64 * CS));
        let dev = Arc::new(MemDevice::new(1024 * CS));
        Store::format(origin, dev, CS as u32, StoreOptions::default()).unwrap()
    }

    fn read(s: &mut Store, dev: Dev, a: u64) -> u8 {
        let mut b = [0u8; 1];
        s.read(dev, a * CS + 7, &mut b).unwrap();
        b[0]
    }

    fn write(s: &mut Store, dev: Dev, a: u64, v: u8) {
        s.write(dev, a * CS, &[v; CS as usize]).unwrap();
    }

    /// Every address in the per-address element cache holds exactly what the tree
    /// holds (the cache is filled by `store_elems` with its `after`).
    fn cache_matches_tree(s: &mut Store) {
        let cached: Vec<(u64, Vec<_>)> = s
            .elem_cache
            .iter()
            .map(|(a, e)| (*a, e.iter().map(|(l, p)| (*l, *p)).collect()))
            .collect();
        for (a, e) in cached {
            let tree = s.elements.at(&mut s.cache, Addr(a)).unwrap();
            assert_eq!(e, tree, "address {a}: cached elements differ from the tree");
        }
    }

    /// The steady-state fast path (the newest snapshot already has its element, the
    /// element set cached by the copy-out) must not outlive a new snapshot: the next
    /// origin write copies the old data out again, for the new snapshot only.
    #[test]
    fn a_steady_address_copies_out_again_for_a_new_snapshot() {
        let mut s = store();
        write(&mut s, Dev::Origin(0), 3, 1);
        let s1 = s.create_snapshot("s1", None, 1).unwrap();
        write(&mut s, Dev::Origin(0), 3, 2); // copy-out of 1 for s1
        write(&mut s, Dev::Origin(0), 3, 3); // steady: nothing to copy
        assert!(s.origin_prepare(0, 3 * CS, CS).unwrap().is_none());
        let s2 = s.create_snapshot("s2", None, 2).unwrap();
        // Now the cached set lacks the new newest snapshot: a copy-out is due.
        assert!(s.origin_prepare(0, 3 * CS, CS).unwrap().is_some());
        s.commit().unwrap();
        write(&mut s, Dev::Origin(0), 3, 4);
        write(&mut s, Dev::Origin(0), 3, 5); // steady again
        assert_eq!(read(&mut s, Dev::Snap(s1), 3), 1);
        assert_eq!(read(&mut s, Dev::Snap(s2), 3), 3);
        assert_eq!(read(&mut s, Dev::Origin(0), 3), 5);
        cache_matches_tree(&mut s);
        // The same after a reopen (nothing cached, everything from the tree).
        let (origin, dev) = (s.origin_device(0).unwrap(), s.dev.clone());
        s.commit().unwrap();
        drop(s);
        let mut s = Store::open(origin, dev, StoreOptions::default()).unwrap();
        assert_eq!(read(&mut s, Dev::Snap(s1), 3), 1);
        assert_eq!(read(&mut s, Dev::Snap(s2), 3), 3);
        assert_eq!(read(&mut s, Dev::Origin(0), 3), 5);
    }

    /// The element cache stays exact through every kind of element change: copy-outs
    /// (also into extents of neighbouring addresses), snapshot writes (in place,
    /// split, relabel), deletes with their pass, holes, and a merge.
    #[test]
    fn the_element_cache_stays_exact_through_element_changes() {
        let mut s = store();
        for a in 0..8 {
            write(&mut s, Dev::Origin(0), a, a as u8);
        }
        let s1 = s.create_snapshot("s1", None, 1).unwrap();
        for a in 0..8 {
            write(&mut s, Dev::Origin(0), a, 10 + a as u8); // one extent for s1
        }
        cache_matches_tree(&mut s);
        let s2 = s.create_snapshot("s2", Some(s1), 2).unwrap();
        write(&mut s, Dev::Snap(s1), 2, 20); // split: s2 keeps s1's data
        write(&mut s, Dev::Snap(s2), 4, 21);
        write(&mut s, Dev::Snap(s2), 4, 22); // in place
        cache_matches_tree(&mut s);
        let s3 = s.create_snapshot("s3", None, 3).unwrap();
        for a in [1, 3, 5] {
            write(&mut s, Dev::Origin(0), a, 30 + a as u8);
        }
        s.write_zeroes(Dev::Snap(s3), 6 * CS, CS).unwrap(); // a hole
        cache_matches_tree(&mut s);
        s.delete_snapshot(s1).unwrap();
        s.run_background(4).unwrap();
        cache_matches_tree(&mut s);
        write(&mut s, Dev::Snap(s2), 2, 23);
        s.merge_snapshot(s3).unwrap();
        write(&mut s, Dev::Origin(0), 5, 40); // merges address 5 first
        s.run_background(4).unwrap();
        cache_matches_tree(&mut s);
        for (a, want) in [(0u64, 0u8), (2, 23), (4, 22), (5, 5)] {
            assert_eq!(read(&mut s, Dev::Snap(s2), a), want, "s2 at {a}");
        }
        for (a, want) in [(1u64, 11u8), (5, 40), (6, 0), (7, 17)] {
            assert_eq!(read(&mut s, Dev::Origin(0), a), want, "origin at {a}");
        }
    }
}
