//! `snapctl check`: check a store's metadata, offline (`--store`) or through the daemon.
use crate::{cmd::create::unexpected, output::Output};
use std::path::PathBuf;
use ublk_snapd::{
    client, exit, offline,
    protocol::{Op, Reply},
    report::CheckReport,
};

/// Check a store's metadata.
///
/// With --store: offline, on a store no daemon serves (refused, exit 7, while one
/// does); nothing is written. Without: the daemon checks its store under its lock
/// (I/O waits meanwhile). Exit 0: clean; 1: problems found (printed); 4: corruption
/// prevented opening or walking the store.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check this store offline instead of asking the daemon.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
}

/// Runs the check; returns the exit code (0 clean, 1 problems found).
pub fn run(a: Args, out: &Output) -> anyhow::Result<u8> {
    let (what, r) = match a.store {
        Some(p) => (p.display().to_string(), offline::check(&p)?),
        None => match client::request(&out.socket, Op::Check)? {
            Reply::Checked(r) => ("the daemon's store".to_owned(), r),
            other => return Err(unexpected(&other)),
        },
    };
    out.emit(&r, || human(&what, &r))?;
    Ok(if r.clean {
        exit::OK
    } else {
        exit::CHECK_FAILED
    })
}

fn human(what: &str, r: &CheckReport) -> String {
    let mut t = String::new();
    for e in &r.errors {
        t.push_str(&format!("error: {e}\n"));
    }
    for w in &r.warnings {
        t.push_str(&format!("warning: {w}\n"));
    }
    let verdict = if r.clean {
        "clean".to_owned()
    } else {
        format!("{} errors, {} warnings", r.errors.len(), r.warnings.len())
    };
    t.push_str(&format!(
        "{what}: {verdict} (transaction {}, {} elements, {} metadata blocks, {} data chunks)",
        r.txn_id, r.nr_elements, r.nr_meta_blocks, r.nr_data_chunks
    ));
    t
}
