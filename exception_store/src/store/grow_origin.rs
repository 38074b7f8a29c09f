//! Every device's own size, and growing the origin ([`Store::grow_origin`]) after
//! its file or block device was extended (`truncate`, `lvextend`).
//!
//! # Sizes
//! The superblock's `origin_len` is the origin's size now; each snapshot record
//! keeps the size the snapshot was taken at (a snapshot of a snapshot: its parent's).
//! The origin only grows, so a snapshot is never larger than the origin. Every
//! operation on a device (read, write, discard, `map`, `diff`, send) is bounded by
//! that device's size ([`Store::dev_size`]).
//!
//! # Copy-outs after a growth
//! An origin chunk at or past every snapshot's size (`snap_cover`) is read by no
//! snapshot: a first write there copies nothing. A chunk that starts below a
//! snapshot's size is copied out whole, even for a write only past that size (the
//! old last chunk of a snapshot taken at a size that is not a whole number of chunks):
//! the chunk is the copy-on-write unit, and the snapshot reads only its first bytes.
//!
//! # Merges
//! A snapshot whose size differs from the origin's is not merged (nor used to roll
//! the origin back): the origin's bytes past the snapshot's size would have no
//! defined contents. [`Store::merge_snapshot`] refuses it with [`Error::Invalid`].
//!
//! # Crash safety
//! The growth changes one superblock field, `origin_len`, in one commit, and nothing
//! else: no element can lie past the old size before that commit (every origin I/O
//! is checked against the size in memory, which changes only with the commit, under
//! the store's lock). The commit flushes the origin beside the store before its
//! superblock is written, so a file origin's new size is durable first. A power cut
//! at any point leaves the old superblock (old size; the device's extra bytes unused,
//! and the store still opens, since an origin larger than the store's size is
//! accepted) or the new one.
use super::{Dev, OriginId, Store};
use crate::{Error, Result};
use blockdev::ids::{SnapId, TxnId};

/// Origin sizes are whole 512-byte sectors.
const SECTOR: u64 = 512;

/// What [`Store::grow_origin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginGrown {
    /// The origin's size before, in bytes.
    pub old_len: u64,
    /// Its size now.
    pub new_len: u64,
    /// The commit that recorded it.
    pub txn_id: TxnId,
}

impl Store {
    /// The size of `dev` in bytes: the origin's now, or the one a snapshot was taken at.
    pub fn dev_size(&self, dev: Dev) -> Result<u64> {
        match dev {
            Dev::Origin(k) => self.origin_size(k),
            Dev::Snap(id) => self
                .snaps
                .get(&id)
                .map(|r| r.size)
                .ok_or_else(|| Error::NoSuchSnapshot(crate::error::snap_name(id))),
        }
    }

    /// Origin `k`'s device's size now (it may have grown past the store's origin
    /// size: [`Store::grow_origin`] takes it).
    pub fn origin_device_len(&self, k: OriginId) -> Result<u64> {
        self.origin_device(k)?.grow().map_err(|source| Error::Io {
            device: "origin",
            offset: 0,
            source,
        })
    }

    /// Make the origin `new_len` bytes (see the module documentation): one commit,
    /// the origin flushed before its superblock. Refused, changing nothing, when
    /// `new_len` is not a whole number of 512-byte sectors, is not larger than the
    /// origin's size now, is larger than the origin device, or a merge runs.
    pub fn grow_origin(&mut self, k: OriginId, new_len: u64) -> Result<OriginGrown> {
        self.check_writable()?;
        let old_len = self.origin_size(k)?;
        if !new_len.is_multiple_of(SECTOR) {
            return Err(Error::Invalid(format!(
                "an origin size must be a whole number of 512-byte sectors: {new_len} is \
                 not; nothing changed"
            )));
        }
        if new_len < old_len {
            return Err(Error::Invalid(format!(
                "the origin cannot shrink: it is {old_len} bytes, {new_len} asked for; \
                 nothing changed"
            )));
        }
        if new_len == old_len {
            return Err(Error::Invalid(format!(
                "the origin is already {old_len} bytes: extend its file or device first \
                 (truncate -s, lvextend), or give a larger size; nothing changed"
            )));
        }
        let device = self.origin_device_len(k)?;
        if new_len > device {
            return Err(Error::Invalid(format!(
                "the origin device is {device} bytes, smaller than the {new_len} asked \
                 for: extend it first (truncate -s, lvextend); nothing changed"
            )));
        }
        if self.is_merging() {
            return Err(Error::Busy(
                "a merge is running: grow the origin once it has finished".into(),
            ));
        }
        self.new_copy_epoch(k);
        self.set_origin_size(k, new_len);
        self.changed = true;
        let txn_id = match self.commit_with_origins(&[k]) {
            Ok(t) => t,
            Err(e) => {
                // latched by the commit: the size in memory no longer matters
                self.set_origin_size(k, old_len);
                return Err(e);
            }
        };
        tracing::info!(old_len, new_len, txn_id = txn_id.0, "origin grown");
        Ok(OriginGrown {
            old_len,
            new_len,
            txn_id,
        })
    }

    /// Origin `k`'s size in its record (and the superblock's `origin_len` for origin 0).
    fn set_origin_size(&mut self, k: OriginId, len: u64) {
        if k == 0 {
            self.sb.origin_len = len;
        }
        if let Some(o) = self.origins.get_mut(&k) {
            o.size = len;
        }
        self.dirty_origins.insert(k);
    }

    /// Refuse to merge snapshot `id` into an origin of another size (module docs).
    pub(crate) fn check_merge_size(&self, id: SnapId) -> Result<()> {
        let size = self.dev_size(Dev::Snap(id))?;
        let origin_size = self.origin_size(self.origin_of(Dev::Snap(id))?)?;
        if size != origin_size {
            let name = self.snaps.get(&id).map_or("?", |r| r.name.as_str());
            return Err(Error::Invalid(format!(
                "snapshot {name:?} was taken at {size} bytes and the origin is now {} \
                 bytes: merging it (or rolling back to it) would leave the origin's \
                 bytes past {size} undefined; refused, nothing changed",
                origin_size
            )));
        }
        Ok(())
    }

    /// Recompute `snap_cover` from the snapshot records.
    pub(crate) fn refresh_snap_cover(&mut self) {
        self.snap_cover.clear();
        for r in self.snaps.values() {
            let c = self.snap_cover.entry(r.origin).or_insert(0);
            *c = (*c).max(r.size);
        }
    }

    /// `self` with `snap_cover` computed (at open).
    pub(crate) fn with_snap_cover(mut self) -> Self {
        self.refresh_snap_cover();
        self
    }
}
