//! `snapctl grow-store`: the store takes the space its device gained.
use crate::{cmd::pick, output::Output};
use std::path::PathBuf;
use ublk_snapd::{client, offline, protocol::Op};

/// Take the space the store's file or block device gained, in one commit.
///
/// Extend the store first (`truncate -s +1G STORE`, `lvextend`), then run this; the
/// daemon goes on serving meanwhile, and origin writes it refused with ENOSPC succeed
/// afterwards. The new part of a store file is preallocated (fallocate; a warning
/// and sparse where the filesystem cannot) unless --sparse. Refused, changing
/// nothing, when the device did not grow by a whole chunk or shrank (exit 2).
/// With --store: offline, on a store no daemon serves.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Grow this store offline instead of asking the daemon.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// Leave the new part of a store file sparse (no preallocation).
    #[arg(long)]
    sparse: bool,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let g = match a.store {
        Some(p) => offline::grow_offline(&p, a.sparse)?,
        None => {
            let pick = pick!(GrownStore);
            pick(client::request(
                &out.socket,
                Op::GrowStore { sparse: a.sparse },
            )?)?
        }
    };
    if g.storage.starts_with("sparse (") {
        eprintln!(
            "snapctl: warning: the new part is {}: a filesystem that fills up can fail copy-outs",
            g.storage
        );
    }
    out.emit(&g, || {
        format!(
            "store grown from {} to {} bytes: {} chunks added ({}), {} free, transaction {}",
            g.old_bytes, g.new_bytes, g.added_chunks, g.storage, g.nr_free, g.txn_id
        )
    })
}
