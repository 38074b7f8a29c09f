//! `snapctl activate`.
use crate::{cmd::create::unexpected, output::Output};
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

/// Give a snapshot a block device and print its path.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    match client::request(&out.socket, Op::Activate { name: a.name })? {
        Reply::Activated(c) => out.emit(&c, || c.device.clone()),
        other => Err(unexpected(&other)),
    }
}
