//! `snapctl map`: what a snapshot (or the origin) reads, range by range, like
//! `qemu-img map`: its own data, data inherited from a snapshot above it, the
//! origin's, zeros; with totals and what deleting it would give back.
use crate::output::{bytes, table, Output};
use std::path::PathBuf;
use ublk_snapd::{
    client, offline,
    protocol::{
        inspect::{Kind, MapTotals},
        MapReport, Op, Reply,
    },
};

/// Show what a snapshot reads, range by range.
///
/// Each run is own data (the snapshot's own chunks), inherited (a chunk of a snapshot
/// above it in its chain: FROM names it), origin (read from the origin device at the
/// same offset) or zero (a discarded or zeroed range). DEPTH is the layer holding it:
/// 1 the snapshot itself, the last the origin (as qemu's allocation depth). Computed
/// from the store's index alone, never by reading data.
///
/// With --store: offline, on a store no daemon serves; nothing is written.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot, or `-` for the origin.
    name: String,
    /// In a pool: the origin (by name) mapped, or whose snapshot NAME is (default: the first, or the
    /// one an ORIGIN@NAME names).
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// Map this store offline instead of asking the daemon.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// First byte (default 0).
    #[arg(long, default_value_t = 0, value_parser = ublk_snapd::offline::parse_size_u64)]
    offset: u64,
    /// Bytes (default: to the end).
    #[arg(long, value_parser = ublk_snapd::offline::parse_size_u64)]
    length: Option<u64>,
}

/// `-` names the origin.
pub fn device_name(n: &str) -> Option<String> {
    (n != "-").then(|| n.to_owned())
}

/// Every page of the map, joined into one report.
fn fetch(a: &Args, out: &Output) -> anyhow::Result<MapReport> {
    let name = device_name(&a.name);
    let mut offset = a.offset;
    let mut len = a.length;
    let mut all: Option<MapReport> = None;
    loop {
        let page = match &a.store {
            Some(p) => offline::map(p, a.origin.as_deref(), name.as_deref(), offset, len)?,
            None => match client::request(
                &out.socket,
                Op::Map {
                    name: name.clone(),
                    origin: a.origin.clone(),
                    offset,
                    len,
                },
            )? {
                Reply::Map(m) => m,
                other => return Err(crate::cmd::create::unexpected(&other)),
            },
        };
        let next = page.next_offset;
        all = Some(match all {
            None => page,
            Some(mut acc) => {
                acc.totals.add(&page.totals);
                acc.extents.extend(page.extents);
                acc.next_offset = page.next_offset;
                acc
            }
        });
        match next {
            Some(n) => {
                len = len.map(|l| l - (n - offset));
                offset = n;
            }
            None => break,
        }
    }
    all.ok_or_else(|| anyhow::anyhow!("no map"))
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let m = fetch(&a, out)?;
    out.emit(&m, || human(&m))
}

fn human(m: &MapReport) -> String {
    let rows: Vec<Vec<String>> = m
        .extents
        .iter()
        .map(|e| {
            let kind = match e.kind {
                Kind::Own => "own",
                Kind::Inherited => "inherited",
                Kind::Origin => "origin",
                Kind::Zero => "zero",
            };
            let place = match (e.kind, e.store_offset) {
                (_, Some(s)) => format!("store {s}"),
                (Kind::Origin, _) => format!("origin {}", e.offset),
                _ => "-".into(),
            };
            vec![
                e.offset.to_string(),
                e.len.to_string(),
                kind.into(),
                e.depth.to_string(),
                e.from.clone().unwrap_or_else(|| "-".into()),
                place,
            ]
        })
        .collect();
    let mut t = table(
        &["OFFSET", "LENGTH", "KIND", "DEPTH", "FROM", "WHERE"],
        &rows,
    );
    let MapTotals {
        own,
        inherited,
        origin,
        zero,
    } = m.totals;
    t.push_str(&format!(
        "\n{}: own {}, inherited {}, origin {}, zero {}; deleting it frees {}\n",
        m.name.as_deref().unwrap_or("origin"),
        bytes(own),
        bytes(inherited),
        bytes(origin),
        bytes(zero),
        bytes(m.unshared_bytes)
    ));
    t
}
