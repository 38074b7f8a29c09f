//! The serializable forms of the store's `check` report and `dump`, shared by the
//! offline tools ([`crate::offline`]) and the online `check` / `dump` ops of
//! [`crate::protocol`], so both print the same thing.
use exception_store::{check, dump};
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
