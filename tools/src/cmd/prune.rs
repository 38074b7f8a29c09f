//! `snapctl prune`: delete the snapshots a retention policy does not keep.
use crate::{
    cmd::create::unexpected,
    output::{utc, Output},
};
use ublk_snapd::{
    client,
    protocol::{Op, PrunePolicy, Reply},
    Error,
};

/// Delete the snapshots a retention policy does not keep.
///
/// A snapshot is kept if any rule keeps it: the newest N (--keep-last), or the
/// newest of each of the last N hours, days, weeks (Monday to Sunday) or months, in
/// UTC, by the creation time stored in the store. Held snapshots are never deleted
/// and do not count; active ones are skipped. At least one rule is required. The
/// daemon computes and deletes under one lock, so overlapping runs are safe.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Keep the newest N.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_last: usize,
    /// Keep the newest of each of the last N hours.
    #[arg(long, value_name = "N", default_value_t = 0)]
    hourly: usize,
    /// Keep the newest of each of the last N days.
    #[arg(long, value_name = "N", default_value_t = 0)]
    daily: usize,
    /// Keep the newest of each of the last N weeks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    weekly: usize,
    /// Keep the newest of each of the last N months.
    #[arg(long, value_name = "N", default_value_t = 0)]
    monthly: usize,
    /// Consider only snapshots whose name starts with PREFIX (others are kept).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// In a pool: consider only this origin's snapshots, and the group snapshots
    /// with a member in it (a group still goes whole); default: every origin's,
    /// each origin's own snapshots and the groups pruned as separate series.
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Args {
    /// The policy; refused (usage error) without any rule.
    pub fn policy(&self) -> Result<PrunePolicy, Error> {
        let p = PrunePolicy {
            keep_last: self.keep_last,
            hourly: self.hourly,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
        };
        if p.is_empty() {
            return Err(Error::Invalid(
                "give at least one rule: --keep-last, --hourly, --daily, --weekly or --monthly"
                    .into(),
            ));
        }
        Ok(p)
    }
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let policy = a.policy()?;
    let op = Op::Prune {
        policy,
        prefix: a.prefix,
        dry_run: a.dry_run,
        origin: a.origin,
    };
    match client::request(&out.socket, op)? {
        Reply::Pruned(p) => out.emit(&p, || {
            let verb = if p.dry_run { "would delete" } else { "deleted" };
            let mut t = String::new();
            for d in &p.deleted {
                t.push_str(&format!("{verb} {} (created {})\n", d.name, utc(d.created)));
            }
            for s in &p.skipped {
                t.push_str(&format!("skipped {}: {}\n", s.name, s.reason));
            }
            t.push_str(&format!(
                "{} {}, {} kept, {} skipped{}",
                p.deleted.len(),
                verb,
                p.kept,
                p.skipped.len(),
                if p.dry_run {
                    " (dry run)".to_owned()
                } else {
                    format!(", transaction {}", p.txn_id)
                }
            ));
            t
        }),
        other => Err(unexpected(&other)),
    }
}
