//! Operations on a store with no daemon running: `format`. Each takes the store
//! lock first, so it is refused while a daemon serves the store.
use crate::{lock::StoreLock, Error, Result};
use blockdev::FileDevice;
use exception_store::{Store, StoreOptions};
use std::{path::PathBuf, sync::Arc};

/// What `format` needs.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// The origin (its size is recorded in the store).
    pub origin: PathBuf,
    /// The store file or device (everything on it is forgotten).
    pub store: PathBuf,
    /// Chunk size in bytes.
    pub chunk_size: u32,
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
}

/// Format the store for the origin.
pub fn format(opts: &FormatOptions) -> Result<Formatted> {
    let _lock = StoreLock::acquire(&opts.store)?;
    let origin =
        FileDevice::open_with(&opts.origin, false).map_err(Error::io("open", &opts.origin))?;
    let dev = FileDevice::open(&opts.store).map_err(Error::io("open", &opts.store))?;
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
    })
}

/// Parse a size: digits with an optional suffix `K`, `KiB`, `M`, `MiB` (binary, case
/// insensitive; a trailing `B` is allowed). For clap.
pub fn parse_size(s: &str) -> std::result::Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K or M)")),
    };
    n.checked_mul(mult)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}
