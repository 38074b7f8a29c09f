//! `snapctl activate`.
use crate::{
    cmd::{pick, request_one},
    output::Output,
};
use ublk_snapd::protocol::Op;

/// Give a snapshot a block device and print its path.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    request_one(out, Op::Activate { name: a.name }, pick!(Activated), |c| {
        c.device.clone()
    })
}
