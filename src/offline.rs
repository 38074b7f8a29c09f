//! Operations on a store with no daemon running: `format`, `check`, `check
//! --repair`, `dump`, `map`, `diff`, `grow-store` and `resize-origin`. Each takes
//! the store lock first, so it is refused while a daemon serves the store. Nothing
//! here names the service or the daemon; the service calls in for the parts its
//! online `grow-store` and `resize-origin` share (`warn_sparse`, `target_size`).
//!
//! `check` and `dump` open the store without its origin ([`Store::open_offline`])
//! and never commit: they write nothing (the device is opened read-write only
//! because `FileDevice` has no read-only mode for stores). `check --repair`
//! ([`repair`]) writes only to finish unfinished background passes, and an origin
//! only to finish a merge into it (a pool's other origins are opened from the paths
//! the store records).
use crate::{
    lock::StoreLock,
    protocol::{CheckReport, DumpReport, GrownStore, RepairReport, ResizedOrigin},
    Error, Result,
};
use blockdev::{BlockDevice, FileDevice};
use exception_store::{repair as store_repair, Grown, Preallocation, Store, StoreOptions};
use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

/// What `format` needs.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// The origin (its size is recorded in the store).
    pub origin: PathBuf,
    /// The store file or device (everything on it is forgotten).
    pub store: PathBuf,
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Leave a store file sparse instead of preallocating it (`fallocate`).
    pub sparse: bool,
}

/// What `format` made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Formatted {
    /// The origin.
    pub origin: String,
    /// The store.
    pub store: String,
    /// Origin size in bytes.
    pub size_bytes: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Chunks on the store.
    pub nr_chunks: u64,
    /// Chunks free after formatting.
    pub nr_free: u64,
    /// The first transaction id.
    pub txn_id: u64,
    /// The store's storage: "preallocated" (a block device is), "sparse" (asked
    /// for), or "sparse (why)" when the filesystem cannot preallocate.
    #[serde(default)]
    pub storage: String,
}

/// Format the store for the origin. A store file is preallocated first unless
/// `sparse` (so that a filesystem that fills up cannot fail a copy-out with ENOSPC
/// later); where the filesystem cannot preallocate, a warning says so and the store
/// is formatted sparse. A filesystem without room for the whole file fails the
/// format (ENOSPC) before anything is written.
pub fn format(opts: &FormatOptions) -> Result<Formatted> {
    let _lock = StoreLock::acquire(&opts.store)?;
    let origin =
        FileDevice::open_with(&opts.origin, false).map_err(Error::io("open", &opts.origin))?;
    let dev = FileDevice::open(&opts.store).map_err(Error::io("open", &opts.store))?;
    let storage = exception_store::preallocate(&dev, 0, dev.len(), opts.sparse)?;
    if let exception_store::Preallocation::Unsupported(why) = &storage {
        tracing::warn!(
            why,
            "the store stays sparse: a full filesystem can fail copy-outs"
        );
    }
    let store = Store::format(
        Arc::new(origin),
        Arc::new(dev),
        opts.chunk_size,
        StoreOptions::default(),
    )?;
    let st = store.status();
    Ok(Formatted {
        origin: opts.origin.display().to_string(),
        store: opts.store.display().to_string(),
        size_bytes: st.origin_len,
        chunk_size: st.chunk_size,
        nr_chunks: st.nr_chunks,
        nr_free: st.nr_free,
        txn_id: st.txn_id.0,
        storage: storage.describe(),
    })
}

fn open_offline(path: &std::path::Path) -> Result<(StoreLock, Store)> {
    let lock = StoreLock::acquire(path)?;
    let dev = FileDevice::open(path).map_err(Error::io("open", path))?;
    let store = Store::open_offline(Arc::new(dev))?;
    Ok((lock, store))
}

/// Check a store offline (see [`Store::check`]). An `Err` means it could not be opened
/// or walked (corruption, I/O); problems found are in the report.
pub fn check(store: &std::path::Path) -> Result<CheckReport> {
    let (_lock, mut s) = open_offline(store)?;
    let r = s.check()?;
    Ok(CheckReport::new(r, s.txn_id().0))
}

/// What `check --repair` needs.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// The store.
    pub store: PathBuf,
    /// The origin: needed only to finish a merge (which writes it).
    pub origin: Option<PathBuf>,
    /// Check and say what would be done; write nothing.
    pub dry_run: bool,
}

/// Repair a store offline (see [`exception_store::repair`]): refused while a daemon
/// holds the store ([`Error::Locked`]); with an origin that is a block device in use
/// (mounted), refused with [`Error::InUse`] (a dry run opens it read-only,
/// unclaimed). A pool's other origins are opened from the paths the store records
/// (claimed likewise); one that cannot be is left out, logged, and fails the
/// repair only when an unfinished merge writes it (the error says why it is
/// missing). Errors the check finds are in the report (nothing written); an `Err`
/// means the store could not be opened or walked, or an unfinished merge needs an
/// origin that is not there.
pub fn repair(opts: &RepairOptions) -> Result<RepairReport> {
    let _lock = StoreLock::acquire(&opts.store)?;
    let dev: Arc<dyn BlockDevice> =
        Arc::new(FileDevice::open(&opts.store).map_err(Error::io("open", &opts.store))?);
    let (others, missing, _claims) = open_other_origins(&dev, opts.dry_run)?;
    let mut _claim = None;
    let origin: Option<Arc<dyn BlockDevice>> = match &opts.origin {
        Some(p) => {
            if !opts.dry_run {
                _claim = claim_block_device(p)?;
            }
            let o = FileDevice::open_with(p, !opts.dry_run).map_err(Error::io("open", p))?;
            Some(Arc::new(o))
        }
        None => None,
    };
    let r = store_repair::repair_pool(
        dev,
        origin,
        &others,
        store_repair::RepairOptions {
            dry_run: opts.dry_run,
        },
    )
    .map_err(|e| match e {
        exception_store::Error::OriginMissing(m) if !missing.is_empty() => Error::Store(
            exception_store::Error::OriginMissing(format!("{m} ({})", missing.join("; "))),
        ),
        e => Error::Store(e),
    })?;
    Ok(RepairReport::new(r, opts.dry_run, opts.origin.is_some()))
}

/// The devices of the store's origins other than the first (a pool), opened from
/// the paths the store records, each claimed like the first's unless `dry_run`;
/// and why each one that could not be is missing.
#[allow(clippy::type_complexity)]
fn open_other_origins(
    dev: &Arc<dyn BlockDevice>,
    dry_run: bool,
) -> Result<(
    Vec<(exception_store::OriginId, Arc<dyn BlockDevice>)>,
    Vec<String>,
    Vec<File>,
)> {
    let recorded = Store::open_offline(dev.clone())?.origins();
    let (mut others, mut missing, mut claims) = (Vec::new(), Vec::new(), Vec::new());
    for o in recorded.into_iter().filter(|o| o.id != 0 && !o.removing) {
        let path = Path::new(&o.path);
        let opened = (|| -> Result<Arc<dyn BlockDevice>> {
            if !dry_run {
                claims.extend(claim_block_device(path)?);
            }
            let d = FileDevice::open_with(path, !dry_run).map_err(Error::io("open", path))?;
            Ok(Arc::new(d))
        })();
        match opened {
            Ok(d) if d.len() >= o.size => others.push((o.id, d)),
            Ok(d) => {
                let why = format!(
                    "origin {:?}: {} has {} bytes, the origin {}",
                    o.name,
                    o.path,
                    d.len(),
                    o.size
                );
                tracing::warn!(%why, "origin left out of the repair");
                missing.push(why);
            }
            Err(e) => {
                let why = format!("origin {:?}: {e}", o.name);
                tracing::warn!(%why, "origin left out of the repair");
                missing.push(why);
            }
        }
    }
    Ok((others, missing, claims))
}

/// Hold a block device exclusively (`O_EXCL`: refused while it is mounted or claimed),
/// so that a merge never writes under a mounted filesystem. Regular files: nothing.
fn claim_block_device(path: &Path) -> Result<Option<File>> {
    let meta = std::fs::metadata(path).map_err(Error::io("open", path))?;
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(Error::InUse {
            device: path.display().to_string(),
            why: "repairing a merge writes the origin",
        }),
        Err(e) => Err(Error::io("open", path)(e)),
    }
}

/// Dump a store offline (see [`Store::dump`]).
pub fn dump(store: &std::path::Path, elements: bool) -> Result<DumpReport> {
    let (_lock, mut s) = open_offline(store)?;
    Ok(s.dump(elements)?.into())
}

/// Parse a size: digits with an optional suffix `K`, `KiB`, `M`, `MiB` (binary, case
/// insensitive; a trailing `B` is allowed). For clap.
pub fn parse_size(s: &str) -> std::result::Result<u32, String> {
    parse_size_u64(s).and_then(|v| u32::try_from(v).map_err(|_| format!("{s:?} is too large")))
}

/// Like [`parse_size`], also with `G`/`GiB` and `T`/`TiB`, as a `u64`.
pub fn parse_size_u64(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `map` offline: one page of what a device of `store` reads (nothing is written,
/// the origin is not needed: a map never reads data). `origin` as the daemon's
/// (`crate::names`).
pub fn map(
    store: &std::path::Path,
    origin: Option<&str>,
    name: Option<&str>,
    offset: u64,
    len: Option<u64>,
) -> Result<crate::protocol::MapReport> {
    let (_lock, mut s) = open_offline(store)?;
    crate::inspect::map(&mut s, origin, name, offset, len)
}

/// `diff` offline: one page of where two devices of `store` may read differently.
pub fn diff(
    store: &std::path::Path,
    origin: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    offset: u64,
    len: Option<u64>,
) -> Result<crate::protocol::DiffReport> {
    let (_lock, mut s) = open_offline(store)?;
    crate::inspect::diff(&mut s, origin, from, to, offset, len)
}

/// `grow-store --store PATH`: `grow-store` on a store no daemon serves (refused
/// while one does). The origin is not needed. The daemon's `grow-store` gives the
/// same reply.
pub fn grow_offline(store: &Path, sparse: bool) -> Result<GrownStore> {
    let _lock = StoreLock::acquire(store)?;
    let dev = FileDevice::open(store).map_err(Error::io("open", store))?;
    let mut s = Store::open_offline(Arc::new(dev))?;
    let g = s.grow_store(sparse)?;
    warn_sparse(&g);
    // it was closed cleanly before (or recovered at this open): say so again
    s.commit_clean_shutdown()?;
    Ok(GrownStore::new(&g, s.status().nr_free))
}

/// Warn that the new part of a grown store is sparse (the filesystem could not
/// preallocate it); shared with the daemon's `grow-store`.
pub(crate) fn warn_sparse(g: &Grown) {
    if let Preallocation::Unsupported(why) = &g.preallocation {
        tracing::warn!(
            why,
            "the new part of the store is sparse: a full filesystem can fail copy-outs"
        );
    }
}

/// `resize-origin --store PATH --origin PATH`: `resize-origin` on a store no daemon
/// serves (refused while one does). The daemon's `resize-origin` gives the same
/// reply.
pub fn resize_offline(store: &Path, origin: &Path, size: Option<u64>) -> Result<ResizedOrigin> {
    let _lock = StoreLock::acquire(store)?;
    let dev = FileDevice::open(store).map_err(Error::io("open", store))?;
    let o = FileDevice::open_with(origin, false).map_err(Error::io("open", origin))?;
    let mut s = Store::open(Arc::new(o), Arc::new(dev), StoreOptions::default())?;
    let new_len = target_size(&s, 0, size)?;
    let g = s.grow_origin(0, new_len)?;
    s.commit_clean_shutdown()?;
    Ok(ResizedOrigin::new(&g, None))
}

/// The size asked for, or origin `k`'s device's size now (shared with the
/// daemon's `resize-origin`).
pub(crate) fn target_size(
    s: &Store,
    k: exception_store::OriginId,
    size: Option<u64>,
) -> Result<u64> {
    match size {
        Some(n) => Ok(n),
        None => Ok(s.origin_device_len(k)?),
    }
}
