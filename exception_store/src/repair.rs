//! `check --repair`: finish offline what can be finished safely; refuse anything that
//! could lose data.
//!
//! [`repair`] opens the store, runs [`Store::check`], and then:
//! - **Corruption** that prevents opening or walking the store (a bad checksum, a
//!   block out of order, a chunk referenced twice ...): the `Err` of the open or the
//!   check is returned; nothing is written.
//! - **Errors** in the check's report (an element naming a dead label, a thin ghost
//!   with no pass pending, ...): [`Outcome::Refused`]; nothing is written. Repair never
//!   guesses which of two conflicting records is right.
//! - **A label index that disagrees with the elements**, when that is the only error:
//!   the index is derived data (the elements are authoritative), so repair builds a
//!   new one from the elements and commits it before anything else
//!   ([`Repair::rebuild_label_index`]). Passes never run on a wrong index.
//! - **Unfinished background passes** (delete, cleanup, merge): their cursors are
//!   persistent (the job table), and the daemon finishes them by itself once it runs.
//!   Repair runs them to their end now, with the daemon's own code
//!   ([`Store::run_background`]), committing every [`REPAIR_BATCH`] address visits,
//!   so an interrupted repair resumes like an interrupted pass. Delete and cleanup
//!   passes change metadata only. A merge also writes the merged snapshot's data over
//!   the origin, so it needs the origin device: without one, repair fails with
//!   [`Error::Invalid`] before writing anything. In a pool, a merge into another
//!   origin needs that origin's device ([`repair_pool`]): without it, repair fails
//!   with [`Error::OriginMissing`] naming the origin, before writing anything.
//! - **Leaked chunks and blocks**: nothing to write. The allocator is not stored; `open`
//!   rebuilds it from the committed trees, so a chunk nothing references is free at
//!   the next open and an offline check never reports a leak.
//! - **Orphaned elements** (a warning: an element no visible version reads) are kept
//!   and reported: if the version tree were damaged, their data could be what it lost.
//!
//! After running passes, repair reopens the store from the device and checks it again
//! ([`Repair::after`]). A dry run stops after the first check and writes nothing; so
//! does a store with nothing to repair.
use crate::{
    check::Report,
    label_index::{count_extent, Counts, LabelIndex},
    tables::JobKind,
    Error, Result, Store, StoreOptions,
};
use blockdev::{
    ids::{Label, TxnId},
    BlockDevice,
};
use std::sync::Arc;

/// Address visits of background work per commit while repairing.
pub const REPAIR_BATCH: usize = 1024;

/// What [`repair`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepairOptions {
    /// Check and plan only; write nothing.
    pub dry_run: bool,
}

/// How a repair ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to repair; nothing was written.
    NothingToDo,
    /// Dry run: [`Repair::passes`] would be finished; nothing was written.
    WouldRepair,
    /// The passes were finished and committed; [`Repair::after`] is the new check.
    Repaired,
    /// The check found errors ([`Repair::before`]); nothing was written.
    Refused,
}

impl Outcome {
    /// `nothing_to_do`, `would_repair`, `repaired` or `refused`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::NothingToDo => "nothing_to_do",
            Outcome::WouldRepair => "would_repair",
            Outcome::Repaired => "repaired",
            Outcome::Refused => "refused",
        }
    }
}

/// An unfinished background pass, as found before repairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// "delete", "cleanup" or "merge".
    pub kind: &'static str,
    /// The deleted or merged label (0 for a cleanup pass).
    pub target: Label,
    /// The next address it would visit.
    pub cursor: u64,
    /// Addresses of the origin (the cursor's end).
    pub total: u64,
}

/// What [`repair`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// How it ended.
    pub outcome: Outcome,
    /// The check of the store as found.
    pub before: Report,
    /// The transaction found.
    pub txn_before: TxnId,
    /// Unfinished passes found (finished unless refused or a dry run).
    pub passes: Vec<Pass>,
    /// The label index disagreed with the elements, and nothing else was wrong: it
    /// is rebuilt (unless a dry run).
    pub rebuild_label_index: bool,
    /// The check of the store reopened after repairing ([`Outcome::Repaired`] only).
    pub after: Option<Report>,
    /// The last committed transaction when repair returned.
    pub txn_after: TxnId,
}

impl Repair {
    /// The check that describes the store as it is now: `after` if repaired, else
    /// `before`.
    pub fn current(&self) -> &Report {
        self.after.as_ref().unwrap_or(&self.before)
    }

    /// Whether the store is now clean (neither errors nor warnings).
    pub fn is_clean(&self) -> bool {
        self.outcome != Outcome::Refused && self.current().is_clean()
    }
}

/// The devices of a pool's origins other than the first, by origin id.
pub type OtherOrigins = [(crate::OriginId, Arc<dyn BlockDevice>)];

fn open(
    dev: &Arc<dyn BlockDevice>,
    origin: &Option<Arc<dyn BlockDevice>>,
    others: &OtherOrigins,
) -> Result<Store> {
    let mut s = match origin {
        Some(o) => Store::open(o.clone(), dev.clone(), StoreOptions::default())?,
        None => Store::open_offline(dev.clone())?,
    };
    for (k, d) in others {
        s.attach_origin(*k, d.clone())?;
    }
    Ok(s)
}

/// Check the store on `dev` and finish what can be finished safely (see the module
/// documentation). `origin` is needed only to finish a merge; without it the store is
/// opened as [`Store::open_offline`] does. The caller must make sure nothing else uses
/// the devices (the daemon's store lock).
pub fn repair(
    dev: Arc<dyn BlockDevice>,
    origin: Option<Arc<dyn BlockDevice>>,
    opts: RepairOptions,
) -> Result<Repair> {
    repair_pool(dev, origin, &[], opts)
}

/// [`repair`] of a pool: `others` are the devices of its other origins (those the
/// caller could open), attached after the open; an unfinished merge into an origin
/// not among them (nor the first, without `origin`) is refused before anything is
/// written.
pub fn repair_pool(
    dev: Arc<dyn BlockDevice>,
    origin: Option<Arc<dyn BlockDevice>>,
    others: &OtherOrigins,
    opts: RepairOptions,
) -> Result<Repair> {
    let mut s = open(&dev, &origin, others)?;
    let before = s.check()?;
    let txn_before = s.txn_id();
    let total = s.size().div_ceil(s.chunk_size());
    let passes: Vec<Pass> = s
        .jobs
        .values()
        .map(|j| match crate::store::addr_origin(j.cursor) {
            // a merge into another origin of a pool: its cursor is in that origin's
            // addresses (`pool_addr`)
            k if k != 0 && j.kind == JobKind::Merge => {
                let total = s
                    .dev_size(crate::Dev::Origin(k))
                    .unwrap_or(0)
                    .div_ceil(s.chunk_size());
                Pass {
                    kind: j.kind.name(),
                    target: j.target,
                    cursor: crate::store::addr_chunk(j.cursor).min(total),
                    total,
                }
            }
            _ => Pass {
                kind: j.kind.name(),
                target: j.target,
                cursor: j.cursor.min(total),
                total,
            },
        })
        .collect();
    let index_only =
        !before.errors.is_empty() && before.errors.len() as u64 == before.nr_index_errors;
    let mut rep = Repair {
        outcome: Outcome::NothingToDo,
        before,
        txn_before,
        passes,
        rebuild_label_index: index_only,
        after: None,
        txn_after: txn_before,
    };
    if !rep.before.errors.is_empty() && !index_only {
        rep.outcome = Outcome::Refused;
        return Ok(rep);
    }
    if rep.passes.is_empty() && !index_only {
        return Ok(rep);
    }
    if opts.dry_run {
        rep.outcome = Outcome::WouldRepair;
        return Ok(rep);
    }
    for j in s.jobs.values().filter(|j| j.kind == JobKind::Merge) {
        match crate::store::addr_origin(j.cursor) {
            0 if origin.is_none() => {
                return Err(Error::Invalid(
                    "an unfinished merge writes the merged snapshot's data over the origin: \
                     repairing it needs the origin device"
                        .into(),
                ))
            }
            0 => {}
            k if !others.iter().any(|(o, _)| *o == k) => {
                let (name, path) = s
                    .origins()
                    .into_iter()
                    .find(|o| o.id == k)
                    .map_or((format!("#{k}"), String::new()), |o| (o.name, o.path));
                return Err(Error::OriginMissing(format!(
                    "an unfinished merge writes over origin {name:?}: repairing it needs \
                     that origin's device ({path}), which is not there"
                )));
            }
            _ => {}
        }
    }
    if index_only {
        s.rebuild_label_index()?;
        s.commit()?;
    }
    s.run_background(REPAIR_BATCH)?;
    // what repair leaves is checked below: it counts as a clean stop
    s.commit_marked_clean(false)?;
    drop(s);
    let mut s = open(&dev, &origin, others)?;
    rep.after = Some(s.check()?);
    rep.txn_after = s.txn_id();
    rep.outcome = Outcome::Repaired;
    Ok(rep)
}

impl Store {
    /// Replace the label index by one counted from the elements. The old index's
    /// blocks are no longer referenced: free at the next open.
    pub(crate) fn rebuild_label_index(&mut self) -> Result<()> {
        let mut counts = Counts::new();
        self.elements
            .walk(&mut self.cache, &mut |_| Ok(()), &mut |k, v| {
                count_extent(&mut counts, k.label, k.addr.0, v.len as u64);
                Ok(())
            })?;
        self.label_index = LabelIndex::build(&mut self.cache, &mut self.alloc, &counts)?;
        self.changed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
