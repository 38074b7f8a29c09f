//! Growing the store: after its file or block device was extended (`truncate`,
//! `lvextend`), [`Store::grow_store`] makes the new chunks free, and the superblock
//! records the new length, in one commit.
//!
//! # Crash safety
//! The growth changes one field, the superblock's `store_len`, and the allocator in
//! memory (which is rebuilt from the trees at every open anyway). Until the
//! superblock of the growth's commit is durable, the committed trees reference
//! nothing past the old length: chunks handed out from the new part before then
//! (copy-outs racing the growth) are referenced only by that commit or later ones,
//! each of which carries the new `store_len`. The commit flushes the store before it
//! writes the superblock, and that flush (fdatasync) also makes a file's new size
//! durable. A power cut at any point therefore leaves either the old superblock (old
//! length, nothing referenced past it, the extended bytes unused) or the new one.
//!
//! # Refusals
//! A device that did not grow by at least one chunk, or that is now smaller than the
//! store's length, is refused with [`Error::Invalid`] before anything changes.
//!
//! # Preallocation
//! A store file is sparse unless told otherwise: a copy-out into a chunk whose
//! blocks the filesystem cannot find fails with ENOSPC and latches the store.
//! [`preallocate`] gives the range its blocks (`fallocate`) at `format` and at
//! growth; where the filesystem cannot, it reports why and the store goes on sparse.
use super::Store;
use crate::{Error, Result};
use blockdev::{ids::TxnId, BlockDevice};
use std::io;

/// What happened to the storage behind a range of the store (see [`preallocate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preallocation {
    /// Every byte has blocks (or the device is a block device: nothing to do).
    Done,
    /// Not asked for (`--sparse`).
    Sparse,
    /// The filesystem cannot preallocate: the range stays sparse. The message says why.
    Unsupported(String),
}

impl Preallocation {
    /// "preallocated", "sparse" or "sparse (why)".
    pub fn describe(&self) -> String {
        match self {
            Preallocation::Done => "preallocated".into(),
            Preallocation::Sparse => "sparse".into(),
            Preallocation::Unsupported(why) => format!("sparse ({why})"),
        }
    }
}

/// Give `[offset, offset + len)` of the store device its blocks, unless `sparse`.
/// A filesystem without `fallocate` is not an error (the result says so); any other
/// failure, ENOSPC above all (the filesystem cannot hold the store), is.
pub fn preallocate(
    dev: &dyn BlockDevice,
    offset: u64,
    len: u64,
    sparse: bool,
) -> Result<Preallocation> {
    if sparse {
        return Ok(Preallocation::Sparse);
    }
    match dev.allocate(offset, len) {
        Ok(()) => Ok(Preallocation::Done),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            Ok(Preallocation::Unsupported(e.to_string()))
        }
        Err(source) => Err(Error::Io {
            device: "store",
            offset,
            source: io::Error::new(
                source.kind(),
                format!("preallocating {len} bytes of the store: {source}"),
            ),
        }),
    }
}

/// What [`Store::grow_store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grown {
    /// The store's length before, in bytes.
    pub old_len: u64,
    /// Its length now (the device's, rounded down to whole chunks).
    pub new_len: u64,
    /// Chunks added (all free).
    pub added_chunks: u64,
    /// The new part's storage.
    pub preallocation: Preallocation,
    /// The commit that recorded the new length.
    pub txn_id: TxnId,
}

impl Store {
    /// The store's length in bytes (whole chunks; grows with [`Store::grow_store`]).
    pub fn store_len(&self) -> u64 {
        self.sb.store_len
    }

    /// The store device's size now, when it is larger than the store (extended but
    /// not grown yet: `grow-store` would take it).
    pub fn device_room(&self) -> Option<u64> {
        let now = self.dev.grow().ok()?;
        (now / self.chunk_size * self.chunk_size > self.sb.store_len).then_some(now)
    }

    /// Take the space the store device gained (see the module documentation):
    /// preallocate it unless `sparse`, make its chunks free, and commit the new length
    /// (with everything else pending). Refused, changing nothing, when the device
    /// did not grow by a whole chunk or shrank.
    pub fn grow_store(&mut self, sparse: bool) -> Result<Grown> {
        let (old_len, new_len) = self.grow_plan()?;
        let preallocation = preallocate(&*self.dev, old_len, new_len - old_len, sparse)?;
        self.grow_to(old_len, new_len, preallocation)
    }

    /// The growth [`Store::grow_store`] would make, `(old_len, new_len)`, or why
    /// none: checks only, nothing changes.
    pub fn grow_plan(&self) -> Result<(u64, u64)> {
        self.check_writable()?;
        let old_len = self.sb.store_len;
        let now = self.dev.grow().map_err(|source| Error::Io {
            device: "store",
            offset: 0,
            source,
        })?;
        if now < old_len {
            return Err(Error::Invalid(format!(
                "the store device is now {now} bytes, smaller than the {old_len} bytes the \
                 store uses: a store cannot shrink; nothing changed (give the device its \
                 size back)"
            )));
        }
        let new_len = now / self.chunk_size * self.chunk_size;
        if new_len == old_len {
            return Err(Error::Invalid(format!(
                "the store device did not grow: it is {now} bytes and the store uses \
                 {old_len} (chunks of {} bytes); extend it first (truncate -s, lvextend); \
                 nothing changed",
                self.chunk_size
            )));
        }
        Ok((old_len, new_len))
    }

    /// Take the store to `new_len` bytes, planned by [`Store::grow_plan`] at
    /// `old_len` and preallocated as `preallocation` says: the new chunks become
    /// free and the new length commits. Refused, changing nothing, when the store
    /// is no longer `old_len` bytes (another growth came first) or the device is
    /// smaller than `new_len`.
    pub fn grow_to(
        &mut self,
        old_len: u64,
        new_len: u64,
        preallocation: Preallocation,
    ) -> Result<Grown> {
        self.check_writable()?;
        let (now_old, now_new) = self.grow_plan()?;
        if now_old != old_len || now_new < new_len {
            return Err(Error::Invalid(format!(
                "the store changed size while it grew (it is {now_old} bytes, the device \
                 holds {now_new}): nothing changed; grow it again"
            )));
        }
        self.alloc.grow(new_len / self.chunk_size);
        self.sb.store_len = new_len;
        self.changed = true;
        let txn_id = self.commit()?;
        tracing::info!(
            old_len,
            new_len,
            txn_id = txn_id.0,
            storage = %preallocation.describe(),
            "store grown"
        );
        Ok(Grown {
            old_len,
            new_len,
            added_chunks: (new_len - old_len) / self.chunk_size,
            preallocation,
            txn_id,
        })
    }
}
