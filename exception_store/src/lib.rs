//! The shared exception store of ublk-snap.
//!
//! One origin device (kept in place) and one store device shared by every snapshot.
//! The store maps `(origin chunk address, version label)` to a chunk of the store (or
//! a hole) through the versioned-pointer B-tree of the `btree` crate; the version tree
//! decides which element each version reads. The semantics are those of
//! `shared/design/versioned-pointers.md`; see `docs/architecture.md` for the layers
//! and the crash-safety argument, `docs/format.md` for the bytes.
//!
//! # Guarantees
//! - A snapshot reads, forever, what its source read when it was taken, plus its own
//!   writes; a write to any device changes what that device reads and nothing else.
//! - After a crash every device reads what it read at its last completed flush, plus
//!   possibly some of the writes made after it (sector granularity, like a disk).
//!   Creating, deleting and holding snapshots are durable when they return.
//! - The origin is never overwritten while the only copy of a snapshot's data there
//!   is uncommitted (copy, commit, then write the origin).
//! - Nothing read from disk is trusted: every metadata block is checksummed and
//!   self-identifying, and a bad one is an error, never wrong data.
//!
//! ```
//! use blockdev::MemDevice;
//! use exception_store::{Dev, Store, StoreOptions};
//! use std::sync::Arc;
//! let origin = Arc::new(MemDevice::new(1 << 20));
//! let dev = Arc::new(MemDevice::new(4 << 20));
//! let mut s = Store::format(origin, dev, 64 * 1024, StoreOptions::default()).unwrap();
//! s.write(Dev::Origin(0), 0, b"before").unwrap();
//! let snap = s.create_snapshot("s1", None, 0).unwrap();
//! s.write(Dev::Origin(0), 0, b"after!").unwrap();
//! let mut buf = [0u8; 6];
//! s.read(Dev::Snap(snap), 0, &mut buf).unwrap();
//! assert_eq!(&buf, b"before");
//! ```
#![warn(missing_docs)]

pub mod allocator;
pub mod check;
pub mod dump;
mod error;
pub mod format;
pub mod label_index;
pub mod map;
pub mod origin_gate;
pub mod repair;
pub mod replicate;
pub mod retention;
pub mod rules;
mod shared;
mod store;
pub mod stream;
pub mod superblock;
pub mod tables;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod version_tree;

pub use error::{Error, Result, Space};
pub use shared::{DirectPiece, DirectPlan, DirectSource, DirectStarted, SharedStore, Started};
pub use store::validate_origin_name;
pub use store::{
    addr_chunk, addr_origin, pool_addr, preallocate, CommitJob, CopyOut, CopyOutBegin, Dev,
    GroupInfo, Grown, JobInfo, OriginGrown, OriginId, OriginInfo, OriginRemoved, Preallocation,
    ReadPiece, ReadPlan, ReadSource, RoomStep, SnapInfo, SpacePolicy, Status, Store, StoreOptions,
};
pub use tables::validate_name;
