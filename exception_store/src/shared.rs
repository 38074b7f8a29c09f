//! [`SharedStore`]: the store for many threads at once (the ublk queues, the control
//! socket, the background worker), with group commit.
//!
//! # Origin writes
//! An origin write first copies out what snapshots still read, in three steps
//! ([`Store::copy_out_begin`], see `store::copy_out`): plan and allocate under the
//! store lock, copy the data without it (so the queues copy at the same time), link
//! the chunks under it again. A write that meets an address another write is copying
//! waits on `copied` until that copy is linked, then plans again. The copy-out says
//! which transaction must be durable before the origin may change; the writer waits
//! for that commit ([`SharedStore::wait_durable`]): the first waiter commits for
//! everyone (group commit), the others sleep until it is done, so a burst of first
//! writes costs one commit. Then the origin data is written, outside the store lock.
//!
//! # Snapshot writes
//! A snapshot write that changes metadata (a first write to a shared chunk, a hole,
//! a relabel) completes only once that change is committed, by the same group
//! commit. The reason is the daemon, not power loss: after `kill -9` the kernel keeps
//! the device and its filesystem alive (user recovery) and keeps sending FLUSHes, and
//! a FLUSH promises that every write completed before it is durable. A completed
//! write whose chunk mapping lived only in the dead process's memory would be lost
//! silently. Data written with `pwrite` survives the process (page cache); with its
//! mapping committed too, a killed daemon loses no completed write at all. Writes
//! into chunks the snapshot already owns change no metadata and do not wait.
//!
//! # Origin writes that wait without blocking
//! [`SharedStore::origin_write_start`] and [`SharedStore::origin_write_finish`] split
//! an origin write around its wait for the commit, so that a ublk queue can start
//! many writes, commit once for all of them ([`SharedStore::wait_durable`] with the
//! newest transaction they need), then write their data: a group commit inside one
//! queue thread, with no thread handing work to another.
//!
//! # The origin gate
//! Each origin has its own side ([`OriginSide`]): its device, gate, size and settled
//! chunks, reached without the store lock. Origin writes are inside their origin's
//! gate ([`crate::origin_gate`]) from their copy-out until their data is written;
//! creating a snapshot of it, starting a merge into it, growing it and the last
//! commit of a stop run alone ([`OriginGate::exclusive`]). So a snapshot never sees an
//! origin write whose copy-out decision was taken before the snapshot existed.
//!
//! # Lock order
//! origin gate, then store lock, then the commit I/O baton (`store::commit_io`; the
//! group-commit leader holds the baton without the store lock while its commit
//! flushes, and gives it back before taking the store lock again); the commit state
//! lock is never held while taking another. A thread holding gate entries of started writes never waits to enter
//! ([`SharedStore::origin_write_start`] answers `Busy` instead).
use crate::{
    origin_gate::{self, OriginGate},
    CopyOutBegin, Dev, OriginId, Result, Store,
};
use blockdev::{
    ids::{SnapId, TxnId},
    BlockDevice,
};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use std::collections::BTreeMap;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

#[derive(Debug)]
struct CommitState {
    durable: TxnId,
    leader: bool,
    /// Group-commit rounds started, and the newest of them that flushed the store
    /// and succeeded (a snapshot's FLUSH needs a store flush that started after it
    /// arrived: [`SharedStore::flush`]).
    rounds: u64,
    flushed_round: u64,
}

/// What [`SharedStore::origin_write_start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Nothing: the gate is closed for now (see the method).
    Busy,
    /// The whole write: nothing had to commit first.
    Written,
    /// The copy-out: transaction `.0` must be durable before the data is written.
    Wait(TxnId),
}

/// One origin's part of a [`SharedStore`], used without the store lock.
struct OriginSide {
    dev: Arc<dyn BlockDevice>,
    gate: OriginGate,
    /// The origin's size: read without the store lock by every request's bounds
    /// check; changes only in [`SharedStore::grow_origin`], after the commit.
    size: AtomicU64,
    /// Origin chunks whose writes need neither a copy-out nor a commit (`settled`).
    settled: settled::Settled,
    /// The origin's copy epoch ([`Store::copy_epoch`]), read without the store lock.
    copy_epoch: Arc<AtomicU64>,
}

impl OriginSide {
    fn new(
        dev: Arc<dyn BlockDevice>,
        size: u64,
        chunk_size: u64,
        copy_epoch: Arc<AtomicU64>,
    ) -> Arc<Self> {
        Arc::new(OriginSide {
            dev,
            gate: OriginGate::new(),
            size: AtomicU64::new(size),
            settled: settled::Settled::new(size.div_ceil(chunk_size)),
            copy_epoch,
        })
    }

    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.dev
            .write_at(data, offset)
            .map_err(|source| crate::Error::Io {
                device: "origin",
                offset,
                source,
            })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.dev
            .read_at(buf, offset)
            .map_err(|source| crate::Error::Io {
                device: "origin",
                offset,
                source,
            })
    }
}

/// See the module documentation.
pub struct SharedStore {
    store: Mutex<Store>,
    /// Notified whenever a copy-out without the lock ends (its addresses leave
    /// flight); waited on with the store lock.
    copied: Condvar,
    /// The origins with a device attached, by id.
    origins: RwLock<BTreeMap<OriginId, Arc<OriginSide>>>,
    /// The store device's descriptor, for reads done elsewhere (`direct`).
    store_fd: Option<std::os::fd::RawFd>,
    commit: Mutex<CommitState>,
    done: Condvar,
    /// The store's count of moves ([`Store::moves`]), read without its lock.
    moves: Arc<AtomicU64>,
    /// The store's count of frees ([`Store::frees`]), read without its lock.
    frees: Arc<AtomicU64>,
    /// Whether a merge runs ([`Store::merging_flag`]), read without its lock.
    merging: Arc<std::sync::atomic::AtomicBool>,
    /// The chunk size in bytes.
    chunk_size: u64,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedStore({} bytes)", self.size())
    }
}

impl SharedStore {
    /// Share an open store.
    pub fn new(store: Store) -> Self {
        let durable = store.txn_id();
        let store_fd = store.dev.raw_fd();
        let moves = store.moves();
        let frees = store.frees();
        let merging = store.merging_flag();
        let chunk_size = store.chunk_size();
        let mut store = store;
        let devs: Vec<(OriginId, Arc<dyn BlockDevice>)> = store
            .origin_devs
            .iter()
            .map(|(k, d)| (*k, d.clone()))
            .collect();
        let origins = devs
            .into_iter()
            .map(|(k, dev)| {
                let size = store.origin_size(k).unwrap_or(0);
                let epoch = store.copy_epoch(k);
                (k, OriginSide::new(dev, size, chunk_size, epoch))
            })
            .collect();
        SharedStore {
            store: Mutex::new(store),
            copied: Condvar::new(),
            origins: RwLock::new(origins),
            store_fd,
            commit: Mutex::new(CommitState {
                durable,
                leader: false,
                rounds: 0,
                flushed_round: 0,
            }),
            done: Condvar::new(),
            moves,
            frees,
            merging,
            chunk_size,
        }
    }

    /// Origin `k`'s side; an error when it has no device attached.
    fn side(&self, k: OriginId) -> Result<Arc<OriginSide>> {
        if let Some(o) = self.origins.read().get(&k) {
            return Ok(o.clone());
        }
        // the store says why: no such origin, or no device
        self.store.lock().origin_device(k)?;
        Err(crate::Error::OriginMissing(format!(
            "origin #{k} has no device attached"
        )))
    }

    /// Origin 0's size in bytes now (it grows with
    /// [`grow_origin`](Self::grow_origin); a snapshot keeps its own, [`Self::dev_size`]).
    pub fn size(&self) -> u64 {
        self.side(0).map_or(0, |o| o.size())
    }

    /// The size of `dev` in bytes ([`Store::dev_size`]).
    pub fn dev_size(&self, dev: Dev) -> Result<u64> {
        match dev {
            Dev::Origin(k) => Ok(self.side(k)?.size()),
            Dev::Snap(_) => self.store.lock().dev_size(dev),
        }
    }

    /// Grow origin `k` to `new_len` bytes ([`Store::grow_origin`]), alone: no write
    /// to it is between its copy-out and its data meanwhile. The size the devices
    /// see changes once the growth is committed.
    pub fn grow_origin(&self, k: OriginId, new_len: u64) -> Result<crate::OriginGrown> {
        let o = self.side(k)?;
        o.gate.exclusive(|| {
            let g = self.store.lock().grow_origin(k, new_len)?;
            o.settled.resize(g.new_len.div_ceil(self.chunk_size));
            o.size.store(g.new_len, Ordering::Release);
            Ok(g)
        })
    }

    /// Add origin `name` on `dev` ([`Store::add_origin`]); its device is served
    /// from now on.
    pub fn add_origin(
        &self,
        name: &str,
        dev: Arc<dyn BlockDevice>,
        path: &str,
        created: u64,
    ) -> Result<OriginId> {
        let mut s = self.store.lock();
        let k = s.add_origin(name, dev.clone(), path, created)?;
        self.note_durable(s.txn_id());
        let size = s.origin_size(k)?;
        let epoch = s.copy_epoch(k);
        self.origins
            .write()
            .insert(k, OriginSide::new(dev, size, self.chunk_size, epoch));
        Ok(k)
    }

    /// Attach origin `k`'s device ([`Store::attach_origin`]).
    pub fn attach_origin(&self, k: OriginId, dev: Arc<dyn BlockDevice>) -> Result<()> {
        let mut s = self.store.lock();
        s.attach_origin(k, dev.clone())?;
        let size = s.origin_size(k)?;
        let epoch = s.copy_epoch(k);
        self.origins
            .write()
            .insert(k, OriginSide::new(dev, size, self.chunk_size, epoch));
        Ok(())
    }

    /// Remove origin `k` ([`Store::remove_origin`]), alone with its writes.
    pub fn remove_origin(&self, k: OriginId, with_snapshots: bool) -> Result<crate::OriginRemoved> {
        let o = self.side(k).ok();
        let run = || -> Result<crate::OriginRemoved> {
            let mut s = self.store.lock();
            let r = s.remove_origin(k, with_snapshots)?;
            self.note_durable(s.txn_id());
            Ok(r)
        };
        let r = match &o {
            Some(o) => o.gate.exclusive(run)?,
            None => run()?,
        };
        self.origins.write().remove(&k);
        Ok(r)
    }

    /// The store itself, locked (for control operations and tests).
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock()
    }

    /// What `dev` reads over a byte range ([`Store::map`]).
    pub fn map(&self, dev: Dev, offset: u64, len: u64) -> Result<Vec<crate::map::MapExtent>> {
        self.store.lock().map(dev, offset, len)
    }

    /// The layers of `dev` ([`Store::layers`]).
    pub fn layers(&self, dev: Dev) -> Result<Vec<crate::map::Layer>> {
        self.store.lock().layers(dev)
    }

    /// Where `a` and `b` may read differently ([`Store::diff`]).
    pub fn diff(&self, a: Dev, b: Dev, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        self.store.lock().diff(a, b, offset, len)
    }

    /// Read from a device.
    ///
    /// Origin reads outside a merge are the origin's bytes: they are checked under the
    /// store lock and read without it, so they neither wait for nor hold up the other
    /// queues. (A merge that starts meanwhile is ordered after such a read: it read the
    /// origin as it was before the merge, as one concurrent with any write may.)
    pub fn read(&self, dev: Dev, offset: u64, buf: &mut [u8]) -> Result<()> {
        if let Dev::Origin(k) = dev {
            let o = self.side(k)?;
            if !self.merging.load(Ordering::SeqCst) {
                // no merge: the origin's bytes, and no store lock
                let end = offset.checked_add(buf.len() as u64);
                if end.is_some_and(|e| e <= o.size()) {
                    return o.read(offset, buf);
                }
            }
            let s = self.store.lock();
            if !s.is_merging() {
                s.check_origin_range(k, offset, buf.len() as u64)?;
                drop(s);
                return o.read(offset, buf);
            }
        }
        self.store.lock().read(dev, offset, buf)
    }

    /// Where an origin read of `offset..+len` may read the origin's bytes itself,
    /// asynchronously: the origin's descriptor and the same offset, when no merge is
    /// running (then origin reads are the origin's bytes, as in [`read`](Self::read))
    /// and the origin has a descriptor. `None`: read through [`read`](Self::read).
    pub fn origin_direct_read(
        &self,
        k: OriginId,
        offset: u64,
        len: u64,
    ) -> Option<std::os::fd::RawFd> {
        // no store lock: the merge flag and the origin's size are read without it
        let o = self.side(k).ok()?;
        let inside = offset.checked_add(len).is_some_and(|e| e <= o.size());
        if self.merging.load(Ordering::SeqCst) || !inside {
            return None;
        }
        o.dev.raw_fd()
    }

    /// Write to a device (origin writes follow the two-half protocol above).
    pub fn write(&self, dev: Dev, offset: u64, data: &[u8]) -> Result<()> {
        match dev {
            Dev::Origin(k) => {
                let o = self.side(k)?;
                let _g = o.gate.entry();
                let need = self.copy_out(k, &o, offset, data.len() as u64)?;
                self.wait_for(need)?;
                // copy_out checked the range
                o.write(offset, data)
            }
            Dev::Snap(_) => {
                let need = {
                    let mut s = self.store.lock();
                    s.write(dev, offset, data)?;
                    s.snap_uncommitted_in(dev, offset, data.len() as u64)
                };
                self.wait_for(need)
            }
        }
    }

    /// First half of an origin write that waits without blocking (module
    /// documentation): enter the gate and copy out what the write overwrites.
    /// - `Busy`: entering the gate would wait (an exclusive operation is waiting for
    ///   the writes inside). Finish the writes this caller started, then write with
    ///   [`write`](Self::write).
    /// - `Written`: nothing had to commit first; the data is written, the gate left.
    /// - `Wait(t)`: make `t` durable ([`wait_durable`](Self::wait_durable), once for
    ///   any number of started writes), then call
    ///   [`origin_write_finish`](Self::origin_write_finish) for this write; if `t`
    ///   cannot be made durable, [`origin_write_abandon`](Self::origin_write_abandon)
    ///   instead. One of the two exactly once: until then the write holds a gate entry.
    pub fn origin_write_start(&self, k: OriginId, offset: u64, data: &[u8]) -> Result<Started> {
        let o = self.side(k)?;
        if !o.gate.try_enter() {
            return Ok(Started::Busy);
        }
        let need = match self.copy_out(k, &o, offset, data.len() as u64) {
            Ok(need) => need,
            Err(e) => {
                o.gate.leave();
                return Err(e);
            }
        };
        match need {
            Some(t) => Ok(Started::Wait(t)),
            None => {
                let r = o.write(offset, data);
                o.gate.leave();
                r.map(|()| Started::Written)
            }
        }
    }

    /// Second half of a write started with [`origin_write_start`](Self::origin_write_start)
    /// that answered `Wait(t)`, once `t` is durable: write the data, leave the gate.
    pub fn origin_write_finish(&self, k: OriginId, offset: u64, data: &[u8]) -> Result<()> {
        let o = self.side(k)?;
        let r = o.write(offset, data);
        o.gate.leave();
        r
    }

    /// A write started with `Wait(t)` whose `t` could not be made durable: it writes
    /// nothing and leaves the gate.
    pub fn origin_write_abandon(&self, k: OriginId) {
        if let Ok(o) = self.side(k) {
            o.gate.leave();
        }
    }

    /// Write zeroes (see [`Store::write_zeroes`]), in steps of at most
    /// `RANGE_STEP` bytes: the store lock is taken per step, and the origin's
    /// zeros are written without it, so a 1 GiB WRITE_ZEROES never stalls other
    /// devices' I/O for longer than one step's copy-out decision.
    pub fn write_zeroes(&self, dev: Dev, offset: u64, len: u64) -> Result<()> {
        self.check_whole(dev, offset, len)?;
        in_steps(offset, len, |off, n| match dev {
            Dev::Origin(k) => {
                let o = self.side(k)?;
                let _g = o.gate.entry();
                let need = self.copy_out(k, &o, off, n)?;
                self.wait_for(need)?;
                // copy_out checked the range
                let zeros = vec![0u8; (n as usize).min(ZERO_BUF)];
                let mut done = 0;
                while done < n {
                    let m = (n - done).min(zeros.len() as u64);
                    o.write(off + done, &zeros[..m as usize])?;
                    done += m;
                }
                Ok(())
            }
            Dev::Snap(_) => self.with_origin_commit(dev, off, n, |s| s.write_zeroes(dev, off, n)),
        })
    }

    /// Refuse a range that is not inside `dev` before any step of it is done.
    fn check_whole(&self, dev: Dev, offset: u64, len: u64) -> Result<()> {
        let size = self.store.lock().dev_size(dev)?;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(crate::Error::Invalid(format!(
                "I/O of {len} bytes at {offset} is past the end of a {size}-byte device"
            ))),
        }
    }

    /// Discard (see [`Store::discard`]), in steps of at most `RANGE_STEP` bytes
    /// (chunk-aligned: a step boundary splits no chunk), the store lock per step.
    pub fn discard(&self, dev: Dev, offset: u64, len: u64) -> Result<()> {
        self.check_whole(dev, offset, len)?;
        let side = match dev {
            Dev::Origin(k) => Some(self.side(k)?),
            Dev::Snap(_) => None,
        };
        in_steps(offset, len, |off, n| {
            let _g = side.as_ref().map(|o| o.gate.entry());
            self.with_origin_commit(dev, off, n, |s| s.discard(dev, off, n))
        })
    }

    /// For the rarer operations: on the origin, prepare, group-commit, then run `f`
    /// (whose own prepare then finds nothing left to commit); on a snapshot, run `f`
    /// and wait for the commit of what it changed (see "Snapshot writes").
    fn with_origin_commit(
        &self,
        dev: Dev,
        offset: u64,
        len: u64,
        f: impl FnOnce(&mut Store) -> Result<()>,
    ) -> Result<()> {
        if let Dev::Origin(k) = dev {
            let o = self.side(k)?;
            let need = self.copy_out(k, &o, offset, len)?;
            self.wait_for(need)?;
            return f(&mut self.store.lock());
        }
        let need = {
            let mut s = self.store.lock();
            f(&mut s)?;
            s.snap_uncommitted_in(dev, offset, len)
        };
        self.wait_for(need)
    }

    /// Copy out what an origin write to `offset..+len` overwrites, the data copied
    /// without the store lock (module documentation). Returns the transaction that
    /// must be durable before the origin is written, if one must. Call with origin
    /// `k`'s gate (`o`) held shared.
    fn copy_out(
        &self,
        k: OriginId,
        o: &OriginSide,
        offset: u64,
        len: u64,
    ) -> Result<Option<TxnId>> {
        // The steady state: every chunk settled, no store lock (`settled`). The
        // caller holds the origin gate, so the copy epoch cannot change meanwhile.
        let chunks =
            (len > 0 && offset.checked_add(len).is_some_and(|e| e <= o.size())).then(|| {
                (
                    offset / self.chunk_size,
                    (offset + len - 1) / self.chunk_size,
                )
            });
        if let Some((first, last)) = chunks {
            if o.settled
                .covers(o.copy_epoch.load(Ordering::SeqCst), first, last)
            {
                return Ok(None);
            }
        }
        let mut s = self.store.lock();
        loop {
            match s.copy_out_begin(k, offset, len)? {
                CopyOutBegin::Busy => self.copied.wait(&mut s),
                CopyOutBegin::Done(None) => {
                    if let Some((first, last)) = chunks.filter(|_| !s.is_merging()) {
                        // nothing to copy, nothing uncommitted: settled until the
                        // next snapshot, merge or growth
                        o.settled
                            .mark(o.copy_epoch.load(Ordering::SeqCst), first, last);
                    }
                    return Ok(None);
                }
                CopyOutBegin::Done(need) => return Ok(need),
                CopyOutBegin::NeedRoom(need) => {
                    // The space policy in steps, the lock per step: other devices'
                    // I/O goes on while a big snapshot's space is freed.
                    drop(s);
                    loop {
                        let mut s = self.store.lock();
                        if s.room_step(k, need, ROOM_STEP_BUDGET)? == crate::RoomStep::Room {
                            break;
                        }
                    }
                    s = self.store.lock();
                }
                CopyOutBegin::Copy(mut job) => {
                    let r = MutexGuard::unlocked(&mut s, || job.run());
                    let need = s.copy_out_finish(job, r);
                    self.copied.notify_all();
                    return need;
                }
            }
        }
    }

    /// [`wait_durable`](Self::wait_durable) when a transaction is named.
    fn wait_for(&self, need: Option<TxnId>) -> Result<()> {
        match need {
            Some(t) => self.wait_durable(t).map(drop),
            None => Ok(()),
        }
    }

    /// Wait until transaction `t` is durable, committing it if nobody else is.
    pub fn wait_durable(&self, t: TxnId) -> Result<TxnId> {
        let mut st = self.commit.lock();
        loop {
            if st.durable >= t {
                return Ok(st.durable);
            }
            if !st.leader {
                st.leader = true;
                st.rounds += 1;
                let round = st.rounds;
                drop(st);
                // The commit's flushes and superblock without the store lock
                // (`store::commit`): the other origins' copy-outs are planned and
                // linked into the next transaction meanwhile. t may already be
                // durable (another path committed it); a commit with nothing to
                // write still flushes the store.
                let r = (|| {
                    let job = self.store.lock().commit_begin()?;
                    let r = job.run();
                    self.store.lock().commit_end(r)
                })();
                st = self.commit.lock();
                st.leader = false;
                if let Ok(d) = r {
                    st.durable = st.durable.max(d);
                    st.flushed_round = round;
                }
                self.done.notify_all();
                r?;
                continue;
            }
            self.done.wait(&mut st);
        }
    }

    /// Commit everything so far (group commit with concurrent writers).
    pub fn commit(&self) -> Result<TxnId> {
        let t = self.store.lock().needed_txn();
        self.wait_durable(t)
    }

    /// A FLUSH of `dev`: its origin and the store durable. The origin's flush runs
    /// on a second thread beside the (group) commit: a FLUSH waits for the slower of
    /// the two, not their sum.
    ///
    /// A snapshot's writes into chunks it owns go to the store device in place and
    /// change no metadata, so nothing may be left to commit: its FLUSH then flushes
    /// the store itself, unless a group commit that started after the FLUSH arrived
    /// flushed it already. (An origin's FLUSH needs no store flush: the copy-outs of
    /// its writes were committed before the writes were made.)
    pub fn flush(&self, dev: Dev) -> Result<TxnId> {
        let k = match dev {
            Dev::Origin(k) => k,
            Dev::Snap(_) => self.store.lock().origin_of(dev)?,
        };
        let Ok(origin) = self.side(k).map(|o| o.dev.clone()) else {
            // a snapshot of an origin without its device: the store alone
            return self.commit_for(dev);
        };
        std::thread::scope(|sc| {
            let o = sc.spawn(move || origin.flush());
            let c = self.commit_for(dev);
            let o = o
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("origin flush thread panicked")))
                .map_err(|source| crate::Error::Io {
                    device: "origin",
                    offset: 0,
                    source,
                });
            let t = c?;
            o?;
            Ok(t)
        })
    }

    /// [`commit`](Self::commit) for a FLUSH of `dev` (see [`flush`](Self::flush)).
    fn commit_for(&self, dev: Dev) -> Result<TxnId> {
        let after = self.commit.lock().rounds + 1;
        let t = self.commit()?;
        if matches!(dev, Dev::Snap(_)) && self.commit.lock().flushed_round < after {
            // without the store lock; a failure latches the store (what the flush
            // was to make durable may be lost)
            let dev = {
                let s = self.store.lock();
                if s.is_failed() {
                    return Err(crate::Error::PreviousIo);
                }
                s.dev.clone()
            };
            if let Err(source) = dev.flush() {
                self.store.lock().latch();
                return Err(crate::Error::Io {
                    device: "store",
                    offset: 0,
                    source,
                });
            }
        }
        Ok(t)
    }

    /// The last commit of a clean stop (see [`Store::commit_clean_shutdown`]); call
    /// when no I/O can arrive any more.
    pub fn commit_clean_shutdown(&self) -> Result<TxnId> {
        let sides: Vec<Arc<OriginSide>> = self.origins.read().values().cloned().collect();
        let t = exclusive_all(&sides, || self.store.lock().commit_clean_shutdown())?;
        self.note_durable(t);
        Ok(t)
    }

    /// Run `f` alone with the writes of the origin `dev` belongs to.
    fn exclusive_for<T>(&self, dev: Dev, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let k = self.store.lock().origin_of(dev)?;
        match self.side(k) {
            Ok(o) => o.gate.exclusive(f),
            // no device attached: no writes to keep out
            Err(_) => f(),
        }
    }

    /// Run the running merge, if any, to its end: one batch
    /// ([`Store::merge_step`]) per hold of the store lock, which is handed to a
    /// waiting thread (`unlock_fair`) between batches, so that the other devices'
    /// I/O is served meanwhile instead of waiting for the whole merge.
    pub fn finish_merge(&self) -> Result<()> {
        loop {
            let mut s = self.store.lock();
            let more = s.merge_step()?;
            self.note_durable(s.txn_id());
            if !more {
                return Ok(());
            }
            MutexGuard::unlock_fair(s);
        }
    }

    /// Create a snapshot (exclusive with origin writes in flight). A snapshot of the
    /// origin captures the merged origin (design note E7): a running merge is
    /// finished first, in batches ([`SharedStore::finish_merge`]), not under one
    /// hold of the store lock ([`Store::create_snapshot`] would finish it whole).
    pub fn create_snapshot(
        &self,
        name: &str,
        parent: Option<SnapId>,
        created: u64,
    ) -> Result<SnapId> {
        if parent.is_none() {
            self.finish_merge()?;
        }
        let dev = parent.map_or(Dev::Origin(0), Dev::Snap);
        self.exclusive_for(dev, || {
            let mut s = self.store.lock();
            let id = s.create_snapshot(name, parent, created)?;
            self.note_durable(s.txn_id());
            Ok(id)
        })
    }

    /// Create snapshot `name` of every origin of `origins` in one commit, a group
    /// ([`Store::create_group`]): the fence. A running merge is finished first (in
    /// batches); then every member's gate is closed, in origin id order (so two
    /// group creates never wait for each other crosswise): writes in flight drain,
    /// new ones wait; the members are linked and committed with the origins flushed;
    /// the gates open. Every write completed before this call is in every member;
    /// no write submitted after it returns is in any.
    pub fn create_group(
        &self,
        name: &str,
        origins: &[OriginId],
        created: u64,
    ) -> Result<crate::GroupInfo> {
        self.finish_merge()?;
        let mut ks = origins.to_vec();
        ks.sort_unstable();
        let sides: Vec<Arc<OriginSide>> = {
            let map = self.origins.read();
            ks.iter().filter_map(|k| map.get(k).cloned()).collect()
        };
        exclusive_all(&sides, || {
            let mut s = self.store.lock();
            let g = s.create_group(name, origins, created)?;
            self.note_durable(s.txn_id());
            Ok(g)
        })
    }

    /// Create snapshot `name` of origin `k` (exclusive with its writes in flight).
    pub fn create_origin_snapshot(&self, k: OriginId, name: &str, created: u64) -> Result<SnapId> {
        self.finish_merge()?;
        self.exclusive_for(Dev::Origin(k), || {
            let mut s = self.store.lock();
            let id = s.create_origin_snapshot(k, name, created)?;
            self.note_durable(s.txn_id());
            Ok(id)
        })
    }

    /// Create snapshot `name` of origin `k` with a given guid (a receive into it;
    /// exclusive with its writes in flight).
    pub fn create_origin_snapshot_as(
        &self,
        k: OriginId,
        name: &str,
        created: u64,
        guid: [u8; 16],
    ) -> Result<SnapId> {
        self.finish_merge()?;
        self.exclusive_for(Dev::Origin(k), || {
            let mut s = self.store.lock();
            let id = s.create_origin_snapshot_as(k, name, created, guid)?;
            self.note_durable(s.txn_id());
            Ok(id)
        })
    }

    /// Create a snapshot with a given guid (receive; exclusive with origin writes in
    /// flight, like [`SharedStore::create_snapshot`]).
    pub fn create_snapshot_as(
        &self,
        name: &str,
        parent: Option<SnapId>,
        created: u64,
        guid: [u8; 16],
    ) -> Result<SnapId> {
        if parent.is_none() {
            self.finish_merge()?;
        }
        let dev = parent.map_or(Dev::Origin(0), Dev::Snap);
        self.exclusive_for(dev, || {
            let mut s = self.store.lock();
            let id = s.create_snapshot_as(name, parent, created, guid)?;
            self.note_durable(s.txn_id());
            Ok(id)
        })
    }

    /// Start merging a snapshot into the origin (exclusive with origin writes in
    /// flight, like creating a snapshot).
    pub fn merge_snapshot(&self, id: SnapId) -> Result<TxnId> {
        let t = self.exclusive_for(Dev::Snap(id), || self.store.lock().merge_snapshot(id))?;
        self.note_durable(t);
        Ok(t)
    }

    /// Merge several snapshots, each into its own origin (a group's members), in
    /// one commit ([`Store::merge_snapshots`]), alone with the writes of every one
    /// of those origins (their gates taken in id order).
    pub fn merge_snapshots(&self, ids: &[SnapId]) -> Result<TxnId> {
        let ks = {
            let s = self.store.lock();
            let mut ks = ids
                .iter()
                .map(|&id| s.origin_of(Dev::Snap(id)))
                .collect::<Result<Vec<_>>>()?;
            ks.sort_unstable();
            ks
        };
        let sides: Vec<Arc<OriginSide>> = {
            let map = self.origins.read();
            ks.iter().filter_map(|k| map.get(k).cloned()).collect()
        };
        let t = exclusive_all(&sides, || self.store.lock().merge_snapshots(ids))?;
        self.note_durable(t);
        Ok(t)
    }

    /// Take the space the store device gained ([`Store::grow_store`]). Origin writes
    /// go on meanwhile: the growth only adds free chunks and commits.
    pub fn grow_store(&self, sparse: bool) -> Result<crate::Grown> {
        // The new part's preallocation (seconds for a large growth) runs without the
        // store lock: nothing can be placed past the store's length before the
        // commit below takes it.
        let (old_len, new_len, dev) = {
            let s = self.store.lock();
            let (old, new) = s.grow_plan()?;
            (old, new, s.dev.clone())
        };
        let pre = crate::store::preallocate(&*dev, old_len, new_len - old_len, sparse)?;
        let g = self.store.lock().grow_to(old_len, new_len, pre)?;
        self.note_durable(g.txn_id);
        Ok(g)
    }

    /// Delete several snapshots in one commit ([`Store::delete_snapshots`]).
    pub fn delete_snapshots(&self, ids: &[SnapId]) -> Result<TxnId> {
        let t = self.store.lock().delete_snapshots(ids)?;
        self.note_durable(t);
        Ok(t)
    }

    /// Delete a snapshot.
    pub fn delete_snapshot(&self, id: SnapId) -> Result<TxnId> {
        let t = self.store.lock().delete_snapshot(id)?;
        self.note_durable(t);
        Ok(t)
    }

    fn note_durable(&self, t: TxnId) {
        let mut st = self.commit.lock();
        st.durable = st.durable.max(t);
    }

    /// Do some background work; returns whether more remains.
    pub fn background_step(&self, budget: usize) -> Result<bool> {
        self.store.lock().background_step(budget)
    }
}

#[cfg(test)]
mod commit_tests;
mod direct;
#[cfg(test)]
mod held;
mod settled;
#[cfg(test)]
mod tests;

pub use direct::{DirectPiece, DirectPlan, DirectSource, DirectStarted};

/// Most bytes of a WRITE_ZEROES or discard done in one step (one copy-out decision
/// under the store lock, one commit). A multiple of every chunk size, so that step
/// boundaries split no chunk.
pub const RANGE_STEP: u64 = 16 << 20;

/// Pass steps the space policy runs per hold of the store lock
/// ([`Store::room_step`]).
const ROOM_STEP_BUDGET: usize = 256;

/// The buffer of zeros written to the origin, per write.
const ZERO_BUF: usize = 1 << 20;

/// Run `f` with every gate of `sides` held exclusively ([`origin_gate::exclusive_all`]:
/// all closed in id order, as `sides` comes from the ordered map, then drained
/// together).
fn exclusive_all<T>(sides: &[Arc<OriginSide>], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let gates: Vec<&OriginGate> = sides.iter().map(|o| &o.gate).collect();
    origin_gate::exclusive_all(&gates, f)
}

/// Run `f` on the pieces of `offset..+len` cut at multiples of `RANGE_STEP`; once
/// on the empty range when `len` is 0 (so that its bounds are checked as before).
fn in_steps(offset: u64, len: u64, mut f: impl FnMut(u64, u64) -> Result<()>) -> Result<()> {
    if len == 0 {
        return f(offset, 0);
    }
    let end = offset.saturating_add(len);
    let mut at = offset;
    while at < end {
        let next = ((at / RANGE_STEP + 1) * RANGE_STEP).min(end);
        f(at, next - at)?;
        at = next;
    }
    Ok(())
}
