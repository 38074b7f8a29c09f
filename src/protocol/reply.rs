//! What a request gets back: [`Reply`], one variant per op plus `error`, and the
//! plain reply bodies of the ops that change or list snapshots. Every body is part
//! of the wire: fields are only ever added (see the module documentation of
//! [`protocol`](super)).
use super::{
    inspect::{DiffReport, MapReport},
    report::{CheckReport, DumpReport},
    ErrorReply, ExportEntry, Status,
};
use exception_store::{Grown, OriginGrown};
use serde::{Deserialize, Serialize};

/// The outcomes, one per op plus `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// `create` succeeded.
    Created(Created),
    /// `delete` succeeded.
    Deleted(Changed),
    /// `list`.
    List(List),
    /// `status`.
    Status(Status),
    /// `send` started: the stream follows this line.
    Sending(Sending),
    /// `receive` finished.
    Received(Received),
    /// `activate` succeeded (or the snapshot was active already).
    Activated(Activated),
    /// `deactivate` succeeded.
    Deactivated(Changed),
    /// `merge` started (the snapshot is gone; the copy runs in the background).
    Merging(Changed),
    /// `merge --deferred` while the origin is in use: the merge starts when the origin
    /// device is next closed (see `Status::deferred_merge`).
    MergeDeferred(Changed),
    /// `hold` succeeded.
    Held(Changed),
    /// `release` succeeded.
    Released(Changed),
    /// `prune` ran (or, with `dry_run`, would run).
    Pruned(Pruned),
    /// `check`.
    Checked(CheckReport),
    /// `dump`.
    Dump(DumpReport),
    /// Reply to `map`.
    Map(MapReport),
    /// Reply to `diff`.
    Diff(DiffReport),
    /// `export` succeeded (or the same export existed already).
    Exported(ExportEntry),
    /// `unexport` succeeded.
    Unexported(ExportEntry),
    /// `grow_store` succeeded.
    GrownStore(GrownStore),
    /// `resize_origin` succeeded.
    ResizedOrigin(ResizedOrigin),
    /// `create_group` succeeded.
    GroupCreated(GroupCreated),
    /// `origin_add` succeeded.
    OriginAdded(Origin),
    /// `origin_remove` succeeded (or, with snapshots, is finishing).
    OriginRemoved(OriginGone),
    /// `origin_list`.
    Origins(Origins),
    /// `origin_quota` succeeded: the origin as it is now.
    OriginQuota(Origin),
    /// The request failed.
    Error(ErrorReply),
}

/// A group snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    /// The group's id.
    pub group: u32,
    /// The name its members share.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Its members, `ORIGIN@NAME`, by origin id.
    pub members: Vec<String>,
    /// Transaction id after the change (one commit for every member).
    pub txn_id: u64,
    /// The mount points frozen around it (`--freeze`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen: Vec<String>,
}

/// One origin of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Stable id (0: the store's first).
    pub id: u32,
    /// Its name (the `ORIGIN` of `ORIGIN@NAME`).
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// The file or device it is opened by (the first origin's is given at start).
    pub path: String,
    /// Its block device, `/dev/ublkbN`, while served.
    pub device: Option<String>,
    /// Its snapshots.
    pub snapshots: usize,
    /// Store space its snapshots hold, in bytes (whole chunks: copy-outs of its old
    /// data and writes to its snapshots; metadata is the pool's).
    #[serde(default)]
    pub used_bytes: u64,
    /// Most store space its snapshots may hold, in bytes (0: no quota).
    #[serde(default)]
    pub quota_bytes: u64,
    /// "served" (its device is up), "idle" (the daemon's devices have not started),
    /// "removing", or why it is not served ("missing: ...", "no device: ...").
    pub state: String,
}

/// An origin removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginGone {
    /// Its name.
    pub name: String,
    /// Gone now (false: its snapshots' space is being freed; it goes after that).
    pub removed: bool,
    /// Transaction id after the change.
    pub txn_id: u64,
}

/// The store's origins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origins {
    /// The store's transaction id.
    pub txn_id: u64,
    /// By id.
    pub origins: Vec<Origin>,
}

/// A new snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// Its stable id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Creation time, seconds since the epoch (as stored).
    pub created: u64,
    /// The snapshot it was taken of (`None`: the origin).
    pub parent: Option<String>,
    /// Transaction id after the change.
    pub txn_id: u64,
    /// The mount points frozen around it (`create --freeze`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen: Vec<String>,
}

/// A change to one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The snapshot.
    pub name: String,
    /// Transaction id after the change.
    pub txn_id: u64,
}

/// An active snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    /// The snapshot.
    pub name: String,
    /// Its block device, `/dev/ublkbN`.
    pub device: String,
    /// The store's transaction id.
    pub txn_id: u64,
}

/// Every snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    /// The store's transaction id.
    pub txn_id: u64,
    /// In creation order.
    pub snapshots: Vec<Snapshot>,
}

/// One snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Stable id.
    pub id: u32,
    /// Unique name.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// The snapshot it was taken of (`None`: the origin).
    pub parent: Option<String>,
    /// Never pruned.
    pub hold: bool,
    /// Its block device while active.
    pub device: Option<String>,
    /// Identity across stores (32 hex digits; a received snapshot has its source's).
    #[serde(default)]
    pub guid: String,
    /// Device size in bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// Its NBD exports' names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<String>,
    /// Its origin's name, in a store of several origins (then it is named
    /// `ORIGIN@NAME`); absent with one origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The group snapshot it is a member of (its id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
}

/// A send that started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    /// B.
    pub name: String,
    /// A, for an incremental.
    pub from: Option<String>,
    /// Device bytes the stream covers (data and zeros; progress' total).
    pub covers: u64,
}

/// A receive that finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The snapshot now on this store.
    pub name: String,
    /// Its id.
    pub id: u32,
    /// Stream bytes read.
    pub bytes: u64,
    /// What `force` did.
    #[serde(default)]
    pub forced: Vec<String>,
    /// Transaction id after it.
    pub txn_id: u64,
}

/// What `prune` deleted (or would delete) and what it skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Nothing was deleted: this is what would be.
    pub dry_run: bool,
    /// Deleted (or to be deleted), oldest first.
    pub deleted: Vec<PrunedSnapshot>,
    /// Snapshots the policy did not keep but that were left alone, and held ones.
    pub skipped: Vec<Skipped>,
    /// Snapshots considered and kept by the policy.
    pub kept: usize,
    /// Transaction id after the change.
    pub txn_id: u64,
}

/// A snapshot `prune` deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedSnapshot {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its creation time, seconds since the epoch.
    pub created: u64,
}

/// A snapshot `prune` left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Its name.
    pub name: String,
    /// "held", or "active as /dev/ublkbN".
    pub reason: String,
}

/// What `grow-store` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrownStore {
    /// The store's length before, in bytes.
    pub old_bytes: u64,
    /// Its length now (the device's size rounded down to whole chunks).
    pub new_bytes: u64,
    /// Chunks added, all free.
    pub added_chunks: u64,
    /// Chunks free now.
    pub nr_free: u64,
    /// The new part: "preallocated", "sparse", or "sparse (why)" when the filesystem
    /// cannot preallocate.
    pub storage: String,
    /// Transaction id of the commit that recorded the new length.
    pub txn_id: u64,
}

impl GrownStore {
    /// From what the store did, with `nr_free` chunks free after it.
    pub fn new(g: &Grown, nr_free: u64) -> Self {
        GrownStore {
            old_bytes: g.old_len,
            new_bytes: g.new_len,
            added_chunks: g.added_chunks,
            nr_free,
            storage: g.preallocation.describe(),
            txn_id: g.txn_id.0,
        }
    }
}

/// What `resize-origin` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizedOrigin {
    /// The origin's size before, in bytes.
    pub old_bytes: u64,
    /// Its size now.
    pub new_bytes: u64,
    /// Transaction id of the commit that recorded it.
    pub txn_id: u64,
    /// The origin's ublk device, resized in the kernel; `None` when none runs
    /// (offline, or a daemon without devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl ResizedOrigin {
    /// From what the store did, with the origin's ublk device if one was resized.
    pub fn new(g: &OriginGrown, device: Option<String>) -> Self {
        ResizedOrigin {
            old_bytes: g.old_len,
            new_bytes: g.new_len,
            txn_id: g.txn_id.0,
            device,
        }
    }
}
