//! `snapctl deactivate`.
use crate::{
    cmd::{pick, request_one},
    output::Output,
};
use ublk_snapd::protocol::Op;

/// Remove a snapshot's block device (unmount it first).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    request_one(
        out,
        Op::Deactivate { name: a.name },
        pick!(Deactivated),
        |c| format!("deactivated snapshot {}, transaction {}", c.name, c.txn_id),
    )
}
