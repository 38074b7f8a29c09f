//! `snapctl check`: check a store's metadata, offline (`--store`) or through the
//! daemon; `--repair` finishes unfinished background passes offline.
use crate::{cmd::create::unexpected, output::Output};
use std::path::PathBuf;
use ublk_snapd::{
    client, exit, offline,
    protocol::{CheckReport, Op, RepairReport, Reply},
    Error,
};

/// Check a store's metadata.
///
/// With --store: offline, on a store no daemon serves (refused, exit 7, while one
/// does); nothing is written. Without: the daemon checks its store under its lock
/// (I/O waits meanwhile). Exit 0: clean; 1: problems found (printed); 4: corruption
/// prevented opening or walking the store.
///
/// --repair (offline only, with --store) finishes unfinished delete, cleanup and merge
/// passes, as the daemon would, and checks again; leaked chunks need nothing (free
/// space is rebuilt from the trees at every open); a label index that disagrees with
/// the elements, when nothing else is wrong, is rebuilt from them. It refuses, writing
/// nothing, if the check finds other errors (exit 1) or corruption (exit 4). Exit 0:
/// the store is clean now.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check this store offline instead of asking the daemon.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// Finish unfinished background passes (offline: needs --store); refuse if the
    /// check finds errors.
    #[arg(long)]
    repair: bool,
    /// With --repair: say what would be done, write nothing.
    #[arg(long, requires = "repair")]
    dry_run: bool,
    /// With --repair: the origin, needed only to finish a merge (it writes the
    /// merged data over the origin; a block device must not be mounted).
    #[arg(long, value_name = "PATH", requires = "repair")]
    origin: Option<PathBuf>,
}

/// Runs the check; returns the exit code (0 clean, 1 problems found).
pub fn run(a: Args, out: &Output) -> anyhow::Result<u8> {
    if a.repair {
        let Some(store) = a.store else {
            return Err(Error::Invalid(
                "--repair works offline only: stop ublk-snapd and give --store PATH \
                 (a running daemon finishes its passes by itself)"
                    .into(),
            )
            .into());
        };
        let r = offline::repair(&offline::RepairOptions {
            store: store.clone(),
            origin: a.origin,
            dry_run: a.dry_run,
        })?;
        out.emit(&r, || human_repair(&store.display().to_string(), &r))?;
        if r.dry_run && r.passes.iter().any(|p| p.needs_origin) {
            // exit as the real run would: it refuses without the origin
            eprintln!("snapctl: the repair needs --origin PATH to finish the merge");
            return Ok(exit::USAGE);
        }
        return Ok(if r.clean {
            exit::OK
        } else {
            exit::CHECK_FAILED
        });
    }
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

fn human_repair(what: &str, r: &RepairReport) -> String {
    let mut t = human(what, &r.before);
    t.push('\n');
    if r.outcome == "refused" {
        t.push_str("repair refused: the check found errors; nothing written\n");
        return t;
    }
    let done = match r.outcome.as_str() {
        "repaired" => "finished",
        _ => "would finish",
    };
    for p in &r.passes {
        let label = match p.kind.as_str() {
            "cleanup" => String::new(),
            _ => format!(" of label {}", p.target),
        };
        let note = if p.needs_origin {
            " (needs --origin: it writes the origin)"
        } else {
            ""
        };
        t.push_str(&format!(
            "unfinished {} pass{label} at address {} of {}: {done}{note}\n",
            p.kind, p.cursor, p.total
        ));
    }
    if r.passes.is_empty() {
        t.push_str("unfinished passes: none\n");
    }
    if r.rebuild_label_index {
        let done = match r.outcome.as_str() {
            "repaired" => "rebuilt",
            _ => "would rebuild",
        };
        t.push_str(&format!(
            "label index disagrees with the elements (derived data): {done} from the elements\n"
        ));
    }
    t.push_str(&format!(
        "leaked chunks: {}, nothing to repair (free space is rebuilt from the trees at every open)\n",
        r.leaked
    ));
    match (&r.after, r.outcome.as_str()) {
        (Some(after), _) => {
            t.push_str(&human(&format!("{what} after repair"), after));
        }
        (None, "would_repair") => t.push_str("dry run: nothing written"),
        _ => t.push_str("nothing to repair; nothing written"),
    }
    t
}
