//! `snapctl resize-origin`: the origin takes the size its file or device grew to.
use crate::{cmd::pick, output::Output};
use std::path::PathBuf;
use ublk_snapd::{client, offline, protocol::Op};

/// Grow the origin to its file's or block device's size now (or --size), in one commit.
///
/// Extend the origin first (`truncate -s +1G ORIGIN`, `lvextend`), then run this; the
/// daemon goes on serving, and the origin's /dev/ublkbN grows at once where the
/// kernel's ublk driver offers UPDATE_SIZE (Linux 6.16+), so `resize2fs` can grow a
/// mounted filesystem on it. Snapshots keep the size they were taken at; one taken
/// afterwards has the new size. Refused, changing nothing (exit 2): shrinking, a size
/// that is not whole 512-byte sectors or is past the origin device's end, and, on a
/// driver without UPDATE_SIZE (6.12), a running origin device. With --store and
/// --origin: offline, on a store no daemon serves.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// In a pool: the origin to grow, by name (default: the first; online only).
    #[arg(value_name = "NAME", conflicts_with = "store")]
    name: Option<String>,
    /// The new size in bytes (K, M, G suffixes; default: the origin device's size).
    #[arg(long, value_name = "BYTES", value_parser = ublk_snapd::offline::parse_size_u64)]
    size: Option<u64>,
    /// Resize this store's origin offline instead of asking the daemon.
    #[arg(long, value_name = "PATH", requires = "origin")]
    store: Option<PathBuf>,
    /// The origin (offline, with --store).
    #[arg(long, value_name = "PATH", requires = "store")]
    origin: Option<PathBuf>,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let r = match (&a.store, &a.origin) {
        (Some(s), Some(o)) => offline::resize_offline(s, o, a.size)?,
        _ => {
            let pick = pick!(ResizedOrigin);
            pick(client::request(
                &out.socket,
                Op::ResizeOrigin {
                    size: a.size,
                    origin: a.name.clone(),
                },
            )?)?
        }
    };
    out.emit(&r, || {
        let dev = match &r.device {
            Some(d) => format!(", {d} resized"),
            None => String::new(),
        };
        format!(
            "origin grown from {} to {} bytes{dev}, transaction {}",
            r.old_bytes, r.new_bytes, r.txn_id
        )
    })
}
