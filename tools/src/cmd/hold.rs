//! `snapctl hold` and `snapctl release`.
use crate::{
    cmd::{pick, request_one},
    output::Output,
};
use ublk_snapd::protocol::Op;

/// Hold a snapshot: `prune` and the space policy never delete it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

/// Release a snapshot's hold: `prune` and the space policy may delete it again.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The snapshot.
    name: String,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    request_one(out, Op::Hold { name: a.name }, pick!(Held), |c| {
        format!("snapshot {} is held, transaction {}", c.name, c.txn_id)
    })
}

pub fn release(a: ReleaseArgs, out: &Output) -> anyhow::Result<()> {
    request_one(out, Op::Release { name: a.name }, pick!(Released), |c| {
        format!(
            "snapshot {} is no longer held, transaction {}",
            c.name, c.txn_id
        )
    })
}
