//! The store: opening, formatting, committing, and the state every operation shares.
//!
//! Formatting and opening live in `open`, commits and latching in `commit` (the
//! order of superblock writes in `commit_io`), the
//! per-address element cache and element write-back in `elems`.
//! Operations live in sibling modules: `data` (read, write, discard of the origin
//! and of snapshots), `snapshots` (create, delete, hold, list), `background` (delete
//! and cleanup passes, reshaping ghosts), `grow` (taking a larger store device),
//! `grow_origin` (a larger origin, and every device's own size), `origins` (the
//! origins of a pool: add, attach, remove), `groups` (a snapshot of several origins
//! in one commit), `read_plan` (where a
//! read's bytes are, for reads done elsewhere), `status`.
//!
//! # Concurrency
//! `Store` is single-threaded (`&mut self`); the daemon wraps it in a lock and groups
//! commits. Origin writes are split in two ([`Store::origin_prepare`] and the data
//! write) so that the wrapper can commit many copy-outs at once before any of those
//! origin writes go to the device.
//!
//! # Durability
//! A commit writes the dirty nodes, flushes the store, writes the superblock into the
//! slot of its transaction and flushes again (`commit`; `SharedStore`'s group commit
//! does the flushes and the superblock without the store lock, `commit_io`). Changes
//! between commits live in memory and in blocks nothing committed references.
//! Creating, deleting and holding a snapshot commit before returning.
mod background;
mod commit;
mod commit_io;
mod copy_out;
mod data;
mod elems;
#[cfg(test)]
mod full_tests;
mod groups;
mod grow;
mod grow_origin;
mod map;
mod merge;
mod open;
mod origins;
#[cfg(test)]
mod pool_tests;
mod quota;
#[cfg(test)]
mod quota_tests;
mod read_plan;
mod snapshots;
mod status;

pub use commit_io::CommitJob;
pub use copy_out::{CopyOut, CopyOutBegin};
pub use data::RoomStep;
pub use groups::GroupInfo;
pub use grow::{preallocate, Grown, Preallocation};
pub use grow_origin::OriginGrown;
pub use origins::{validate_origin_name, OriginRemoved};
pub use read_plan::{ReadPiece, ReadPlan, ReadSource};
pub use status::{JobInfo, OriginInfo, SnapInfo, Status};

use crate::{
    allocator::Allocator,
    format::*,
    label_index::LabelIndex,
    rules::Elems,
    superblock::Superblock,
    tables::{JobRec, OriginRec, OriginRecRaw, SnapRec, SnapRecRaw, VersionRec},
    version_tree::VersionTree,
    Error, Result,
};
use blockdev::{
    ids::{ChunkNr, Label, SnapId, TxnId},
    BlockDevice,
};
use btree::{elements::Elements, NodeCache, Tree};
use commit::InFlight;
use commit_io::CommitIo;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

/// An origin's id in the store's origin table (0 for the first, a one-origin store's).
pub type OriginId = u32;

/// The pool address of chunk `c` of origin `k` (`format::ORIGIN_SHIFT`).
pub fn pool_addr(k: OriginId, c: u64) -> u64 {
    ((k as u64) << ORIGIN_SHIFT) | c
}

/// The origin of pool address `a`.
pub fn addr_origin(a: u64) -> OriginId {
    (a >> ORIGIN_SHIFT) as OriginId
}

/// The chunk number of pool address `a` inside its origin.
pub fn addr_chunk(a: u64) -> u64 {
    a & ORIGIN_CHUNK_MASK
}

/// A device the store serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dev {
    /// An origin, by id (origin 0 is a one-origin store's).
    Origin(OriginId),
    /// A snapshot.
    Snap(SnapId),
}

/// What to do when an origin write needs a chunk and the store is full (or would go
/// under `min_free_chunks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpacePolicy {
    /// Fail the origin write with ENOSPC; nothing is written, nothing is lost.
    #[default]
    Fail,
    /// Delete the oldest snapshots that are not held, one at a time, reclaiming their
    /// space, until the write fits; fail with ENOSPC when only held ones are left.
    DeleteOldest,
}

/// Tunables of an open store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Memory for cached metadata nodes, in bytes.
    pub cache_bytes: usize,
    /// What a full store does to origin writes.
    pub space_policy: SpacePolicy,
    /// Chunks kept free: writes that would use them act as if the store were full.
    pub min_free_chunks: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            space_policy: SpacePolicy::Fail,
            min_free_chunks: 0,
        }
    }
}

/// See the module documentation.
pub struct Store {
    /// The origins' devices by id: origin 0's is given at open, the others are
    /// attached ([`Store::attach_origin`]); I/O to an origin without one is refused.
    pub(crate) origin_devs: BTreeMap<OriginId, Arc<dyn BlockDevice>>,
    pub(crate) dev: Arc<dyn BlockDevice>,
    pub(crate) sb: Superblock,
    pub(crate) cache: NodeCache,
    pub(crate) alloc: Allocator,
    pub(crate) elements: Elements,
    pub(crate) versions: Tree<u32, VersionRec>,
    pub(crate) snap_tree: Tree<u32, SnapRecRaw>,
    pub(crate) job_tree: Tree<u32, JobRec>,
    pub(crate) merged_tree: Tree<u64, u32>,
    /// Where each label holds elements (kept with every element change).
    pub(crate) label_index: LabelIndex,
    /// The origin table (format version 4): one store serves origins by id; a
    /// one-origin store has origin 0, rooted at label 0, whose size is the
    /// superblock's `origin_len`.
    pub(crate) origin_tree: Tree<u32, OriginRecRaw>,
    pub(crate) origins: BTreeMap<u32, OriginRec>,
    pub(crate) dirty_origins: BTreeSet<u32>,
    /// Addresses the running merge did ahead of its cursor (persisted in `merged_tree`).
    pub(crate) merged_ahead: BTreeSet<u64>,
    pub(crate) dirty_merged: BTreeSet<u64>,
    pub(crate) vt: VersionTree,
    pub(crate) snaps: BTreeMap<SnapId, SnapRec>,
    /// Snapshot names, unique per origin: (origin, name) -> id.
    pub(crate) names: HashMap<(OriginId, String), SnapId>,
    pub(crate) jobs: BTreeMap<u32, JobRec>,
    pub(crate) dirty_versions: BTreeSet<Label>,
    pub(crate) dirty_snaps: BTreeSet<SnapId>,
    pub(crate) dirty_jobs: BTreeSet<u32>,
    /// Addresses whose elements changed in the open transaction.
    pub(crate) dirty_addrs: HashSet<u64>,
    /// The commit sealed whose superblock may not be durable yet (`commit_io`).
    pub(crate) inflight: Option<InFlight>,
    /// The commit I/O baton (`commit_io`).
    pub(crate) io: Arc<CommitIo>,
    pub(crate) changed: bool,
    pub(crate) failed: bool,
    pub(crate) next_job_turn: usize,
    pub(crate) chunk_size: u64,
    /// Decoded element sets of recently used addresses (exact: invalidated whenever
    /// an address's elements change).
    pub(crate) elem_cache: lru::LruCache<u64, Arc<Elems>>,
    pub(crate) elem_cache_len: usize,
    pub(crate) opts: StoreOptions,
    /// Snapshots deleted by the space policy since open.
    pub(crate) auto_deleted: u64,
    /// The superblock found at open said the store was shut down cleanly.
    pub(crate) opened_clean: bool,
    /// The next commit records a clean shutdown ([`Store::commit_clean_shutdown`]).
    pub(crate) closing: bool,
    /// Snapshots a device serves now ([`Store::set_in_use`]): the space policy does
    /// not delete them. Not persisted.
    pub(crate) in_use: HashSet<SnapId>,
    /// The space policy has logged that the store is full; cleared when a copy-out
    /// finds room again (one warning per episode, not one per refused write).
    pub(crate) full_logged: bool,
    /// The buffer of copy-outs that go through memory (grown to the largest run).
    pub(crate) copy_buf: Vec<u8>,
    /// Copy-outs in flight without the store lock: address -> the chunk its old data
    /// is being copied to (`copy_out`). Not persisted.
    pub(crate) copying: BTreeMap<u64, ChunkNr>,
    /// Per origin, the store chunks its addresses' elements name: the space its
    /// snapshots hold. Counted at open from the elements, kept by `store_elems`.
    /// Not persisted.
    pub(crate) origin_used: BTreeMap<OriginId, u64>,
    /// Per origin, the largest size of any of its snapshots: origin chunks at or past
    /// it need no copy-out (`grow_origin`). Kept by every change of `snaps`.
    pub(crate) snap_cover: BTreeMap<OriginId, u64>,
    /// The allocator's [`ops`](Allocator::ops) count at the last space refusal
    /// ([`Store::refusal`]): an error returned with no allocator call since then is
    /// that refusal, made before anything changed, and does not latch the store.
    pub(crate) refused_at: Option<u64>,
    /// Counts the changes that may make a read plan taken earlier read the wrong
    /// bytes ([`Store::moves`]). Not persisted.
    pub(crate) moves: Arc<AtomicU64>,
    /// The counter of chunk frees that took effect ([`Store::frees`]). Not persisted.
    pub(crate) frees: Arc<AtomicU64>,
    /// The copy epoch of each origin ([`Store::copy_epoch`]). Not persisted.
    pub(crate) copy_epochs: BTreeMap<OriginId, Arc<AtomicU64>>,
    /// The origins the next commit with the origin flushes (`None`: every one;
    /// `commit_with_origins`). Not persisted.
    pub(crate) flush_only: Option<Vec<OriginId>>,
    /// Whether a merge runs ([`Store::merging_flag`]). Not persisted.
    pub(crate) merging_flag: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Store(txn {}, {} snapshots, chunk {})",
            self.sb.txn_id.0,
            self.snaps.len(),
            self.chunk_size
        )
    }
}

fn store_io(offset: u64) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        device: "store",
        offset,
        source,
    }
}

pub(crate) fn origin_io(offset: u64) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        device: "origin",
        offset,
        source,
    }
}

impl Store {
    /// The counter of moves: it is incremented before any change of where some
    /// version's data lives (an element set changes, a snapshot is deleted or
    /// merged) takes effect, so before the origin bytes that a snapshot read until
    /// then are overwritten. A read planned ([`Store::read_plan`]) when it was `n`
    /// and carried out without the store lock read what the plan meant if it is
    /// still `n` once the reads have landed (`SharedStore::read_plan`).
    pub fn moves(&self) -> Arc<AtomicU64> {
        self.moves.clone()
    }

    /// The counter of frees: incremented by every commit that makes freed data
    /// chunks allocatable again, before any of them can be reused. A read planned
    /// when it was `n`, whose store chunks were then freed and reused, sees it past
    /// `n` once its reads have landed (`SharedStore::plan_holds`).
    pub fn frees(&self) -> Arc<AtomicU64> {
        self.frees.clone()
    }

    /// Origin `k`'s copy epoch: incremented, before it takes effect, by every change
    /// that can make a write to origin `k` need a copy-out where none was (a snapshot
    /// of it created, a merge into it started, it grown; nothing another origin
    /// does). What `SharedStore` learnt about its chunks needing no copy-out holds
    /// for one epoch (`shared::settled`).
    pub fn copy_epoch(&mut self, k: OriginId) -> Arc<AtomicU64> {
        self.copy_epochs.entry(k).or_default().clone()
    }

    /// Whether a merge runs, readable without the store lock ([`Store::is_merging`]
    /// is the truth; this follows it at the merge's start and end).
    pub fn merging_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.merging_flag.clone()
    }

    /// A new copy epoch of origin `k` ([`Store::copy_epoch`]).
    pub(crate) fn new_copy_epoch(&mut self, k: OriginId) {
        self.copy_epoch(k).fetch_add(1, Ordering::SeqCst);
    }

    /// Count a move ([`Store::moves`]).
    pub(crate) fn moved(&self) {
        self.moves.fetch_add(1, Ordering::SeqCst);
    }

    /// Origin `k`'s device; an error when it has none attached.
    pub fn origin_device(&self, k: OriginId) -> Result<Arc<dyn BlockDevice>> {
        match self.origin_devs.get(&k) {
            Some(d) => Ok(d.clone()),
            None => Err(match self.origins.get(&k) {
                Some(o) => Error::OriginMissing(format!(
                    "origin {:?} has no device attached (missing at start?)",
                    o.name
                )),
                None => Error::NoSuchOrigin(format!("#{k}")),
            }),
        }
    }

    /// Check that a range lies inside origin `k`.
    pub fn check_origin_range(&self, k: OriginId, offset: u64, len: u64) -> Result<()> {
        check_in(self.origin_size(k)?, offset, len)
    }

    /// Origin `k`'s size in bytes now.
    pub fn origin_size(&self, k: OriginId) -> Result<u64> {
        self.origins
            .get(&k)
            .map(|o| o.size)
            .ok_or_else(|| Error::NoSuchOrigin(format!("#{k}")))
    }

    /// The origin `dev` belongs to (itself, or the origin of the snapshot).
    pub fn origin_of(&self, dev: Dev) -> Result<OriginId> {
        match dev {
            Dev::Origin(k) => self.origin_size(k).map(|_| k),
            Dev::Snap(id) => self
                .snaps
                .get(&id)
                .map(|r| r.origin)
                .ok_or_else(|| Error::NoSuchSnapshot(crate::error::snap_name(id))),
        }
    }

    /// The root label of origin `k`'s version tree (label 0 for origin 0).
    pub(crate) fn root_of_origin(&self, k: OriginId) -> Label {
        self.origins.get(&k).map_or(Label(0), |o| o.root)
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The store's identity (random at format).
    pub fn uuid(&self) -> [u8; 16] {
        self.sb.uuid
    }

    /// Origin 0's size in bytes now (it grows with [`Store::grow_origin`]; each
    /// snapshot has its own, [`Store::dev_size`]).
    pub fn size(&self) -> u64 {
        self.sb.origin_len
    }

    /// The last committed transaction.
    pub fn txn_id(&self) -> TxnId {
        self.sb.txn_id
    }

    /// Whether a metadata write failed (the store refuses changes until reopened).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    fn tick(&mut self) -> u64 {
        self.sb.clock += 1;
        self.changed = true;
        self.sb.clock
    }

    fn new_label(&mut self) -> Label {
        let l = Label(self.sb.next_label);
        self.sb.next_label += 1;
        self.changed = true;
        l
    }

    /// Bytes of chunk `a` of a device of `dev_len` bytes (the last chunk may be short).
    fn chunk_len_in(&self, dev_len: u64, a: u64) -> usize {
        (dev_len - a * self.chunk_size).min(self.chunk_size) as usize
    }

    /// Bytes of pool address `a` on its origin (the last chunk may be short).
    fn chunk_len(&self, a: u64) -> usize {
        let size = self.origins.get(&addr_origin(a)).map_or(0, |o| o.size);
        self.chunk_len_in(size, addr_chunk(a))
    }

    /// Where pool address `a` starts on its origin's device.
    fn origin_pos(&self, a: u64) -> u64 {
        addr_chunk(a) * self.chunk_size
    }

    /// Check that a range lies inside `dev` (its own size, [`Store::dev_size`]).
    fn check_dev_range(&self, dev: Dev, offset: u64, len: u64) -> Result<()> {
        check_in(self.dev_size(dev)?, offset, len)
    }

    fn label_of(&self, id: SnapId) -> Result<Label> {
        self.snaps
            .get(&id)
            .map(|r| r.label)
            .ok_or_else(|| Error::NoSuchSnapshot(crate::error::snap_name(id)))
    }
}

fn check_in(size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::Invalid(format!(
            "I/O of {len} bytes at {offset} is past the end of a {size}-byte device"
        ))),
    }
}

fn allocator_reserve_chunks(chunk_size: u32) -> u64 {
    crate::allocator::META_RESERVE_BLOCKS.div_ceil(chunk_size as u64 / BLOCK_SIZE)
}
