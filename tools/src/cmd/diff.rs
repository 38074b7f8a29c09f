//! `snapctl diff A B`: the ranges where two snapshots (or a snapshot and the origin)
//! may read differently, from the store's index alone: the delta a replication
//! sends.
use crate::{
    cmd::map::device_name,
    output::{bytes, table, Output},
};
use std::path::PathBuf;
use ublk_snapd::{
    client, offline,
    protocol::{DiffReport, Op, Reply},
};

/// List the ranges where two snapshots may read differently.
///
/// A chunk written in neither since their common ancestor is never listed; a chunk
/// they read differently always is (a chunk both rewrote with the same bytes may be
/// listed). Either may be `-`, the origin; A may be older, newer or on another branch.
/// The cost is the elements of the versions between them, not the device size.
///
/// With --store: offline, on a store no daemon serves; nothing is written.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One snapshot, or `-` for the origin.
    a: String,
    /// The other, or `-` for the origin.
    b: String,
    /// In a pool: the origin (by name) both sides are of (default: the first, or the
    /// one an ORIGIN@NAME names).
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// Diff this store offline instead of asking the daemon.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// Print only the summary line (ranges and bytes).
    #[arg(long)]
    summary: bool,
}

/// Every page of the diff of `a` and `b`, joined (also used by other commands).
pub fn fetch(
    socket: &std::path::Path,
    store: Option<&std::path::Path>,
    origin: Option<&str>,
    a: Option<String>,
    b: Option<String>,
) -> anyhow::Result<DiffReport> {
    let mut offset = 0;
    let mut all: Option<DiffReport> = None;
    loop {
        let page = match store {
            Some(p) => offline::diff(p, origin, a.as_deref(), b.as_deref(), offset, None)?,
            None => match client::request(
                socket,
                Op::Diff {
                    from: a.clone(),
                    origin: origin.map(str::to_owned),
                    to: b.clone(),
                    offset,
                    len: None,
                },
            )? {
                Reply::Diff(d) => d,
                other => return Err(crate::cmd::create::unexpected(&other)),
            },
        };
        let next = page.next_offset;
        all = Some(match all {
            None => page,
            Some(mut acc) => {
                for r in page.ranges {
                    match acc.ranges.last_mut() {
                        Some(last) if last.offset + last.len == r.offset => last.len += r.len,
                        _ => acc.ranges.push(r),
                    }
                }
                acc.bytes += page.bytes;
                acc.next_offset = page.next_offset;
                acc
            }
        });
        match next {
            Some(n) => offset = n,
            None => break,
        }
    }
    all.ok_or_else(|| anyhow::anyhow!("no diff"))
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let d = fetch(
        &out.socket,
        a.store.as_deref(),
        a.origin.as_deref(),
        device_name(&a.a),
        device_name(&a.b),
    )?;
    let summary = format!(
        "{} ranges, {} ({} bytes) may differ between {} and {}\n",
        d.ranges.len(),
        bytes(d.bytes),
        d.bytes,
        d.from.as_deref().unwrap_or("origin"),
        d.to.as_deref().unwrap_or("origin"),
    );
    out.emit(&d, || {
        if a.summary {
            return summary.clone();
        }
        let rows: Vec<Vec<String>> = d
            .ranges
            .iter()
            .map(|r| vec![r.offset.to_string(), r.len.to_string()])
            .collect();
        let mut t = table(&["OFFSET", "LENGTH"], &rows);
        t.push('\n');
        t.push_str(&summary);
        t
    })
}
