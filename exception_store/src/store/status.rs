//! What the store reports about itself: usage, snapshots, background work.
use super::Store;
use blockdev::ids::{Label, SnapId, TxnId};

/// One snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapInfo {
    /// Stable id.
    pub id: SnapId,
    /// Unique name.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Name of the snapshot it was taken of (`None`: the origin).
    pub parent: Option<String>,
    /// Never pruned.
    pub hold: bool,
    /// The label it reads through now (for `dump` and debugging).
    pub label: Label,
    /// Its identity across stores (see `tables::SnapRec::guid`).
    pub guid: [u8; 16],
    /// Its device size in bytes (the origin's when it was taken).
    pub size: u64,
    /// The origin it belongs to (see [`OriginInfo`]).
    pub origin: u32,
    /// The group snapshot it is a member of (0: none).
    pub group: u32,
}

/// One origin of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginInfo {
    /// Stable id (0: the store's first origin).
    pub id: u32,
    /// Unique name.
    pub name: String,
    /// Size in bytes now.
    pub size: u64,
    /// The device path it was added with (empty: given to the daemon at start).
    pub path: String,
    /// Most chunks its snapshots may hold (0: no quota).
    pub quota: u64,
    /// Chunks its snapshots hold now (`store::quota`).
    pub used: u64,
    /// Being removed (its snapshots' space is being freed).
    pub removing: bool,
}

/// One background job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// "delete", "cleanup" or "merge".
    pub kind: &'static str,
    /// Next address it will visit.
    pub cursor: u64,
    /// Addresses in the origin (the cursor's end).
    pub total: u64,
}

/// A summary of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Last committed transaction.
    pub txn_id: TxnId,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Origin size in bytes.
    pub origin_len: u64,
    /// Chunks on the store device.
    pub nr_chunks: u64,
    /// Chunks in use (data and metadata).
    pub nr_used: u64,
    /// Chunks holding metadata.
    pub nr_meta_chunks: u64,
    /// Chunks free.
    pub nr_free: u64,
    /// Live snapshots.
    pub nr_snapshots: usize,
    /// Versions in the tree (snapshots, ghosts, the origin).
    pub nr_versions: usize,
    /// Background work.
    pub jobs: Vec<JobInfo>,
    /// A metadata write failed; changes are refused until reopened.
    pub failed: bool,
    /// Metadata cache: nodes cached.
    pub cache_nodes: usize,
    /// Metadata cache: hits and misses since open.
    pub cache_hits: u64,
    /// Metadata cache misses since open.
    pub cache_misses: u64,
    /// What a full store does.
    pub space_policy: super::SpacePolicy,
    /// Chunks kept free by the min-free guard.
    pub min_free_chunks: u64,
    /// Snapshots deleted by the space policy since open.
    pub auto_deleted: u64,
    /// The store was shut down cleanly before this open (false after a crash, a
    /// `kill -9` or a power loss: then it opened at its last commit).
    pub last_shutdown_clean: bool,
}

impl Store {
    /// A summary of the store.
    pub fn status(&self) -> Status {
        let cs = self.cache.stats();
        let total = self.sb.origin_len.div_ceil(self.chunk_size);
        Status {
            txn_id: self.sb.txn_id,
            chunk_size: self.chunk_size,
            origin_len: self.sb.origin_len,
            nr_chunks: self.alloc.nr_chunks(),
            nr_used: self.alloc.nr_used(),
            nr_meta_chunks: self.alloc.nr_meta_chunks(),
            nr_free: self.alloc.nr_free(),
            nr_snapshots: self.snaps.len(),
            nr_versions: self.vt.len(),
            jobs: self
                .jobs
                .values()
                .map(|j| JobInfo {
                    kind: j.kind.name(),
                    cursor: j.cursor.min(total),
                    total,
                })
                .collect(),
            failed: self.failed,
            cache_nodes: cs.nr_cached,
            cache_hits: cs.hits,
            cache_misses: cs.misses,
            space_policy: self.opts.space_policy,
            min_free_chunks: self.opts.min_free_chunks,
            auto_deleted: self.auto_deleted,
            last_shutdown_clean: self.opened_clean,
        }
    }
}
