//! `snapctl delete`.
use crate::{cmd::create::unexpected, output::Output};
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

/// Delete a snapshot (it must not be active); its space comes back in the background.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    match client::request(&out.socket, Op::Delete { name: a.name })? {
        Reply::Deleted(c) => out.emit(&c, || {
            format!("deleted snapshot {}, transaction {}", c.name, c.txn_id)
        }),
        other => Err(unexpected(&other)),
    }
}
