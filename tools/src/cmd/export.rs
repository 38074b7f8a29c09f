//! `snapctl export` and `snapctl unexport`.
use crate::{
    cmd::{pick, request_one},
    output::Output,
};
use ublk_snapd::protocol::{ExportEntry, Op};

/// Serve a snapshot (or the origin) over NBD and print its URI.
///
/// Read-only unless --writable (writes then get EPERM). The export survives a
/// daemon restart after a crash, like an active device; `unexport` removes it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot, or `-` (or `origin`) for the origin.
    name: String,
    /// In a pool: the origin (by name) exported with `-` (its export is named after
    /// it by default), or whose snapshot NAME is (default: the first, or the one an
    /// ORIGIN@NAME names).
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// NAME is a snapshot's even if it is `origin`.
    #[arg(long)]
    snapshot: bool,
    /// Let clients write (to the snapshot, or to the origin through its copy-outs).
    #[arg(long)]
    writable: bool,
    /// The export's name, what clients ask for (default: NAME).
    #[arg(long = "name", value_name = "EXPORT")]
    export: Option<String>,
}

/// Remove an NBD export; its clients are disconnected.
#[derive(Debug, clap::Args)]
pub struct UnexportArgs {
    /// The export's name.
    export: String,
}

/// `nbd+unix:///EXPORT?socket=PATH` (or `nbd://HOST:PORT/EXPORT`, `nbds://` where
/// TLS is required) for each address.
pub fn uris(e: &ExportEntry) -> Vec<String> {
    e.listen
        .iter()
        .map(|a| {
            if let Some(p) = a.strip_prefix("unix:") {
                format!("nbd+unix:///{}?socket={p}", e.export)
            } else if let Some(h) = a.strip_prefix("tcp:") {
                format!("nbd://{h}/{}", e.export)
            } else if let Some(h) = a.strip_prefix("tls:") {
                format!("nbds://{h}/{}", e.export)
            } else {
                a.clone()
            }
        })
        .collect()
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let op = Op::Export {
        name: a.name,
        origin: a.origin,
        snapshot: a.snapshot,
        writable: a.writable,
        export: a.export,
    };
    request_one(out, op, pick!(Exported), |e| {
        let u = uris(e);
        if u.is_empty() {
            format!("{} (the daemon has no NBD listener)", e.export)
        } else {
            u.join("\n")
        }
    })
}

pub fn unexport(a: UnexportArgs, out: &Output) -> anyhow::Result<()> {
    request_one(
        out,
        Op::Unexport { export: a.export },
        pick!(Unexported),
        |e| format!("unexported {}", e.export),
    )
}
