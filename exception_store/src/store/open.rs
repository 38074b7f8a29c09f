//! Formatting a store and opening one: reading the superblock, loading the tables,
//! rebuilding the allocator from every committed reference, upgrading the tables of
//! earlier format versions in memory (written by the first commit).

use super::{
    allocator_reserve_chunks, commit_io::CommitIo, elems::to_btree, store_io, Store, StoreOptions,
};
use crate::{
    allocator::Allocator,
    format::*,
    label_index::{self, LabelIndex},
    superblock::{read_superblock, valid_chunk_size, Superblock},
    tables::{
        default_guid, JobRec, OriginRec, OriginRecRaw, SnapRec, SnapRecRaw, SnapRecRawV2,
        SnapRecRawV3, VersionRec,
    },
    version_tree::VersionTree,
    Error, Result,
};
use blockdev::{
    ids::{BlockNr, ChunkNr, Label, SnapId, TxnId},
    BlockDevice,
};
use btree::{elements::Elements, elements::Ptr, NodeCache, Tree};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

/// Load the snapshot table. A table of an older format version is rewritten in this
/// transaction as a version 4 table: records of versions 1 and 2 (without guid and
/// size) get their [`default_guid`] and the origin size, and every older record
/// origin 0 and no group. Its old blocks are freed when that commits, and until then
/// the committed store is untouched.
pub(super) fn load_snapshots(
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
    if sb.format_version >= 4 {
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
    let mut old_blocks = Vec::new();
    let mut keep = |id: &u32, r: std::result::Result<SnapRec, blockdev::Reason>| {
        match r {
            Ok(r) => {
                snaps.insert(SnapId(*id), r);
            }
            Err(e) => bad = Some(e),
        }
        Ok(())
    };
    if sb.format_version == 3 {
        let old: Tree<u32, SnapRecRawV3> = Tree::open(sb.snapshots_root, SNAPSHOTS_TREE_TAG);
        old.walk(
            cache,
            &mut |b| {
                old_blocks.push(b);
                alloc.mark_block(b).map_err(to_btree)
            },
            &mut |id, raw| keep(id, raw.upgrade()),
        )?;
    } else {
        let old: Tree<u32, SnapRecRawV2> = Tree::open(sb.snapshots_root, SNAPSHOTS_TREE_TAG);
        old.walk(
            cache,
            &mut |b| {
                old_blocks.push(b);
                alloc.mark_block(b).map_err(to_btree)
            },
            &mut |id, raw| {
                keep(
                    id,
                    raw.upgrade(default_guid(&sb.uuid, SnapId(*id)), sb.origin_len),
                )
            },
        )?;
    }
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

/// Load the origin table (format version 4). A store of an older version has
/// none: the table is made in this transaction with origin 0, the store's one origin
/// (named [`FIRST_ORIGIN_NAME`], its size the superblock's, root label 0), and the
/// first commit writes it.
pub(super) fn load_origins(
    cache: &mut NodeCache,
    alloc: &mut Allocator,
    sb: &Superblock,
) -> Result<(Tree<u32, OriginRecRaw>, BTreeMap<u32, OriginRec>)> {
    let mut origins = BTreeMap::new();
    if sb.format_version < 4 {
        let mut tree = Tree::create(cache, alloc, ORIGINS_TREE_TAG)?;
        let first = first_origin(sb.origin_len);
        tree.insert(cache, alloc, 0, first.to_raw())?;
        origins.insert(0, first);
        return Ok((tree, origins));
    }
    let tree: Tree<u32, OriginRecRaw> = Tree::open(sb.origins_root, ORIGINS_TREE_TAG);
    let mut bad = None;
    tree.walk(
        cache,
        &mut |b| alloc.mark_block(b).map_err(to_btree),
        &mut |id, raw| {
            match OriginRec::from_raw(raw) {
                Ok(r) => {
                    origins.insert(*id, r);
                }
                Err(e) => bad = Some(e),
            }
            Ok(())
        },
    )?;
    let bad_ref = |reason| {
        Error::Corrupt(blockdev::Corrupt {
            kind: blockdev::BlockKind::Reference,
            block: BlockNr(0),
            reason,
        })
    };
    if let Some(r) = bad {
        return Err(bad_ref(r));
    }
    // Origin 0 is the superblock's origin, rooted at label 0 (a one-origin store).
    match origins.get(&0) {
        Some(o) if o.root == Label(0) && o.size == sb.origin_len => {}
        _ => return Err(bad_ref(blockdev::Reason::BadField)),
    }
    Ok((tree, origins))
}

/// Origin 0 of a store formatted or upgraded for one origin of `size` bytes.
fn first_origin(size: u64) -> OriginRec {
    OriginRec {
        root: Label(0),
        removing: false,
        size,
        quota: 0,
        created: 0,
        name: FIRST_ORIGIN_NAME.to_owned(),
        path: String::new(),
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
        let mut origin_tree = Tree::create(&mut cache, &mut alloc, ORIGINS_TREE_TAG)?;
        let first = first_origin(origin.len());
        origin_tree.insert(&mut cache, &mut alloc, 0, first.to_raw())?;
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
            origins_root: origin_tree.root(),
            next_group_id: 1,
            needs_check: false,
            clean_shutdown: false,
            ro_compat: 0,
            format_version: FORMAT_VERSION,
        };
        let mut s = Store {
            origin_devs: BTreeMap::from([(0, origin)]),
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
            origin_tree,
            origins: BTreeMap::from([(0, first)]),
            dirty_origins: BTreeSet::new(),
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
            inflight: None,
            io: CommitIo::new(TxnId(0)),
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
            refused_at: None,
            copy_buf: Vec::new(),
            copying: BTreeMap::new(),
            origin_used: BTreeMap::new(),
            snap_cover: BTreeMap::new(),
            moves: Arc::default(),
            frees: Arc::default(),
            copy_epochs: BTreeMap::new(),
            merging_flag: Arc::default(),
            flush_only: None,
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
        let (origin_tree, origins) = load_origins(&mut cache, &mut alloc, &sb)?;
        // the origins' roots are the version forest's roots
        let roots: HashSet<Label> = vt.roots().collect();
        let origin_roots: HashSet<Label> = origins.values().map(|o| o.root).collect();
        if roots != origin_roots || origin_roots.len() != origins.len() {
            return Err(bad_ref(blockdev::Reason::BadField));
        }
        let mut names = HashMap::new();
        let mut labels_seen = HashSet::new();
        for (id, r) in &snaps {
            if !origins.contains_key(&r.origin)
                || r.group >= sb.next_group_id
                || !vt.contains(r.label)
                || vt.is_ghost(r.label)
                || !labels_seen.insert(r.label)
                || names.insert((r.origin, r.name.clone()), *id).is_some()
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
        // at most one merge per origin (a group's members merge together)
        let merge_origins: Vec<u32> = jobs
            .values()
            .filter(|j| j.kind == crate::tables::JobKind::Merge)
            .map(|j| super::addr_origin(j.cursor))
            .collect();
        let distinct: BTreeSet<u32> = merge_origins.iter().copied().collect();
        if distinct.len() != merge_origins.len()
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
        let mut origin_used: BTreeMap<super::OriginId, u64> = BTreeMap::new();
        {
            let a = &mut alloc;
            let vt = &vt;
            let runs = &mut runs;
            let used = &mut origin_used;
            let counts = &mut counts;
            elements.walk(
                &mut cache,
                &mut |b| a.mark_block(b).map_err(to_btree),
                &mut |k, v| {
                    if !vt.contains(k.label) || vt.is_root(k.label) {
                        return Err(to_btree(bad_ref(blockdev::Reason::BadField)));
                    }
                    // inside its origin (an extent never crosses origins)
                    let size = origins.get(&super::addr_origin(k.addr.0)).map(|o| o.size);
                    match size {
                        Some(size)
                            if super::addr_chunk(k.addr.0) + v.len as u64
                                <= size.div_ceil(chunk_size) => {}
                        _ => return Err(to_btree(bad_ref(blockdev::Reason::OutOfRange))),
                    }
                    if let Ptr::Chunk(c) = v.ptr {
                        if c.0 + v.len as u64 > nr_chunks {
                            return Err(to_btree(bad_ref(blockdev::Reason::OutOfRange)));
                        }
                        runs.push((c.0, v.len));
                        *used.entry(super::addr_origin(k.addr.0)).or_default() += v.len as u64;
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
        let durable = sb.txn_id;
        Ok(Store {
            origin_devs: BTreeMap::from([(0, origin)]),
            dev,
            cache,
            alloc,
            elements,
            versions,
            snap_tree,
            job_tree,
            merged_tree,
            label_index,
            origin_tree,
            origins,
            dirty_origins: BTreeSet::new(),
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
            inflight: None,
            io: CommitIo::new(durable),
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
            refused_at: None,
            copy_buf: Vec::new(),
            copying: BTreeMap::new(),
            origin_used,
            snap_cover: BTreeMap::new(),
            moves: Arc::default(),
            frees: Arc::default(),
            copy_epochs: BTreeMap::new(),
            merging_flag: Arc::default(),
            flush_only: None,
        }
        .with_snap_cover()
        .with_merging_flag())
    }
}

pub(super) fn new_uuid() -> [u8; 16] {
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
