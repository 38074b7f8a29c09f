//! The store: opening, formatting, committing, and the state every operation shares.
//!
//! Operations live in sibling modules: `data` (read, write, discard of the origin
//! and of snapshots), `snapshots` (create, delete, hold, list), `background` (delete
//! and cleanup passes, reshaping ghosts), `grow` (taking a larger store device),
//! `grow_origin` (a larger origin, and every device's own size), `read_plan` (where a
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
//! slot of its transaction and flushes again. Changes between commits live in memory
//! and in blocks nothing committed references. Creating, deleting and holding a
//! snapshot commit before returning.
mod background;
mod copy_out;
mod data;
mod grow;
mod grow_origin;
mod map;
mod merge;
mod read_plan;
mod snapshots;
mod status;

pub use copy_out::{CopyOut, CopyOutBegin};
pub use grow::{preallocate, Grown, Preallocation};
pub use grow_origin::OriginGrown;
pub use read_plan::{ReadPiece, ReadPlan, ReadSource};
pub use status::{JobInfo, SnapInfo, Status};

use crate::{
    allocator::Allocator,
    format::*,
    label_index::{self, LabelIndex},
    rules::Elems,
    superblock::{read_superblock, valid_chunk_size, write_superblock, Superblock},
    tables::{default_guid, JobRec, SnapRec, SnapRecRaw, SnapRecRawV2, VersionRec},
    version_tree::VersionTree,
    Error, Result, Space,
};
use blockdev::{
    ids::{Addr, BlockNr, ChunkNr, Label, SnapId, TxnId},
    BlockDevice,
};
use btree::{elements::Elements, elements::Ptr, Codec, NodeCache, Tree};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

/// A device the store serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dev {
    /// The origin.
    Origin,
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
    pub(crate) origin: Arc<dyn BlockDevice>,
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
    /// Addresses the running merge did ahead of its cursor (persisted in `merged_tree`).
    pub(crate) merged_ahead: BTreeSet<u64>,
    pub(crate) dirty_merged: BTreeSet<u64>,
    pub(crate) vt: VersionTree,
    pub(crate) snaps: BTreeMap<SnapId, SnapRec>,
    pub(crate) names: HashMap<String, SnapId>,
    pub(crate) jobs: BTreeMap<u32, JobRec>,
    pub(crate) dirty_versions: BTreeSet<Label>,
    pub(crate) dirty_snaps: BTreeSet<SnapId>,
    pub(crate) dirty_jobs: BTreeSet<u32>,
    pub(crate) dirty_addrs: HashSet<u64>,
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
    /// The largest size of any snapshot: origin chunks at or past it need no
    /// copy-out (`grow_origin`). Kept by every change of `snaps`.
    pub(crate) snap_cover: u64,
    /// Counts the changes that may make a read plan taken earlier read the wrong
    /// bytes ([`Store::moves`]). Not persisted.
    pub(crate) moves: Arc<AtomicU64>,
}

/// Most elements held decoded in the per-address cache.
const ELEM_CACHE_ELEMENTS: usize = 1 << 18;

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

/// Bring `tree` up to date at the `dirty` keys: each gets the value `value` finds for
/// it, or is removed when there is none.
fn persist<K: Codec + Ord, V: Codec>(
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

/// Load the snapshot table. A table of format version 1 or 2 (records without guid
/// and size) is rewritten in this transaction as a version 3 table, each snapshot
/// getting its [`default_guid`] and the origin size; its old blocks are freed when
/// that commits, and until then the committed store is untouched.
fn load_snapshots(
    cache: &mut NodeCache,
    alloc: &mut Allocator,
    sb: &Superblock,
) -> Result<(Tree<u32, SnapRecRaw>, BTreeMap<SnapId, SnapRec>)> {
    let mut snaps = BTreeMap::new();
    let mut bad = None;
    let bad_ref = |reason| {
        Error::Corrupt(blockdev::Corrupt {
            kind: blockdev::BlockKind::Reference,
            block: BlockNr(0),
            reason,
        })
    };
    if sb.format_version >= 3 {
        let tree: Tree<u32, SnapRecRaw> = Tree::open(sb.snapshots_root, SNAPSHOTS_TREE_TAG);
        tree.walk(
            cache,
            &mut |b| alloc.mark_block(b).map_err(to_btree),
            &mut |id, raw| {
                match SnapRec::from_raw(raw) {
                    Ok(r) => {
                        snaps.insert(SnapId(*id), r);
                    }
                    Err(e) => bad = Some(e),
                }
                Ok(())
            },
        )?;
        return match bad {
            Some(r) => Err(bad_ref(r)),
            None => Ok((tree, snaps)),
        };
    }
    let old: Tree<u32, SnapRecRawV2> = Tree::open(sb.snapshots_root, SNAPSHOTS_TREE_TAG);
    let mut old_blocks = Vec::new();
    old.walk(
        cache,
        &mut |b| {
            old_blocks.push(b);
            alloc.mark_block(b).map_err(to_btree)
        },
        &mut |id, raw| {
            match raw.upgrade(default_guid(&sb.uuid, SnapId(*id)), sb.origin_len) {
                Ok(r) => {
                    snaps.insert(SnapId(*id), r);
                }
                Err(e) => bad = Some(e),
            }
            Ok(())
        },
    )?;
    if let Some(r) = bad {
        return Err(bad_ref(r));
    }
    let mut tree = Tree::create(cache, alloc, SNAPSHOTS_TREE_TAG)?;
    for (id, r) in &snaps {
        tree.insert(cache, alloc, id.0, r.to_raw())?;
    }
    for b in old_blocks {
        btree::MetaAlloc::free_block(alloc, b);
    }
    Ok((tree, snaps))
}

fn store_io(offset: u64) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        device: "store",
        offset,
        source,
    }
}

fn origin_io(offset: u64) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        device: "origin",
        offset,
        source,
    }
}

impl Store {
    /// Format `dev` as an empty store for `origin` with chunks of `chunk_size` bytes.
    /// Any earlier store on `dev` is forgotten.
    pub fn format(
        origin: Arc<dyn BlockDevice>,
        dev: Arc<dyn BlockDevice>,
        chunk_size: u32,
        opts: StoreOptions,
    ) -> Result<Store> {
        if !valid_chunk_size(chunk_size) {
            return Err(Error::Invalid(format!(
                "chunk size {chunk_size} is not a power of two from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}"
            )));
        }
        if origin.is_empty() {
            return Err(Error::Invalid("the origin is empty".into()));
        }
        let store_len = dev.len() / chunk_size as u64 * chunk_size as u64;
        let mut alloc = Allocator::new(store_len, chunk_size);
        // room for the empty trees plus the reserve, plus at least a few data chunks
        if alloc.nr_free() < 8 + allocator_reserve_chunks(chunk_size) {
            return Err(Error::Invalid(format!(
                "a store device of {} bytes is too small for chunks of {chunk_size} bytes",
                dev.len()
            )));
        }
        // Forget any older store: zero both superblock slots first.
        let zero = vec![0u8; BLOCK_SIZE as usize];
        for slot in 0..NR_SUPERBLOCK_SLOTS {
            dev.write_at(&zero, slot * BLOCK_SIZE)
                .map_err(store_io(slot * BLOCK_SIZE))?;
        }
        dev.flush().map_err(store_io(0))?;
        let mut cache = NodeCache::new(dev.clone(), opts.cache_bytes, TxnId(1));
        let opts = opts.clone();
        let elements = Elements::create(&mut cache, &mut alloc)?;
        let versions = Tree::create(&mut cache, &mut alloc, VERSIONS_TREE_TAG)?;
        let snap_tree = Tree::create(&mut cache, &mut alloc, SNAPSHOTS_TREE_TAG)?;
        let job_tree = Tree::create(&mut cache, &mut alloc, JOBS_TREE_TAG)?;
        let merged_tree = Tree::create(&mut cache, &mut alloc, MERGED_TREE_TAG)?;
        let label_index = LabelIndex::create(&mut cache, &mut alloc)?;
        let sb = Superblock {
            txn_id: TxnId(0),
            uuid: new_uuid(),
            chunk_size,
            store_len,
            origin_len: origin.len(),
            clock: 1,
            next_label: 1,
            next_snap_id: 1,
            next_job_id: 1,
            elements_root: elements.root(),
            versions_root: versions.root(),
            snapshots_root: snap_tree.root(),
            jobs_root: job_tree.root(),
            merged_root: merged_tree.root(),
            label_index_root: label_index.root(),
            needs_check: false,
            clean_shutdown: false,
            ro_compat: 0,
            format_version: FORMAT_VERSION,
        };
        let mut s = Store {
            origin,
            dev,
            sb,
            cache,
            alloc,
            elements,
            versions,
            snap_tree,
            job_tree,
            merged_tree,
            label_index,
            merged_ahead: BTreeSet::new(),
            dirty_merged: BTreeSet::new(),
            vt: VersionTree::new(),
            snaps: BTreeMap::new(),
            names: HashMap::new(),
            jobs: BTreeMap::new(),
            dirty_versions: BTreeSet::new(),
            dirty_snaps: BTreeSet::new(),
            dirty_jobs: BTreeSet::new(),
            dirty_addrs: HashSet::new(),
            changed: true,
            failed: false,
            next_job_turn: 0,
            chunk_size: chunk_size as u64,
            elem_cache: lru::LruCache::unbounded(),
            elem_cache_len: 0,
            opts,
            auto_deleted: 0,
            opened_clean: true,
            closing: false,
            in_use: HashSet::new(),
            full_logged: false,
            copy_buf: Vec::new(),
            copying: BTreeMap::new(),
            snap_cover: 0,
            moves: Arc::default(),
        };
        // a fresh store counts as cleanly shut down
        s.commit_marked_clean(false)?;
        Ok(s)
    }

    /// Open the store on `dev` for `origin`, checking that it was formatted for an
    /// origin of this size and fits the device.
    pub fn open(
        origin: Arc<dyn BlockDevice>,
        dev: Arc<dyn BlockDevice>,
        opts: StoreOptions,
    ) -> Result<Store> {
        let sb = read_superblock(&*dev)?;
        if sb.origin_len > origin.len() {
            return Err(Error::Mismatch {
                what: "origin size in bytes",
                store: sb.origin_len,
                given: origin.len(),
            });
        }
        if sb.store_len > dev.len() {
            return Err(Error::Mismatch {
                what: "store device size in bytes",
                store: sb.store_len,
                given: dev.len(),
            });
        }
        let mut cache = NodeCache::new(dev.clone(), opts.cache_bytes, TxnId(sb.txn_id.0 + 1));
        let mut alloc = Allocator::new(sb.store_len, sb.chunk_size);
        let elements = Elements::open(sb.elements_root);
        let versions: Tree<u32, VersionRec> = Tree::open(sb.versions_root, VERSIONS_TREE_TAG);
        let job_tree: Tree<u32, JobRec> = Tree::open(sb.jobs_root, JOBS_TREE_TAG);
        let merged_tree: Tree<u64, u32> = Tree::open(sb.merged_root, MERGED_TREE_TAG);

        // Load the tables and rebuild the allocator from every committed reference.
        let mut vt = VersionTree::new();
        let chunk_size = sb.chunk_size as u64;
        let nr_chunks = sb.store_len / chunk_size;
        let bad_ref = |reason| {
            Error::Corrupt(blockdev::Corrupt {
                kind: blockdev::BlockKind::Reference,
                block: BlockNr(0),
                reason,
            })
        };
        let mut labels_ok = true;
        {
            let a = &mut alloc;
            versions.walk(
                &mut cache,
                &mut |b| a.mark_block(b).map_err(to_btree),
                &mut |l, rec| {
                    if *l == 0 || *l >= sb.next_label {
                        labels_ok = false;
                    }
                    vt.load(Label(*l), rec.parent, rec.ghost, rec.ghost_since);
                    Ok(())
                },
            )?;
        }
        if !labels_ok {
            return Err(bad_ref(blockdev::Reason::BadField));
        }
        vt.link().map_err(|_| bad_ref(blockdev::Reason::BadField))?;
        let (snap_tree, snaps) = load_snapshots(&mut cache, &mut alloc, &sb)?;
        let mut names = HashMap::new();
        let mut labels_seen = HashSet::new();
        for (id, r) in &snaps {
            if !vt.contains(r.label)
                || vt.is_ghost(r.label)
                || !labels_seen.insert(r.label)
                || names.insert(r.name.clone(), *id).is_some()
                || id.0 >= sb.next_snap_id
            {
                return Err(bad_ref(blockdev::Reason::BadField));
            }
        }
        let mut jobs = BTreeMap::new();
        {
            let a = &mut alloc;
            job_tree.walk(
                &mut cache,
                &mut |b| a.mark_block(b).map_err(to_btree),
                &mut |id, rec| {
                    jobs.insert(*id, *rec);
                    Ok(())
                },
            )?;
        }
        let mut merged_ahead = BTreeSet::new();
        {
            let a = &mut alloc;
            merged_tree.walk(
                &mut cache,
                &mut |b| a.mark_block(b).map_err(to_btree),
                &mut |addr, _| {
                    merged_ahead.insert(*addr);
                    Ok(())
                },
            )?;
        }
        let merges = jobs
            .values()
            .filter(|j| j.kind == crate::tables::JobKind::Merge)
            .count();
        if merges > 1
            || jobs
                .values()
                .any(|j| j.kind != crate::tables::JobKind::Cleanup && !vt.is_ghost(j.target))
        {
            return Err(bad_ref(blockdev::Reason::BadField));
        }
        let mut runs: Vec<(u64, u32)> = Vec::new();
        // A version 1 store has no label index: count it from the elements.
        let upgrade = sb.label_index_root.0 == 0;
        let mut counts = label_index::Counts::new();
        {
            let a = &mut alloc;
            let vt = &vt;
            let runs = &mut runs;
            let counts = &mut counts;
            elements.walk(
                &mut cache,
                &mut |b| a.mark_block(b).map_err(to_btree),
                &mut |k, v| {
                    if k.label.0 == 0 || !vt.contains(k.label) {
                        return Err(to_btree(bad_ref(blockdev::Reason::BadField)));
                    }
                    if k.addr.0 + v.len as u64 > sb.origin_len.div_ceil(chunk_size) {
                        return Err(to_btree(bad_ref(blockdev::Reason::OutOfRange)));
                    }
                    if let Ptr::Chunk(c) = v.ptr {
                        if c.0 + v.len as u64 > nr_chunks {
                            return Err(to_btree(bad_ref(blockdev::Reason::OutOfRange)));
                        }
                        runs.push((c.0, v.len));
                    }
                    if upgrade {
                        label_index::count_extent(counts, k.label, k.addr.0, v.len as u64);
                    }
                    Ok(())
                },
            )?;
        }
        for (c, len) in runs {
            for i in 0..len as u64 {
                alloc.mark_chunk(ChunkNr(c + i))?;
            }
        }
        let label_index = if upgrade {
            // Built in this transaction; the superblock of the first commit names it
            // and carries the new format version.
            LabelIndex::build(&mut cache, &mut alloc, &counts)?
        } else {
            let ix = LabelIndex::open(sb.label_index_root);
            let a = &mut alloc;
            ix.walk(
                &mut cache,
                &mut |b| a.mark_block(b).map_err(to_btree),
                &mut |k, _| {
                    if k.label.0 == 0 || !vt.contains(k.label) {
                        return Err(to_btree(bad_ref(blockdev::Reason::BadField)));
                    }
                    Ok(())
                },
            )?;
            ix
        };
        let opened_clean = sb.clean_shutdown;
        Ok(Store {
            origin,
            dev,
            cache,
            alloc,
            elements,
            versions,
            snap_tree,
            job_tree,
            merged_tree,
            label_index,
            merged_ahead,
            dirty_merged: BTreeSet::new(),
            vt,
            snaps,
            names,
            jobs,
            dirty_versions: BTreeSet::new(),
            dirty_snaps: BTreeSet::new(),
            dirty_jobs: BTreeSet::new(),
            dirty_addrs: HashSet::new(),
            changed: upgrade || sb.format_version < FORMAT_VERSION,
            failed: false,
            next_job_turn: 0,
            chunk_size,
            sb,
            elem_cache: lru::LruCache::unbounded(),
            elem_cache_len: 0,
            opts,
            auto_deleted: 0,
            opened_clean,
            closing: false,
            in_use: HashSet::new(),
            full_logged: false,
            copy_buf: Vec::new(),
            copying: BTreeMap::new(),
            snap_cover: 0,
            moves: Arc::default(),
        }
        .with_snap_cover())
    }

    /// The counter of moves: it is incremented before any change of where some
    /// version's data lives (an element set changes, a snapshot is deleted or
    /// merged) takes effect, so before the origin bytes that a snapshot read until
    /// then are overwritten. A read planned ([`Store::read_plan`]) when it was `n`
    /// and carried out without the store lock read what the plan meant if it is
    /// still `n` once the reads have landed (`SharedStore::read_plan`).
    pub fn moves(&self) -> Arc<AtomicU64> {
        self.moves.clone()
    }

    /// Count a move ([`Store::moves`]).
    pub(crate) fn moved(&self) {
        self.moves.fetch_add(1, Ordering::SeqCst);
    }

    /// The origin device.
    pub fn origin_device(&self) -> Arc<dyn BlockDevice> {
        self.origin.clone()
    }

    /// Check that a range lies inside the devices.
    pub fn check_origin_range(&self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, len)
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The store's identity (random at format).
    pub fn uuid(&self) -> [u8; 16] {
        self.sb.uuid
    }

    /// The origin's size in bytes now (it grows with [`Store::grow_origin`]; each
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
    fn commit_latching(&mut self, with_origin: bool, origin_errors_latch: bool) -> Result<TxnId> {
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
    fn flush_devices(&self, with_origin: bool) -> Result<()> {
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

    fn commit_inner(&mut self, with_origin: bool) -> Result<TxnId> {
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

    fn check_writable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::PreviousIo);
        }
        Ok(())
    }

    /// Run `f`; if it fails after it may have changed metadata, latch the store.
    fn latching<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
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

    fn load_elems(&mut self, a: u64) -> Result<Elems> {
        Ok((*self.load_elems_shared(a)?).clone())
    }

    /// The elements of address `a`, through the per-address cache.
    fn load_elems_shared(&mut self, a: u64) -> Result<Arc<Elems>> {
        if let Some(e) = self.elem_cache.get(&a) {
            return Ok(e.clone());
        }
        let e: Arc<Elems> = Arc::new(
            self.elements
                .at(&mut self.cache, Addr(a))?
                .into_iter()
                .collect(),
        );
        self.remember_elems(a, e.clone());
        Ok(e)
    }

    /// Put the exact element set of address `a` in the per-address cache.
    fn remember_elems(&mut self, a: u64, e: Arc<Elems>) {
        self.elem_cache_len += e.len() + 1;
        if let Some(old) = self.elem_cache.put(a, e) {
            self.elem_cache_len -= old.len() + 1;
        }
        while self.elem_cache_len > ELEM_CACHE_ELEMENTS {
            match self.elem_cache.pop_lru() {
                Some((_, old)) => self.elem_cache_len -= old.len() + 1,
                None => break,
            }
        }
    }

    fn forget_elems(&mut self, a: u64) {
        if let Some(old) = self.elem_cache.pop(&a) {
            self.elem_cache_len -= old.len() + 1;
        }
    }

    /// Write back the elements of address `a`: `before` as loaded, `after` as decided.
    /// Chunks named before (or allocated for this change, `new`) and not after are freed.
    ///
    /// `before` must be the address's element set as loaded, unchanged since: once
    /// the tree holds `after`, `after` is what a load would return, so it goes into
    /// the per-address cache and the next write to this address (the steady state
    /// after a copy-out) finds it there. On an error the address is left uncached.
    fn store_elems(
        &mut self,
        a: u64,
        before: &Elems,
        after: &Elems,
        new: &[ChunkNr],
    ) -> Result<()> {
        if before != after {
            self.moved();
        }
        self.forget_elems(a);
        let mut changed = false;
        for (l, p) in before {
            if !after.contains_key(l) {
                self.elements
                    .remove(&mut self.cache, &mut self.alloc, Addr(a), *l)?;
                self.label_index
                    .adjust(&mut self.cache, &mut self.alloc, *l, a, -1)?;
                changed = true;
            } else if after.get(l) != Some(p) {
                changed = true;
            }
        }
        for (l, p) in after {
            if before.get(l) != Some(p) {
                self.elements
                    .set(&mut self.cache, &mut self.alloc, Addr(a), *l, *p)?;
                if !before.contains_key(l) {
                    self.label_index
                        .adjust(&mut self.cache, &mut self.alloc, *l, a, 1)?;
                }
                changed = true;
            }
        }
        let kept: HashSet<ChunkNr> = after
            .values()
            .filter_map(|p| match p {
                Ptr::Chunk(c) => Some(*c),
                Ptr::Hole => None,
            })
            .collect();
        for p in before.values() {
            if let Ptr::Chunk(c) = p {
                if !kept.contains(c) {
                    self.alloc.free_chunk(*c);
                }
            }
        }
        for c in new {
            if !kept.contains(c) {
                self.alloc.free_chunk(*c);
            }
        }
        if changed {
            self.dirty_addrs.insert(a);
            self.changed = true;
        }
        self.remember_elems(a, Arc::new(after.clone()));
        Ok(())
    }

    /// Bytes of chunk `a` of a device of `dev_len` bytes (the last chunk may be short).
    fn chunk_len_in(&self, dev_len: u64, a: u64) -> usize {
        (dev_len - a * self.chunk_size).min(self.chunk_size) as usize
    }

    /// Bytes of origin chunk `a` (the last chunk may be short).
    fn chunk_len(&self, a: u64) -> usize {
        self.chunk_len_in(self.sb.origin_len, a)
    }

    /// Check that a range lies inside the origin.
    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        check_in(self.sb.origin_len, offset, len)
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

fn to_btree(e: Error) -> btree::Error {
    match e {
        Error::Corrupt(c) => btree::Error::Corrupt(c),
        Error::Io { source, offset, .. } => btree::Error::Io {
            block: BlockNr(offset / BLOCK_SIZE),
            source,
        },
        _ => btree::Error::NoSpace,
    }
}

fn new_uuid() -> [u8; 16] {
    // Not cryptographic: distinguishes stores, nothing more.
    let mut h = crc32fast::Hasher::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let a = h.finalize();
    let mut u = [0u8; 16];
    for (i, b) in u.iter_mut().enumerate() {
        *b = ((now >> ((i % 8) * 8)) as u8) ^ (a >> ((i % 4) * 8)) as u8;
    }
    u
}
