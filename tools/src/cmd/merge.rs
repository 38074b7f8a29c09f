//! `snapctl merge`: merge a snapshot into the origin, optionally waiting for the copy.
use crate::{
    cmd::create::unexpected,
    output::{duration, Output},
};
use indicatif::{ProgressBar, ProgressStyle};
use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};
use ublk_snapd::{
    client,
    protocol::{Job, Op, Reply},
    Error,
};

/// How often `--wait` asks the daemon for progress.
const POLL: Duration = Duration::from_secs(1);
/// How often `--wait` prints a progress line when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Merge a snapshot into the origin: the origin reads what the snapshot read.
///
/// The snapshot disappears at once and the origin reads its data from then on; the
/// copy onto the origin runs in the background (`snapctl status` shows it). The
/// snapshot must not be active, and the origin must not be mounted (its stale cached
/// metadata would be written over the merged filesystem); mount it again at once.
/// With `--deferred`, a merge asked for while the origin is mounted starts as soon as
/// it is unmounted (or when the daemon shuts down cleanly), as LVM does.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot.
    name: String,
    /// Wait until the copy is finished, showing progress on stderr.
    #[arg(long)]
    wait: bool,
    /// If the origin is in use (mounted), start the merge when it is next closed
    /// instead of refusing.
    #[arg(long)]
    deferred: bool,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let op = Op::Merge {
        name: a.name,
        deferred: a.deferred,
    };
    let (c, deferred) = match client::request(&out.socket, op)? {
        Reply::Merging(c) => (c, false),
        Reply::MergeDeferred(c) => (c, true),
        other => return Err(unexpected(&other)),
    };
    if a.wait {
        wait(out)?;
        return out.emit(&c, || format!("merged snapshot {} into the origin", c.name));
    }
    out.emit(&c, || {
        if deferred {
            format!(
                "merge of snapshot {} deferred: it starts when the origin device is closed \
                 (unmount it) or the daemon shuts down cleanly (snapctl status shows it)",
                c.name
            )
        } else {
            format!(
                "merging snapshot {} into the origin, transaction {} (progress: snapctl status)",
                c.name, c.txn_id
            )
        }
    })
}

/// What `status` says of merges: one deferred (by name), and the running job.
fn merge_state(out: &Output) -> anyhow::Result<(Option<String>, Option<Job>)> {
    match client::request(&out.socket, Op::Status)? {
        Reply::Status(s) if s.failed => Err(Error::Protocol(
            "the store failed during the merge (see the daemon's log); restart the daemon to resume it"
                .into(),
        )
        .into()),
        Reply::Status(s) => Ok((
            s.deferred_merge,
            s.jobs.into_iter().find(|j| j.kind == "merge"),
        )),
        other => Err(unexpected(&other)),
    }
}

fn eta(j: &Job) -> String {
    j.eta_secs
        .map_or_else(|| "ETA unknown".into(), |s| format!("ETA {}", duration(s)))
}

/// Poll `status` until no merge job is left.
fn wait(out: &Output) -> anyhow::Result<()> {
    let bar = (std::io::stderr().is_terminal() && !out.json()).then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("merge [{bar:40}] {pos}/{len} chunks, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    let mut last_line: Option<Instant> = None;
    let mut said_deferred = false;
    loop {
        let j = match merge_state(out)? {
            (Some(name), _) => {
                if !said_deferred {
                    eprintln!("merge of {name}: waiting for the origin device to be closed");
                    said_deferred = true;
                }
                std::thread::sleep(POLL);
                continue;
            }
            (None, Some(j)) => j,
            (None, None) => break,
        };
        match &bar {
            Some(b) => {
                b.set_length(j.total);
                b.set_position(j.cursor);
                b.set_message(eta(&j));
            }
            None if last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) => {
                eprintln!("merge: {}/{} chunks, {}", j.cursor, j.total, eta(&j));
                last_line = Some(Instant::now());
            }
            None => {}
        }
        std::thread::sleep(POLL);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}
