//! Commits and latching: writing the dirty tables and nodes, the two flushes around
//! the superblock, and the rule that a failure after metadata may have changed latches
//! the store read-only until it is reopened.
//!
//! # A commit in three parts
//! 1. Under the store lock, with the baton (`commit_io`): persist the tables, write
//!    the dirty nodes, build superblock N and *seal* N: transaction N+1 opens at
//!    once (`NodeCache::begin`), so that a change from here on shadows N's nodes
//!    instead of writing over them; N's frees wait apart (`Allocator::seal`), and
//!    N's changed addresses move to [`InFlight`].
//! 2. With or without the store lock ([`CommitJob::run`]): flush the store, write
//!    superblock N, flush; the baton records the outcome and is given back.
//! 3. Under the store lock ([`Store::settle`]): N is the last committed, its frees
//!    are released; or, when the I/O failed, the store latches.
//!
//! [`Store::commit`] runs the three at once under `&mut self`; the group commit of
//! `SharedStore` runs part 2 without the lock ([`Store::commit_begin`],
//! [`Store::commit_end`]), so that copy-outs are planned and linked into N+1 while
//! N flushes.
//!
//! # While N is in flight
//! Until N is settled, what the open transaction does must be safe whether the
//! store comes back at N-1 or at N after a power cut:
//! - N+1 allocates only blocks and chunks free in both (N's frees are sealed).
//! - N's changed addresses count as uncommitted (`Store::uncommitted_in`): an origin
//!   write to one waits for N, and a snapshot write never overwrites in place a
//!   chunk whose address changed since N-1; chunks allocated in N are not fresh.
//! - Superblock N+1 is written only once N is durable (the baton). A commit that
//!   takes the baton and finds N sealed but not durable (its job dropped unrun: no
//!   I/O runs while the baton is free) latches the store: superblock N+1 would take
//!   N-1's slot with N missing (`Store::settle_holding`).

use super::{
    commit_io::{Baton, CommitJob},
    origin_io, store_io, Store,
};
use crate::{
    allocator::{Allocator, TREE_CHANGE_BLOCKS},
    format::FORMAT_VERSION,
    superblock::Superblock,
    tables::{OriginRec, SnapRec, VersionRec},
    Error, Result, Space,
};
use blockdev::{
    ids::{Label, SnapId, TxnId},
    BlockDevice,
};
use btree::{Codec, NodeCache, Tree};
use std::{collections::HashSet, sync::Arc};

/// A sealed commit whose superblock may not be durable yet (module documentation).
#[derive(Debug)]
pub(crate) struct InFlight {
    /// Its superblock.
    sb: Superblock,
    /// The addresses whose elements it changed.
    addrs: HashSet<u64>,
}

/// Bring `tree` up to date at the `dirty` keys: each gets the value `value` finds for
/// it, or is removed when there is none.
pub(super) fn persist<K: Codec + Ord, V: Codec>(
    tree: &mut Tree<K, V>,
    cache: &mut NodeCache,
    alloc: &mut Allocator,
    dirty: impl IntoIterator<Item = K>,
    mut value: impl FnMut(&K) -> Option<V>,
) -> Result<()> {
    for k in dirty {
        match value(&k) {
            Some(v) => {
                tree.insert(cache, alloc, k, v)?;
            }
            None => {
                tree.remove(cache, alloc, &k)?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// Make every change so far durable (metadata and store data); returns the
    /// committed transaction id.
    pub fn commit(&mut self) -> Result<TxnId> {
        self.commit_latching(false, true)
    }

    /// The last commit before a clean stop: everything durable, and the superblock
    /// records the clean shutdown (reported by the next open, see
    /// [`Status::last_shutdown_clean`](super::Status); any later commit clears it).
    pub fn commit_clean_shutdown(&mut self) -> Result<TxnId> {
        self.commit_marked_clean(true)
    }

    /// A commit whose superblock records a clean shutdown: the last of a clean stop,
    /// of `format`, of a repair. A FLUSH (origin too) when `with_origin`.
    pub(crate) fn commit_marked_clean(&mut self, with_origin: bool) -> Result<TxnId> {
        self.closing = true;
        self.changed = true;
        let r = if with_origin {
            self.flush()
        } else {
            self.commit()
        };
        self.closing = false;
        r
    }

    /// A FLUSH: the origin and the store are both durable when this returns. The
    /// origin's flush runs beside the commit's first store flush. If only the origin's
    /// flush fails, the error is returned and the store is not latched: the commit
    /// stops before its superblock, and its changes commit with the next one.
    pub fn flush(&mut self) -> Result<TxnId> {
        self.commit_latching(true, false)
    }

    /// A commit that also makes the origins of `ks` durable before its superblock is
    /// written (their flushes beside the commit's first store flush): what a snapshot
    /// of them captured, not every origin of the pool. Any failure latches the store,
    /// so nothing this commit carries ever becomes durable.
    pub(crate) fn commit_with_origins(&mut self, ks: &[super::OriginId]) -> Result<TxnId> {
        self.flush_only = Some(ks.to_vec());
        let r = self.commit_latching(true, true);
        self.flush_only = None;
        r
    }

    /// Commit (the origin flushed beside it when `with_origin`); a failure latches
    /// the store, except an origin I/O error when `origin_errors_latch` is false.
    pub(super) fn commit_latching(
        &mut self,
        with_origin: bool,
        origin_errors_latch: bool,
    ) -> Result<TxnId> {
        if self.failed {
            return Err(Error::PreviousIo);
        }
        let r = self.commit_inner(with_origin);
        if let Err(e) = &r {
            let origin = matches!(
                e,
                Error::Io {
                    device: "origin",
                    ..
                }
            );
            if origin_errors_latch || !origin {
                self.failed = true;
            }
        }
        r
    }

    /// Latch the store: an I/O it depends on failed outside its own calls (a flush
    /// of the store device made by `SharedStore` without the store lock).
    pub(crate) fn latch(&mut self) {
        self.failed = true;
    }

    /// Flush the store (`dev.flush`), and the origin too when `with_origin`, both at
    /// once (two devices, two threads: a FLUSH waits for the slower, not the sum).
    pub(super) fn flush_devices(&self, with_origin: bool) -> Result<()> {
        if !with_origin {
            return self.dev.flush().map_err(store_io(0));
        }
        let origins: Vec<Arc<dyn BlockDevice>> = self
            .origin_devs
            .iter()
            .filter(|(k, _)| self.flush_only.as_ref().is_none_or(|only| only.contains(k)))
            .map(|(_, d)| d.clone())
            .collect();
        std::thread::scope(|sc| {
            let flushes: Vec<_> = origins
                .into_iter()
                .map(|origin| sc.spawn(move || origin.flush()))
                .collect();
            let d = self.dev.flush().map_err(store_io(0));
            let mut o = Ok(());
            for f in flushes {
                let r = match f.join() {
                    Ok(r) => r.map_err(origin_io(0)),
                    Err(_) => Err(Error::Io {
                        device: "origin",
                        offset: 0,
                        source: std::io::Error::other("origin flush thread panicked"),
                    }),
                };
                o = o.and(r);
            }
            d.and(o)
        })
    }

    pub(super) fn commit_inner(&mut self, with_origin: bool) -> Result<TxnId> {
        let baton = self.io.acquire();
        self.settle_holding(&baton);
        self.check_writable()?;
        if !self.changed {
            self.flush_devices(with_origin)?;
            return Ok(self.sb.txn_id);
        }
        self.write_tables()?;
        // before the seal: an origin's flush that fails leaves the changes open,
        // to commit with the next one
        self.flush_devices(with_origin)?;
        let job = self.seal(baton, false);
        let r = job.run();
        self.commit_end(r)
    }

    /// Part 1 of a commit whose I/O runs without the store lock (module
    /// documentation): take the baton, seal the open transaction. Run the job
    /// ([`CommitJob::run`]) and hand its result to [`commit_end`](Self::commit_end).
    /// With nothing to commit, the job flushes the store only.
    pub fn commit_begin(&mut self) -> Result<CommitJob> {
        self.check_writable()?;
        let baton = self.io.acquire();
        self.settle_holding(&baton);
        self.check_writable()?;
        if !self.changed {
            return Ok(CommitJob {
                baton,
                dev: self.dev.clone(),
                sb: None,
                flush_first: true,
            });
        }
        if let Err(e) = self.write_tables() {
            self.failed = true;
            return Err(e);
        }
        Ok(self.seal(baton, true))
    }

    /// Part 3: settle what [`CommitJob::run`] returned (a failure latches the store).
    pub fn commit_end(&mut self, r: Result<TxnId>) -> Result<TxnId> {
        match &r {
            Ok(t) => self.settle(*t, false),
            Err(_) => self.failed = true,
        }
        r
    }

    /// Bring the tables' trees up to date and write every dirty node.
    fn write_tables(&mut self) -> Result<()> {
        let (cache, alloc) = (&mut self.cache, &mut self.alloc);
        let versions = std::mem::take(&mut self.dirty_versions);
        let versions = versions.into_iter().filter(|l| l.0 != 0).map(|l| l.0);
        persist(&mut self.versions, cache, alloc, versions, |&l| {
            self.vt.get(Label(l)).map(|v| VersionRec {
                parent: v.parent,
                ghost: v.ghost,
                ghost_since: v.ghost_since,
            })
        })?;
        let snaps = std::mem::take(&mut self.dirty_snaps)
            .into_iter()
            .map(|id| id.0);
        persist(&mut self.snap_tree, cache, alloc, snaps, |&id| {
            self.snaps.get(&SnapId(id)).map(SnapRec::to_raw)
        })?;
        let jobs = std::mem::take(&mut self.dirty_jobs);
        persist(&mut self.job_tree, cache, alloc, jobs, |id| {
            self.jobs.get(id).copied()
        })?;
        let origins = std::mem::take(&mut self.dirty_origins);
        persist(&mut self.origin_tree, cache, alloc, origins, |id| {
            self.origins.get(id).map(OriginRec::to_raw)
        })?;
        let merged = std::mem::take(&mut self.dirty_merged);
        persist(&mut self.merged_tree, cache, alloc, merged, |a| {
            self.merged_ahead.contains(a).then_some(0)
        })?;
        self.cache.write_dirty()?;
        Ok(())
    }

    /// Build the superblock of the open transaction and seal it (module
    /// documentation, part 1); the tables are written. `flush_first`: the job
    /// flushes the store before the superblock (false when the caller did).
    fn seal(&mut self, baton: Baton, flush_first: bool) -> CommitJob {
        let mut sb = self.sb.clone();
        sb.txn_id = self.cache.txn();
        sb.elements_root = self.elements.root();
        sb.versions_root = self.versions.root();
        sb.snapshots_root = self.snap_tree.root();
        sb.jobs_root = self.job_tree.root();
        sb.merged_root = self.merged_tree.root();
        sb.label_index_root = self.label_index.root();
        sb.origins_root = self.origin_tree.root();
        sb.clean_shutdown = self.closing;
        sb.format_version = FORMAT_VERSION;
        self.cache.begin(TxnId(sb.txn_id.0 + 1));
        self.alloc.seal();
        // (a commit settles the one before it first: `settle_holding`)
        let addrs = std::mem::take(&mut self.dirty_addrs);
        self.inflight = Some(InFlight {
            sb: sb.clone(),
            addrs,
        });
        self.changed = false;
        CommitJob {
            baton,
            dev: self.dev.clone(),
            sb: Some(sb),
            flush_first,
        }
    }

    /// Settle with what the baton knows, just taken: no commit I/O runs now, so a
    /// sealed commit that is still not durable had its job dropped unrun (its
    /// superblock never written). The store latches then: a later superblock would
    /// take the slot of the one before it with this one missing.
    fn settle_holding(&mut self, baton: &Baton) {
        self.settle(baton.durable, baton.failed);
        if self.inflight.is_some() {
            self.failed = true;
        }
    }

    /// Part 3 (module documentation): with `durable` durable, the sealed commit, if
    /// it is that one or older, becomes the last committed and its frees are
    /// released; `failed`: a commit's I/O failed, the store latches.
    pub(super) fn settle(&mut self, durable: TxnId, failed: bool) {
        if failed {
            self.failed = true;
        }
        if self
            .inflight
            .as_ref()
            .is_some_and(|f| f.sb.txn_id <= durable)
        {
            if let Some(f) = self.inflight.take() {
                self.sb.txn_id = f.sb.txn_id;
                self.sb.elements_root = f.sb.elements_root;
                self.sb.versions_root = f.sb.versions_root;
                self.sb.snapshots_root = f.sb.snapshots_root;
                self.sb.jobs_root = f.sb.jobs_root;
                self.sb.merged_root = f.sb.merged_root;
                self.sb.label_index_root = f.sb.label_index_root;
                self.sb.origins_root = f.sb.origins_root;
                self.sb.clean_shutdown = f.sb.clean_shutdown;
                self.sb.format_version = f.sb.format_version;
            }
            // before any freed chunk can be reused (`Store::frees`)
            if self.alloc.release_sealed() {
                self.frees.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// The transaction that must be durable before the elements of pool address
    /// `a` are: the open one if it changed them, else the sealed one if that did,
    /// else none.
    pub(super) fn addr_txn(&self, a: u64) -> Option<TxnId> {
        if !self.dirty_addrs.is_empty() && self.dirty_addrs.contains(&a) {
            return Some(self.cache.txn());
        }
        self.inflight
            .as_ref()
            .filter(|f| f.addrs.contains(&a))
            .map(|f| f.sb.txn_id)
    }

    /// The sealed transaction whose superblock may not be durable yet.
    pub(crate) fn inflight_txn(&self) -> Option<TxnId> {
        self.inflight.as_ref().map(|f| f.sb.txn_id)
    }

    pub(super) fn check_writable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::PreviousIo);
        }
        Ok(())
    }

    /// Run `f`; if it fails after it may have changed metadata, latch the store. A
    /// space refusal ([`Store::refusal`]) with no allocator call after it changed
    /// nothing and does not latch: running out of space is an answer, not a failure.
    pub(super) fn latching<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let r = f(self);
        if let Err(e) = &r {
            let refusal =
                matches!(e, Error::NoSpace(_)) && self.refused_at == Some(self.alloc.ops());
            if !refusal
                && !matches!(
                    e,
                    Error::NoSpace(Space::Data | Space::Quota)
                        | Error::Invalid(_)
                        | Error::NoSuchSnapshot(_)
                        | Error::NoSuchOrigin(_)
                        | Error::OriginMissing(_)
                )
                && !matches!(
                    e,
                    Error::Io {
                        device: "origin",
                        ..
                    }
                )
            {
                self.failed = true;
            }
        }
        r
    }

    /// Record a space refusal made before the refused operation changed anything
    /// (see [`Store::latching`]) and return it.
    pub(super) fn refusal(&mut self, e: Error) -> Error {
        if matches!(e, Error::NoSpace(_)) {
            self.refused_at = Some(self.alloc.ops());
        }
        e
    }

    /// The check of an ordinary operation, before it changes anything: `data` chunks
    /// beside room for `elem_changes` element changes and the remedy reserve
    /// ([`Allocator::ensure_for`]); a refusal does not latch.
    pub(super) fn ensure_room(&mut self, data: u64, elem_changes: u64) -> Result<()> {
        self.alloc
            .ensure_for(data, elem_changes)
            .map_err(|e| self.refusal(e))
    }

    /// Most metadata blocks the next commit may allocate: one tree change for every
    /// table key it writes, plus one.
    pub(super) fn commit_blocks(&self) -> u64 {
        let keys = self.dirty_versions.len()
            + self.dirty_snaps.len()
            + self.dirty_jobs.len()
            + self.dirty_merged.len()
            + self.dirty_origins.len()
            + 1;
        keys as u64 * TREE_CHANGE_BLOCKS
    }

    /// Room for a remedy step (a step of the pass that frees a deleted snapshot's
    /// space) at an address holding `elems` elements, and for the commit after it.
    /// The step's element keys share one address, so they lie in at most two leaves
    /// of the element tree (two tree changes' worth); their (label, region) counts in
    /// the label index may lie anywhere (one tree change each). When the headroom is
    /// short, commit first: what the pass freed so far, and the old copies of the
    /// nodes it changed, come back at a commit. When even that is not enough, refuse
    /// (no latch); the pass stays queued and goes on once space is freed or the
    /// store grows.
    pub(super) fn step_room(&mut self, elems: u64) -> Result<()> {
        let need = |s: &Self| (elems + 2) * TREE_CHANGE_BLOCKS + s.commit_blocks();
        if self.alloc.ensure_meta(need(self)).is_ok() {
            return Ok(());
        }
        if self.changed {
            self.commit()?;
        }
        self.alloc
            .ensure_meta(need(self))
            .map_err(|e| self.refusal(e))
    }
}
