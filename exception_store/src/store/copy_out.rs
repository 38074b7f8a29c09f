//! Copy-outs: before an origin chunk is overwritten, its old data is copied to a new
//! store chunk and labelled for the snapshots that still read it there.
//!
//! A copy-out is planned (which addresses need one, and for which label), its chunks
//! are allocated, the data is copied (a [`CopyOut`]), and each chunk is linked into
//! the elements of its address. Neighbouring addresses that land in neighbouring
//! chunks are copied with one read and one write, or one in-kernel copy
//! (`blockdev::copy_range`) when origin and store are files.
//!
//! # Two ways to run one
//! - Whole, under the caller's `&mut Store` ([`Store::origin_prepare`]): single-threaded
//!   callers, a running merge, and a store too full for the whole range at once (then
//!   one address at a time, so that the space policy acts as for single copy-outs).
//! - In three steps, the data copy without the store lock, so that the ublk queues copy
//!   at the same time ([`crate::SharedStore`]): [`Store::copy_out_begin`] (locked),
//!   [`CopyOut::run`] (unlocked), [`Store::copy_out_finish`] (locked).
//!
//! # Invariants of the three-step copy-out
//! - `begin` plans, allocates and records every address it will copy in `copying`
//!   (address -> chunk): the address is *in flight*. `begin` on a range that touches an
//!   address in flight answers [`CopyOutBegin::Busy`], and the caller waits for a
//!   `finish` before asking again. So no origin write changes an address while its old
//!   data is being copied: every origin write goes through `begin` first.
//! - `run` copies into chunks that nothing references: readers of the address still
//!   read the origin, unchanged (previous point), and a crash forgets the chunks (the
//!   allocator is rebuilt from the trees at open). `check` counts them as in use.
//! - `finish` decides again, for each address, which label reads the origin there now,
//!   and links the chunk to it, or gives the chunk back when none does any more (a delete,
//!   or a snapshot write that gave the snapshot its own chunk, while the copy ran). The
//!   copied data is right for any such decision: it is the origin's, which no write
//!   changed. Then the addresses leave `copying`.
//! - What could make a copy needed where none was (a new snapshot, the start of a
//!   merge) is kept out by the caller: [`crate::SharedStore`] holds its origin gate
//!   shared from `begin` to the origin write, and those take it exclusively. While a
//!   merge runs, `begin` does the whole copy-out under the lock (the merge pass writes
//!   the origin itself).
use super::{origin_io, store_io, OriginId, Store};
use crate::{rules::Elems, Result};
use blockdev::{
    ids::{ChunkNr, Label, TxnId},
    BlockDevice,
};
use btree::elements::Ptr;
use std::sync::Arc;

/// Most bytes one copy-out I/O moves (a bound on its buffer).
const MAX_COPY_RUN_BYTES: u64 = 4 << 20;

/// Copy-outs planned and allocated, whose data is still to copy ([`CopyOut::run`]).
pub struct CopyOut {
    /// (pool address, chunk), addresses ascending, all of one origin.
    items: Vec<(u64, ChunkNr)>,
    origin: Arc<dyn BlockDevice>,
    dev: Arc<dyn BlockDevice>,
    chunk_size: u64,
    origin_len: u64,
    buf: Vec<u8>,
    /// The origin write this copies for (origin, offset, length; set by
    /// `copy_out_begin`).
    range: (OriginId, u64, u64),
}

impl std::fmt::Debug for CopyOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CopyOut({:?})", self.items)
    }
}

/// What [`Store::copy_out_begin`] found.
#[derive(Debug)]
pub enum CopyOutBegin {
    /// An address of the range is in flight (another caller's copy-out): wait for a
    /// [`Store::copy_out_finish`], then ask again.
    Busy,
    /// Nothing (left) to copy. The transaction that must commit before the origin is
    /// written, if one must.
    Done(Option<TxnId>),
    /// Copy with [`CopyOut::run`], without the store lock, then hand it to
    /// [`Store::copy_out_finish`].
    Copy(CopyOut),
    /// The store is full and the space policy deletes the oldest snapshots: make
    /// room for this many chunks with [`Store::room_step`], taking the store lock
    /// for each step only, then ask again.
    NeedRoom(u64),
}

impl CopyOut {
    /// Copy the origin's old data into the allocated chunks. Touches no state of the
    /// store: run it without the store lock.
    pub fn run(&mut self) -> Result<()> {
        let max_run = (MAX_COPY_RUN_BYTES / self.chunk_size).max(1) as usize;
        let items = std::mem::take(&mut self.items);
        let r = self.copy_runs(&items, max_run);
        self.items = items;
        r
    }

    fn copy_runs(&mut self, items: &[(u64, ChunkNr)], max_run: usize) -> Result<()> {
        let mut i = 0;
        while i < items.len() {
            let mut n = 1;
            while i + n < items.len()
                && n < max_run
                && items[i + n].0 == items[i].0 + n as u64
                && items[i + n].1 .0 == items[i].1 .0 + n as u64
            {
                n += 1;
            }
            self.copy_run(items[i].0, n as u64, items[i].1)?;
            i += n;
        }
        Ok(())
    }

    /// Copy the origin's chunks `a .. a + n` into the store chunks `c .. c + n`: inside
    /// the kernel when both are files that allow it (`blockdev::copy_range`), else
    /// with one read and one write through the kept buffer (no allocation, no zeroing
    /// per copy). An in-kernel copy that fails is redone through memory, so that an
    /// error names the device that failed.
    ///
    /// Then it starts the copy's writeback ([`BlockDevice::start_writeback`], a hint
    /// whose failure the commit's flush reports), so that in a pool the copies of
    /// several origins are written back by their own threads, not all by the flush
    /// of the one commit that makes them durable.
    fn copy_run(&mut self, a: u64, n: u64, c: ChunkNr) -> Result<()> {
        let to = c.0 * self.chunk_size;
        let len = self.copy_data(a, n, to)?;
        let _ = self.dev.start_writeback(to, len);
        Ok(())
    }

    /// The copy of [`copy_run`](Self::copy_run); returns the bytes copied.
    fn copy_data(&mut self, a: u64, n: u64, to: u64) -> Result<u64> {
        let a = super::addr_chunk(a);
        let pos = a * self.chunk_size;
        let len = ((a + n) * self.chunk_size).min(self.origin_len) - pos;
        if let Ok(true) = blockdev::copy_range(&*self.origin, pos, &*self.dev, to, len) {
            return Ok(len);
        }
        let n = len as usize;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        self.origin
            .read_at(&mut self.buf[..n], pos)
            .map_err(origin_io(pos))?;
        self.dev
            .write_at(&self.buf[..n], to)
            .map_err(store_io(to))?;
        Ok(len)
    }
}

impl Store {
    /// Step one of a copy-out without the lock (module documentation): for the origin
    /// write `offset..+len` of origin `k`, plan and allocate its copy-outs and mark
    /// their addresses in flight.
    pub fn copy_out_begin(&mut self, k: OriginId, offset: u64, len: u64) -> Result<CopyOutBegin> {
        self.check_origin_range(k, offset, len)?;
        if len == 0 {
            return Ok(CopyOutBegin::Done(None));
        }
        let cs = self.chunk_size;
        let (first, last) = (
            super::pool_addr(k, offset / cs),
            super::pool_addr(k, (offset + len - 1) / cs),
        );
        if self.copying.range(first..=last).next().is_some() {
            return Ok(CopyOutBegin::Busy);
        }
        if self.is_merging() {
            return self.origin_prepare(k, offset, len).map(CopyOutBegin::Done);
        }
        let todo = self.latching(|s| s.plan_copy_outs(first, last))?;
        if todo.is_empty() {
            return Ok(CopyOutBegin::Done(self.uncommitted_in(k, offset, len)));
        }
        if self.room_for(k, todo.len() as u64).is_err() {
            if self.opts.space_policy == super::SpacePolicy::DeleteOldest
                && self.room_for(k, 1).is_err()
                && self.has_victim(k)
            {
                // the policy's deletes and their passes, in steps (`room_step`)
                return Ok(CopyOutBegin::NeedRoom(1));
            }
            // the space policy, one address at a time
            return self.origin_prepare(k, offset, len).map(CopyOutBegin::Done);
        }
        let mut job = self.start_copy(todo)?;
        job.range = (k, offset, len);
        for &(a, c) in &job.items {
            self.copying.insert(a, c);
        }
        Ok(CopyOutBegin::Copy(job))
    }

    /// Step three of a copy-out without the lock: link what `job` copied (`copied`:
    /// what its [`CopyOut::run`] returned) and take its addresses out of flight.
    /// Returns the transaction that must commit before the origin write, if one must.
    pub fn copy_out_finish(&mut self, job: CopyOut, copied: Result<()>) -> Result<Option<TxnId>> {
        for (a, _) in &job.items {
            self.copying.remove(a);
        }
        let (k, offset, len) = job.range;
        self.latching(|s| s.end_copy(job, copied))?;
        Ok(self.uncommitted_in(k, offset, len))
    }

    /// The addresses of `first..=last` that need a copy-out now.
    fn plan_copy_outs(&mut self, first: u64, last: u64) -> Result<Vec<u64>> {
        let mut todo = Vec::new();
        for a in first..=last {
            if self.copy_out_decision(a)?.is_some() {
                todo.push(a);
            }
        }
        Ok(todo)
    }

    /// Allocate a chunk for each address of `todo` (all or none; all of one origin).
    fn start_copy(&mut self, todo: Vec<u64>) -> Result<CopyOut> {
        let k = todo.first().map_or(0, |&a| super::addr_origin(a));
        let origin = self.origin_device(k)?;
        let origin_len = self.origin_size(k)?;
        let mut items = Vec::with_capacity(todo.len());
        for a in todo {
            match self.alloc.alloc_chunk() {
                Ok(c) => items.push((a, c)),
                Err(e) => {
                    items
                        .into_iter()
                        .for_each(|(_, c)| self.alloc.unalloc_chunk(c));
                    return Err(e);
                }
            }
        }
        Ok(CopyOut {
            items,
            origin,
            dev: self.dev.clone(),
            chunk_size: self.chunk_size,
            origin_len,
            buf: std::mem::take(&mut self.copy_buf),
            range: (k, 0, 0),
        })
    }

    /// Link each chunk of `job` to the label that reads the origin at its address now,
    /// or free it if none does (a copy-out done without the lock may have been
    /// overtaken); on a failed copy, free them all.
    fn end_copy(&mut self, job: CopyOut, copied: Result<()>) -> Result<()> {
        if job.buf.len() > self.copy_buf.len() {
            self.copy_buf = job.buf;
        }
        if let Err(e) = copied {
            job.items
                .into_iter()
                .for_each(|(_, c)| self.alloc.unalloc_chunk(c));
            return Err(e);
        }
        for (a, c) in job.items {
            match self.copy_out_decision(a)? {
                None => self.alloc.unalloc_chunk(c),
                Some((top, ghost, shared)) => {
                    let before: Elems = (*shared).clone();
                    drop(shared);
                    self.link_copy(a, top, ghost, &before, c)?;
                }
            }
        }
        Ok(())
    }

    /// Whether an origin write at `a` must copy the old data out first: the label to
    /// give the copy, whether that label is a ghost, and the element set as loaded.
    pub(crate) fn copy_out_decision(
        &mut self,
        a: u64,
    ) -> Result<Option<(Label, bool, Arc<Elems>)>> {
        // No snapshot of the origin: nothing to copy (`origin_copy_out` says the
        // same), so skip loading the elements.
        let k = super::addr_origin(a);
        let Some(newest) = self.vt.newest(self.root_of_origin(k)) else {
            return Ok(None);
        };
        // Decide on the cached element set itself; copy it only when it changes. In
        // the steady state (the newest snapshot already has its element here) this
        // is one cache lookup and one map lookup, whatever the number of snapshots.
        let shared = self.load_elems_shared(a)?;
        if shared.contains_key(&newest) {
            // every version lies below the newest snapshot: none reads the origin
            return Ok(None);
        }
        let cover = self.snap_cover.get(&k).copied().unwrap_or(0);
        if super::addr_chunk(a) * self.chunk_size >= cover && !self.is_merging() {
            // past every snapshot's size (the origin grew since): nobody reads the
            // old data here (`grow_origin`)
            return Ok(None);
        }
        if !self.vt.is_ghost(newest) || self.merging_at(a) == Some(newest) {
            // A visible newest snapshot reads the origin here itself: what
            // `origin_copy_out` decides, without the ancestor queries (whose tour is
            // rebuilt after every snapshot create, in time linear in the versions).
            return Ok(Some((newest, false, shared)));
        }
        let view = self.view_at(a);
        Ok(view
            .origin_copy_out(&shared)
            .map(|t| (t, !view.visible(t)))
            .map(|(t, ghost)| (t, ghost, shared)))
    }

    /// Label the copy of address `a`'s old data, now in chunk `c`, with `top`.
    fn link_copy(
        &mut self,
        a: u64,
        top: Label,
        ghost: bool,
        before: &Elems,
        c: ChunkNr,
    ) -> Result<()> {
        let mut after = before.clone();
        after.insert(top, Ptr::Chunk(c));
        if ghost {
            // The newest snapshot is a ghost whose delete pass may be past here.
            self.view_at(a).normalize(&mut after);
        }
        self.store_elems(a, before, &after, &[c])
    }

    /// A whole copy-out of address `a` under the lock, the space policy acting first
    /// when the store is full.
    pub(crate) fn copy_out(&mut self, a: u64) -> Result<()> {
        if self.copy_out_decision(a)?.is_none() {
            return Ok(());
        }
        let k = super::addr_origin(a);
        if self.room_for(k, 1).is_err() {
            // The deletes may change this address: `end_copy` decides again.
            self.make_room(k, 1)?;
            if self.copy_out_decision(a)?.is_none() {
                return Ok(());
            }
        }
        self.copy_now(vec![a])
    }

    /// Allocate, copy and link `todo` under the lock.
    fn copy_now(&mut self, todo: Vec<u64>) -> Result<()> {
        let mut job = self.start_copy(todo)?;
        let r = job.run();
        self.end_copy(job, r)
    }

    /// [`copy_out`](Self::copy_out) for every address of `first..=last`, neighbouring
    /// addresses in neighbouring chunks copied with one I/O (a sequential write's
    /// copy-outs are then one large I/O, not one per chunk). When the store cannot
    /// take them all at once, one at a time, so that the space policy acts as for
    /// single copy-outs.
    pub(crate) fn copy_out_range(&mut self, first: u64, last: u64) -> Result<()> {
        if first == last {
            return self.copy_out(first);
        }
        let todo = self.plan_copy_outs(first, last)?;
        if todo.is_empty() {
            return Ok(());
        }
        if self
            .room_for(super::addr_origin(first), todo.len() as u64)
            .is_err()
        {
            for a in todo {
                self.copy_out(a)?;
            }
            return Ok(());
        }
        self.copy_now(todo)
    }
}

#[cfg(test)]
mod tests {
    use super::{CopyOutBegin, Store};
    use crate::{Dev, Error, StoreOptions};
    use blockdev::{
        ids::{SnapId, TxnId},
        FaultyDevice,
    };
    use std::sync::Arc;

    const CS: u64 = 4096;

    struct Fixture {
        s: Store,
        snap: SnapId,
        origin: Arc<FaultyDevice>,
        dev: Arc<FaultyDevice>,
    }

    /// A store over a patterned origin with one snapshot, everything committed.
    fn fixture() -> Fixture {
        let origin = Arc::new(FaultyDevice::from_vec(blockdev::pattern(
            3,
            64 * CS as usize,
        )));
        let dev = Arc::new(FaultyDevice::new(1024 * CS));
        let mut s = Store::format(
            origin.clone(),
            dev.clone(),
            CS as u32,
            StoreOptions::default(),
        )
        .unwrap();
        let snap = s.create_snapshot("s", None, 0).unwrap();
        Fixture {
            s,
            snap,
            origin,
            dev,
        }
    }

    fn begin_copy(s: &mut Store, a: u64, n: u64) -> super::CopyOut {
        match s.copy_out_begin(0, a * CS, n * CS).unwrap() {
            CopyOutBegin::Copy(job) => job,
            other => panic!("expected a copy-out, got {other:?}"),
        }
    }

    /// All three steps of the copy-out for `a..a + n`, as `SharedStore` runs them.
    fn copy(s: &mut Store, a: u64, n: u64) -> crate::Result<Option<TxnId>> {
        let mut job = begin_copy(s, a, n);
        let r = job.run();
        s.copy_out_finish(job, r)
    }

    /// The device an I/O error names.
    fn io_device(e: &Error) -> Option<&'static str> {
        match e {
            Error::Io { device, .. } => Some(device),
            _ => None,
        }
    }

    fn snap_reads_pattern(s: &mut Store, snap: SnapId) {
        let want = blockdev::pattern(3, 64 * CS as usize);
        let mut got = vec![0u8; want.len()];
        s.read(Dev::Snap(snap), 0, &mut got).unwrap();
        assert!(got == want, "the snapshot lost the origin's old data");
    }

    /// An address in flight makes every overlapping origin write wait (`Busy`), and
    /// only those; `check` counts its chunk as in use; after the finish the snapshot
    /// reads the copy and the origin write may go ahead once it commits.
    #[test]
    fn an_address_in_flight_holds_off_overlapping_origin_writes() {
        let Fixture {
            mut s, snap, dev, ..
        } = fixture();
        let mut job = begin_copy(&mut s, 4, 3); // 4, 5, 6
        assert!(matches!(
            s.copy_out_begin(0, 6 * CS + 100, 10).unwrap(),
            CopyOutBegin::Busy
        ));
        assert!(matches!(
            s.copy_out_begin(0, 3 * CS, 2 * CS).unwrap(),
            CopyOutBegin::Busy
        ));
        let other = begin_copy(&mut s, 7, 1); // a neighbour is not held off
        let rep = s.check().unwrap();
        assert!(rep.is_clean(), "chunks in flight are not leaks: {rep:?}");
        let (_, w0, _) = dev.counts();
        let r = job.run();
        assert_eq!(
            dev.counts().1 - w0,
            1,
            "one store write for the run of three"
        );
        let need = s.copy_out_finish(job, r).unwrap();
        assert!(
            need.is_some(),
            "the links must commit before the origin write"
        );
        assert!(matches!(
            s.copy_out_begin(0, 4 * CS, 3 * CS).unwrap(),
            CopyOutBegin::Done(Some(_))
        ));
        let mut other = other;
        let r = other.run();
        s.copy_out_finish(other, r).unwrap(); // finished after the first
        s.commit().unwrap();
        assert!(matches!(
            s.copy_out_begin(0, 4 * CS, 4 * CS).unwrap(),
            CopyOutBegin::Done(None)
        ));
        s.origin_write_prepared(0, 4 * CS, &vec![9u8; 4 * CS as usize])
            .unwrap();
        snap_reads_pattern(&mut s, snap);
        assert!(s.check().unwrap().is_clean());
    }

    /// A copy overtaken by a delete of the only snapshot that read the origin there:
    /// the finish frees its chunk instead of linking it.
    #[test]
    fn a_copy_overtaken_by_a_delete_frees_its_chunk() {
        let Fixture { mut s, snap, .. } = fixture();
        let free0 = s.status().nr_free;
        let mut job = begin_copy(&mut s, 2, 2);
        s.delete_snapshot(snap).unwrap();
        s.run_background(16).unwrap();
        let r = job.run();
        s.copy_out_finish(job, r).unwrap();
        s.commit().unwrap();
        assert_eq!(s.status().nr_free, free0, "chunks leaked");
        let rep = s.check().unwrap();
        assert!(rep.is_clean(), "{rep:?}");
    }

    /// A copy overtaken by a snapshot write that gives the snapshot its own chunk at
    /// one of the addresses: that chunk is freed, the other address is linked, and the
    /// snapshot reads its own write and the old origin data.
    #[test]
    fn a_copy_overtaken_by_a_snapshot_write_links_only_what_is_still_read() {
        let Fixture { mut s, snap, .. } = fixture();
        let mut job = begin_copy(&mut s, 2, 2);
        s.write(Dev::Snap(snap), 3 * CS, &vec![7u8; CS as usize])
            .unwrap();
        let r = job.run();
        s.copy_out_finish(job, r).unwrap();
        s.commit().unwrap();
        s.origin_write_prepared(0, 2 * CS, &vec![9u8; 2 * CS as usize])
            .unwrap();
        let mut want = blockdev::pattern(3, 64 * CS as usize);
        want[3 * CS as usize..4 * CS as usize].fill(7);
        let mut got = vec![0u8; want.len()];
        s.read(Dev::Snap(snap), 0, &mut got).unwrap();
        assert!(got == want, "the snapshot does not read its own data");
        let rep = s.check().unwrap();
        assert!(rep.is_clean(), "{rep:?}");
    }

    /// A failed copy frees its chunks and takes its addresses out of flight: an origin
    /// read error leaves the store usable (the write fails, a retry copies), a store
    /// write error latches it.
    #[test]
    fn a_failed_copy_frees_its_chunks() {
        let Fixture {
            mut s,
            snap,
            origin,
            dev,
        } = fixture();
        let free0 = s.status().nr_free;
        origin.plan().lock().fail_read_in = Some(0);
        let e = copy(&mut s, 1, 1).unwrap_err();
        assert_eq!(io_device(&e), Some("origin"), "{e}");
        s.commit().unwrap();
        assert_eq!(s.status().nr_free, free0);
        copy(&mut s, 1, 1).unwrap();
        s.commit().unwrap();
        snap_reads_pattern(&mut s, snap);

        dev.plan().lock().fail_write_in = Some(0);
        let e = copy(&mut s, 5, 1).unwrap_err();
        assert_eq!(io_device(&e), Some("store"), "{e}");
        assert!(
            matches!(
                s.copy_out_begin(0, 5 * CS, CS).unwrap_err(),
                Error::PreviousIo
            ),
            "a failed store write latches the store"
        );
        assert!(s.copying.is_empty());
    }

    /// A write over neighbouring shared chunks copies their old data out with one
    /// origin read and one store write (the chunks are allocated next to each other),
    /// and every snapshot still reads its own data afterwards.
    #[test]
    fn neighbouring_copy_outs_are_one_read_and_one_write() {
        let Fixture {
            mut s,
            snap,
            origin,
            dev,
        } = fixture();
        // one address of the range already copied: two runs (3..=4 and 6..=12)
        s.write(Dev::Origin(0), 5 * CS, &[9u8; CS as usize])
            .unwrap();
        s.commit().unwrap();
        let (r0, w0, _) = origin.counts();
        let (_, d0, _) = dev.counts();
        let need = s.origin_prepare(0, 3 * CS, 10 * CS).unwrap();
        assert!(
            need.is_some(),
            "the copies must commit before the origin write"
        );
        let (r1, w1, _) = origin.counts();
        let (_, d1, _) = dev.counts();
        assert_eq!((r1 - r0, w1 - w0), (2, 0), "one origin read per run");
        assert_eq!(d1 - d0, 2, "one store write per run");
        s.commit().unwrap();
        s.origin_write_prepared(0, 3 * CS, &vec![1u8; 10 * CS as usize])
            .unwrap();
        let want = blockdev::pattern(3, 64 * CS as usize);
        let mut got = vec![0u8; 64 * CS as usize];
        s.read(Dev::Snap(snap), 0, &mut got).unwrap();
        assert_eq!(got, want);
        let mut b = [0u8; 1];
        s.read(Dev::Origin(0), 7 * CS, &mut b).unwrap();
        assert_eq!(b[0], 1);
        assert!(s.check().unwrap().is_clean());
    }
}
