//! `snapctl format`: make an empty store for an origin (offline).
use crate::output::{bytes, Output};
use std::path::PathBuf;
use ublk_snapd::offline::{self, FormatOptions};

/// Format a store for an origin (offline; refused while ublk-snapd serves the store).
///
/// Everything on the store is forgotten. The origin is only read (for its size). A
/// store file is preallocated (fallocate) so that a filesystem that fills up cannot
/// fail copy-outs later; where the filesystem cannot, a warning says so and the store
/// stays sparse. --sparse skips the preallocation.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The origin: a file or block device.
    #[arg(long, value_name = "PATH")]
    origin: PathBuf,
    /// The store: a file or block device.
    #[arg(long, value_name = "PATH")]
    store: PathBuf,
    /// Chunk size: a power of two from 4KiB to 1MiB (suffixes K, M, KiB, MiB).
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = offline::parse_size)]
    chunk_size: u32,
    /// Leave a store file sparse (no preallocation).
    #[arg(long)]
    sparse: bool,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let f = offline::format(&FormatOptions {
        origin: a.origin,
        store: a.store,
        chunk_size: a.chunk_size,
        sparse: a.sparse,
    })?;
    if f.storage.starts_with("sparse (") {
        eprintln!(
            "snapctl: warning: the store is {}: a filesystem that fills up can fail copy-outs",
            f.storage
        );
    }
    out.emit(&f, || {
        format!(
            "formatted {} for {} ({}): chunk size {}, {} chunks, {} free, {}, transaction {}",
            f.store,
            f.origin,
            bytes(f.size_bytes),
            bytes(f.chunk_size),
            f.nr_chunks,
            f.nr_free,
            f.storage,
            f.txn_id
        )
    })
}
