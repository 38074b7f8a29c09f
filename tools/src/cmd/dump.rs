//! `snapctl dump`: a store's metadata, offline (`--store`) or through the daemon.
use crate::{
    cmd::create::unexpected,
    output::{table, Output},
};
use std::path::PathBuf;
use ublk_snapd::{
    client, offline,
    protocol::{DumpReport, Op, Reply},
};

/// Dump a store's metadata: superblock, versions, jobs (and elements).
///
/// The version tree shows each version's own usage (chunks it holds itself); with
/// --elements, every element is listed too.
///
/// With --store: offline, on a store no daemon serves (refused, exit 7, while one
/// does); nothing is written. Without: through the daemon (the reply is limited to
/// 16 MiB, so prefer --store for --elements on a large store).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dump this store offline instead of asking the daemon.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// Include every element (address, version, chunk).
    #[arg(long)]
    elements: bool,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let d = match a.store {
        Some(p) => offline::dump(&p, a.elements)?,
        None => match client::request(
            &out.socket,
            Op::Dump {
                elements: a.elements,
            },
        )? {
            Reply::Dump(d) => d,
            other => return Err(unexpected(&other)),
        },
    };
    out.emit(&d, || human(&d))
}

fn human(d: &DumpReport) -> String {
    let mut t = String::from("superblock:\n");
    for (k, v) in &d.superblock {
        t.push_str(&format!("  {k:<14} {v}\n"));
    }
    t.push('\n');
    let rows: Vec<Vec<String>> = d
        .versions
        .iter()
        .map(|v| {
            vec![
                v.label.to_string(),
                v.parent.to_string(),
                if v.ghost { "ghost" } else { "-" }.into(),
                v.snapshot.clone().unwrap_or_else(|| "-".into()),
                v.nr_elements.to_string(),
            ]
        })
        .collect();
    t.push_str(&table(
        &["LABEL", "PARENT", "GHOST", "SNAPSHOT", "OWN CHUNKS"],
        &rows,
    ));
    t.push('\n');
    if d.jobs.is_empty() {
        t.push_str("jobs: none\n");
    } else {
        let rows: Vec<Vec<String>> = d
            .jobs
            .iter()
            .map(|j| vec![j.kind.clone(), j.target.to_string(), j.cursor.to_string()])
            .collect();
        t.push_str(&table(&["JOB", "TARGET LABEL", "CURSOR"], &rows));
    }
    if let Some(e) = &d.elements {
        t.push('\n');
        let rows: Vec<Vec<String>> = e
            .iter()
            .map(|e| {
                vec![
                    e.addr.to_string(),
                    e.label.to_string(),
                    e.chunk.map_or_else(|| "hole".into(), |c| c.to_string()),
                ]
            })
            .collect();
        t.push_str(&table(&["ADDR", "LABEL", "CHUNK"], &rows));
    }
    t
}
