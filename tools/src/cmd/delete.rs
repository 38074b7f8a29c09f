//! `snapctl delete`.
use crate::{
    cmd::{pick, request_one},
    output::Output,
};
use ublk_snapd::protocol::Op;

/// Delete a snapshot (it must not be active); its space comes back in the background.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    request_one(out, Op::Delete { name: a.name }, pick!(Deleted), |c| {
        format!("deleted snapshot {}, transaction {}", c.name, c.txn_id)
    })
}
