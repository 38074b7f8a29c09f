//! The serializable forms of the store's `check` report and `dump`, shared by the
//! offline tools (`offline`) and the online `check` / `dump` ops of the protocol,
//! so both print the same thing.
use exception_store::{check, dump, repair};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Neither errors nor warnings.
    pub clean: bool,
    /// Problems that make the store unsafe to trust.
    pub errors: Vec<String>,
    /// Wasted space and the like; the data is safe.
    pub warnings: Vec<String>,
    /// Elements seen (per address).
    pub nr_elements: u64,
    /// Metadata blocks seen.
    pub nr_meta_blocks: u64,
    /// Data chunks referenced.
    pub nr_data_chunks: u64,
    /// The transaction checked.
    pub txn_id: u64,
}

impl CheckReport {
    /// From the store's report of transaction `txn_id`.
    pub fn new(r: check::Report, txn_id: u64) -> Self {
        CheckReport {
            clean: r.is_clean(),
            errors: r.errors,
            warnings: r.warnings,
            nr_elements: r.nr_elements,
            nr_meta_blocks: r.nr_meta_blocks,
            nr_data_chunks: r.nr_data_chunks,
            txn_id,
        }
    }
}

/// What `check --repair` found and did (see [`exception_store::repair`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// `nothing_to_do`, `would_repair` (dry run), `repaired`, or `refused` (the check
    /// found errors; nothing was written).
    pub outcome: String,
    /// Nothing was to be written.
    pub dry_run: bool,
    /// The store is clean now (the check after repairing, else the first one).
    pub clean: bool,
    /// Unfinished background passes found (finished when `outcome` is `repaired`).
    pub passes: Vec<RepairPass>,
    /// The label index disagreed with the elements (and nothing else was wrong): it
    /// is rebuilt from them (when `outcome` is `repaired`).
    pub rebuild_label_index: bool,
    /// Leaked data chunks and metadata blocks the check found: 0 after an open (free
    /// space is not stored; `open` rebuilds it from the trees), so never anything to
    /// repair.
    pub leaked: u64,
    /// The check of the store as found.
    pub before: CheckReport,
    /// The check of the store reopened after repairing (`repaired` only).
    pub after: Option<CheckReport>,
}

/// An unfinished background pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairPass {
    /// "delete", "cleanup" or "merge".
    pub kind: String,
    /// The deleted or merged label (0 for cleanup).
    pub target: u32,
    /// The next address it would have visited.
    pub cursor: u64,
    /// Addresses of the origin.
    pub total: u64,
    /// A merge, with no origin given: it cannot be finished without one.
    pub needs_origin: bool,
}

impl RepairReport {
    /// From the store's repair; `dry_run` and whether an origin was given, as asked.
    pub fn new(r: repair::Repair, dry_run: bool, have_origin: bool) -> Self {
        let clean = r.is_clean();
        RepairReport {
            outcome: r.outcome.name().to_owned(),
            dry_run,
            clean,
            passes: r
                .passes
                .iter()
                .map(|p| RepairPass {
                    kind: p.kind.to_owned(),
                    target: p.target.0,
                    cursor: p.cursor,
                    total: p.total,
                    needs_origin: p.kind == "merge" && !have_origin,
                })
                .collect(),
            rebuild_label_index: r.rebuild_label_index,
            leaked: r.before.nr_leaked_chunks + r.before.nr_leaked_blocks,
            before: CheckReport::new(r.before, r.txn_before.0),
            after: r.after.map(|a| CheckReport::new(a, r.txn_after.0)),
        }
    }
}

/// The store's metadata, as `dump` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpReport {
    /// Superblock fields (transaction, chunk size, sizes, counters).
    pub superblock: BTreeMap<String, u64>,
    /// The version tree; a snapshot's `nr_elements` is the data it holds itself.
    pub versions: Vec<Version>,
    /// Background jobs.
    pub jobs: Vec<DumpJob>,
    /// Every element, when asked for.
    pub elements: Option<Vec<Element>>,
}

/// One version of the version tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Its label.
    pub label: u32,
    /// Its parent's label.
    pub parent: u32,
    /// A ghost (a deleted or merged version still needed by its children).
    pub ghost: bool,
    /// The snapshot that reads through it.
    pub snapshot: Option<String>,
    /// Addresses where it has an element of its own (its own usage, in chunks).
    pub nr_elements: u64,
}

/// A background job as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpJob {
    /// "merge", "delete" or "cleanup".
    pub kind: String,
    /// The label it works on.
    pub target: u32,
    /// The next address it visits.
    pub cursor: u64,
}

/// One element: at `addr`, version `label` reads `chunk` (`None`: a hole, zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element {
    /// The origin chunk address.
    pub addr: u64,
    /// The version.
    pub label: u32,
    /// The store chunk, or `None` for a hole.
    pub chunk: Option<u64>,
}

impl From<dump::Dump> for DumpReport {
    fn from(d: dump::Dump) -> Self {
        DumpReport {
            superblock: d
                .superblock
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            versions: d
                .versions
                .into_iter()
                .map(|v| Version {
                    label: v.label,
                    parent: v.parent,
                    ghost: v.ghost,
                    snapshot: v.snapshot,
                    nr_elements: v.nr_elements,
                })
                .collect(),
            jobs: d
                .jobs
                .into_iter()
                .map(|(kind, target, cursor)| DumpJob {
                    kind,
                    target,
                    cursor,
                })
                .collect(),
            elements: d.elements.map(|e| {
                e.into_iter()
                    .map(|(addr, label, chunk)| Element { addr, label, chunk })
                    .collect()
            }),
        }
    }
}
