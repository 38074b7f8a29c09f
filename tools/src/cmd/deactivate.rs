//! `snapctl deactivate`.
use crate::{cmd::create::unexpected, output::Output};
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

/// Remove a snapshot's block device (unmount it first).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    match client::request(&out.socket, Op::Deactivate { name: a.name })? {
        Reply::Deactivated(c) => out.emit(&c, || {
            format!("deactivated snapshot {}, transaction {}", c.name, c.txn_id)
        }),
        other => Err(unexpected(&other)),
    }
}
