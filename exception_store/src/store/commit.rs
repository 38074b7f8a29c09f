//! Commits and latching: writing the dirty tables and nodes, the two flushes around
//! the superblock, and the rule that a failure after metadata may have changed latches
//! the store read-only until it is reopened.

use super::{origin_io, store_io, Store};
use crate::{
    allocator::Allocator,
    format::FORMAT_VERSION,
    superblock::write_superblock,
    tables::{SnapRec, VersionRec},
    Error, Result, Space,
};
use blockdev::ids::{Label, SnapId, TxnId};
use btree::{Codec, NodeCache, Tree};

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

    /// A commit that also makes the origin durable before its superblock is written
    /// (the origin's flush beside the commit's first store flush). Any failure
    /// latches the store, so nothing this commit carries ever becomes durable.
    pub(crate) fn commit_with_origin(&mut self) -> Result<TxnId> {
        self.commit_latching(true, true)
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

    /// Flush the store (`dev.flush`), and the origin too when `with_origin`, both at
    /// once (two devices, two threads: a FLUSH waits for the slower, not the sum).
    pub(super) fn flush_devices(&self, with_origin: bool) -> Result<()> {
        if !with_origin {
            return self.dev.flush().map_err(store_io(0));
        }
        let origin = self.origin.clone();
        std::thread::scope(|sc| {
            let o = sc.spawn(move || origin.flush());
            let d = self.dev.flush().map_err(store_io(0));
            let o = match o.join() {
                Ok(r) => r.map_err(origin_io(0)),
                Err(_) => Err(Error::Io {
                    device: "origin",
                    offset: 0,
                    source: std::io::Error::other("origin flush thread panicked"),
                }),
            };
            d.and(o)
        })
    }

    pub(super) fn commit_inner(&mut self, with_origin: bool) -> Result<TxnId> {
        if !self.changed {
            self.flush_devices(with_origin)?;
            return Ok(self.sb.txn_id);
        }
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
        let merged = std::mem::take(&mut self.dirty_merged);
        persist(&mut self.merged_tree, cache, alloc, merged, |a| {
            self.merged_ahead.contains(a).then_some(0)
        })?;
        self.cache.write_dirty()?;
        self.flush_devices(with_origin)?;
        let mut sb = self.sb.clone();
        sb.txn_id = self.cache.txn();
        sb.elements_root = self.elements.root();
        sb.versions_root = self.versions.root();
        sb.snapshots_root = self.snap_tree.root();
        sb.jobs_root = self.job_tree.root();
        sb.merged_root = self.merged_tree.root();
        sb.label_index_root = self.label_index.root();
        sb.clean_shutdown = self.closing;
        sb.format_version = FORMAT_VERSION;
        write_superblock(&*self.dev, &sb)?;
        self.dev.flush().map_err(store_io(0))?;
        self.sb = sb;
        self.alloc.commit();
        self.dirty_addrs.clear();
        self.cache.begin(TxnId(self.sb.txn_id.0 + 1));
        self.changed = false;
        Ok(self.sb.txn_id)
    }

    pub(super) fn check_writable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::PreviousIo);
        }
        Ok(())
    }

    /// Run `f`; if it fails after it may have changed metadata, latch the store.
    pub(super) fn latching<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let r = f(self);
        if let Err(e) = &r {
            if !matches!(
                e,
                Error::NoSpace(Space::Data) | Error::Invalid(_) | Error::NoSuchSnapshot(_)
            ) && !matches!(
                e,
                Error::Io {
                    device: "origin",
                    ..
                }
            ) {
                self.failed = true;
            }
        }
        r
    }
}
