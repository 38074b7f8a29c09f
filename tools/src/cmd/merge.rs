//! `snapctl merge`: reserved; specified in a later issue.
use crate::output::Output;
use ublk_snapd::Error;

/// Merge a snapshot back into the origin (reserved: not implemented yet).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
}

pub fn run(_a: Args, _out: &Output) -> anyhow::Result<()> {
    Err(Error::NotImplemented("snapctl merge").into())
}
