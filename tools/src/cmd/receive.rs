//! `snapctl receive`: apply a stream from stdin (or a file) to the daemon's origin
//! and take the snapshot it carries.
use crate::{cmd::meter::Meter, output::Output};
use std::io::Read;
use ublk_snapd::{client, Error};

/// Apply a replication stream (from `snapctl send`) read from stdin.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read the stream from this file instead of stdin.
    #[arg(short = 'i', long, value_name = "FILE")]
    input: Option<std::path::PathBuf>,
    /// In a pool: the origin (by name) to receive into; the stream's base is one of
    /// its snapshots and the snapshot lands in it (default: the first).
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// If the origin was written since the stream's base snapshot was received, roll
    /// it back to that snapshot first (and drop an unfinished receive) instead of
    /// refusing.
    #[arg(long)]
    force: bool,
    /// Stream format: ours (`stream`) or Ceph's `rbd diff v1` (`rbd-diff`, from
    /// `rbd export-diff`; its from-snapshot must name a snapshot here). An rbd diff
    /// cannot be resumed: a cut one is rolled back.
    #[arg(long, value_name = "FORMAT", default_value = "stream")]
    format: crate::cmd::send::Format,
    /// Show progress on stderr (a bar on a terminal, lines otherwise).
    #[arg(long)]
    progress: bool,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let mut r: Box<dyn Read> = match &a.input {
        Some(p) => Box::new(std::fs::File::open(p).map_err(|e| Error::Io {
            what: "open",
            path: p.clone(),
            error: e,
        })?),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut meter = Meter::new("received", a.progress);
    let got = client::stream::receive(
        &out.socket,
        a.origin.as_deref(),
        a.force,
        matches!(a.format, crate::cmd::send::Format::RbdDiff),
        &mut *r,
        &mut |p| meter.tick(p),
    )?;
    let line = meter.done(got.bytes);
    out.emit(&got, || {
        let mut s = String::new();
        for f in &got.forced {
            s += &format!("--force: {f}\n");
        }
        s + &format!(
            "received snapshot {} (id {}), transaction {}\n{line}",
            got.name, got.id, got.txn_id
        )
    })
}
