//! `snapctl hold` and `snapctl release`.
use crate::{cmd::create::unexpected, output::Output};
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

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
    match client::request(&out.socket, Op::Hold { name: a.name })? {
        Reply::Held(c) => out.emit(&c, || {
            format!("snapshot {} is held, transaction {}", c.name, c.txn_id)
        }),
        other => Err(unexpected(&other)),
    }
}

pub fn release(a: ReleaseArgs, out: &Output) -> anyhow::Result<()> {
    match client::request(&out.socket, Op::Release { name: a.name })? {
        Reply::Released(c) => out.emit(&c, || {
            format!(
                "snapshot {} is no longer held, transaction {}",
                c.name, c.txn_id
            )
        }),
        other => Err(unexpected(&other)),
    }
}
