//! The control protocol, version [`PROTOCOL_VERSION`]: JSON lines over a Unix socket.
//!
//! A client sends one [`Request`] per line (at most [`MAX_REQUEST_BYTES`] bytes with
//! its newline, within [`REQUEST_READ_TIMEOUT`] of connecting or of the previous
//! reply) and gets one [`Response`] line back. A connection may carry any number of
//! requests. Replies to changes carry the store's transaction id (`txn_id`) after
//! the change, which is durable when the reply is sent.
//!
//! ```text
//! -> {"version":1,"op":"create","name":"before-upgrade"}
//! <- {"version":1,"created":{"id":1,"name":"before-upgrade","created":1700000000,"parent":null,"txn_id":7}}
//! -> {"version":1,"op":"activate","name":"nope"}
//! <- {"version":1,"error":{"code":"no_such_snapshot","message":"no snapshot named \"nope\""}}
//! ```
//!
//! A line that is not JSON, lacks `version`, names another version or an unknown
//! `op` gets an `error` reply (`bad_request`, `unsupported_version`) and the
//! connection stays open; a line over the size limit gets `too_large` and the
//! connection is closed (the rest of the line cannot be told from the next request).
//!
//! # Compatibility
//! New ops and new reply fields may be added within a version; clients ignore
//! fields they do not know. Removing or changing a field needs a new version.
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The protocol version this library speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line, newline included.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest reply line a client accepts.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// How long the daemon waits for (the rest of) a request line.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the daemon lets one request run before answering `timeout` (the
/// operation itself may still complete; `list` or `status` tells).
pub const REQUEST_HANDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request: the version and the operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    /// A request of this library's version.
    pub fn new(op: Op) -> Self {
        Request {
            version: PROTOCOL_VERSION,
            op,
        }
    }
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create snapshot `name` of the origin, or of snapshot `from`.
    Create {
        /// The new snapshot's name (unique).
        name: String,
        /// Take it of this snapshot instead of the origin.
        #[serde(default)]
        from: Option<String>,
    },
    /// Delete a snapshot (must not be active).
    Delete {
        /// Which.
        name: String,
    },
    /// List the snapshots.
    List,
    /// Store and daemon status.
    Status,
    /// Give a snapshot a block device.
    Activate {
        /// Which.
        name: String,
    },
    /// Remove a snapshot's block device.
    Deactivate {
        /// Which.
        name: String,
    },
    /// Start merging a snapshot (inactive) into the origin; the snapshot disappears at
    /// once and the copy runs in the background (a `merge` job in `status`).
    Merge {
        /// Which.
        name: String,
        /// When the origin device is in use (a mounted filesystem), start the merge
        /// when it is next closed (or at a clean shutdown) instead of refusing.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deferred: bool,
    },
    /// Mark a snapshot held: `prune` and the space policy never delete it.
    Hold {
        /// Which.
        name: String,
    },
    /// Clear a snapshot's hold.
    Release {
        /// Which.
        name: String,
    },
    /// Delete the snapshots a retention policy does not keep (never held or active ones).
    Prune {
        /// The policy (at least one rule).
        policy: PrunePolicy,
        /// Only snapshots whose name starts with this are considered (`None`: all).
        #[serde(default)]
        prefix: Option<String>,
        /// Report what would be deleted, delete nothing.
        #[serde(default)]
        dry_run: bool,
    },
    /// Check the store's metadata (under the store lock; read-only).
    Check,
    /// Dump the store's metadata.
    Dump {
        /// Include every element (can be large).
        #[serde(default)]
        elements: bool,
    },
    /// What a device reads, range by range: own data, inherited from a snapshot, the
    /// origin, zeros (one page: see `next_offset` in the reply).
    Map {
        /// The snapshot; absent for the origin.
        #[serde(default)]
        name: Option<String>,
        /// First byte (default 0).
        #[serde(default)]
        offset: u64,
        /// Bytes (default: to the end).
        #[serde(default)]
        len: Option<u64>,
    },
    /// The ranges where two devices may read differently (one page).
    Diff {
        /// One side; absent for the origin.
        #[serde(default)]
        from: Option<String>,
        /// The other side; absent for the origin.
        #[serde(default)]
        to: Option<String>,
        /// First byte (default 0).
        #[serde(default)]
        offset: u64,
        /// Bytes (default: to the end).
        #[serde(default)]
        len: Option<u64>,
    },
    /// Export a snapshot (or the origin, `name` = "origin") over NBD.
    Export {
        /// The snapshot, or "origin".
        name: String,
        /// Allow writes (default: read-only, writes get EPERM).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        writable: bool,
        /// The export's name (default: `name`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        export: Option<String>,
    },
    /// Remove an NBD export (its connections are closed).
    Unexport {
        /// The export's name.
        export: String,
    },
    /// Take the space the store's file or block device gained (extended with
    /// `truncate` or `lvextend`), in one commit.
    GrowStore {
        /// Leave the new part of a store file sparse instead of preallocating it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sparse: bool,
    },
    /// Grow the origin to `size` bytes (default: its file's or block device's size
    /// now), in one commit, and tell the kernel (`UBLK_F_UPDATE_SIZE`).
    ResizeOrigin {
        /// The new size in bytes; absent: the origin device's size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// Streaming: send snapshot `name` (or, with `from`, what changed since `from`) as
    /// a replication stream. The reply line (`sending`, or an error) is followed by
    /// the raw stream bytes; the daemon then closes the connection.
    Send {
        /// B.
        name: String,
        /// A, for an incremental.
        #[serde(default)]
        from: Option<String>,
        /// A resume token from the receiver's `status`.
        #[serde(default)]
        resume: Option<String>,
    },
    /// Streaming: the request line is followed by a replication stream, then the
    /// client shuts its write side; the daemon applies it and answers one line
    /// (`received`, or an error).
    Receive {
        /// Roll the origin back to the stream's base (or drop an unfinished receive)
        /// instead of refusing.
        #[serde(default)]
        force: bool,
        /// The stream is Ceph's `rbd diff v1` (its from-snapshot names A here).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rbd_diff: bool,
    },
}

impl Op {
    /// Whether the op carries a stream after its line (see [`Op::Send`]).
    pub fn is_streaming(&self) -> bool {
        matches!(self, Op::Send { .. } | Op::Receive { .. })
    }
}

/// A retention policy: how many snapshots each rule keeps (0: the rule is off). A
/// snapshot is kept if any rule keeps it. See `exception_store::retention`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunePolicy {
    /// The newest N.
    #[serde(default)]
    pub keep_last: usize,
    /// The newest of each of the last N hours (UTC).
    #[serde(default)]
    pub hourly: usize,
    /// The newest of each of the last N days (UTC).
    #[serde(default)]
    pub daily: usize,
    /// The newest of each of the last N weeks (Monday to Sunday, UTC).
    #[serde(default)]
    pub weekly: usize,
    /// The newest of each of the last N months (UTC).
    #[serde(default)]
    pub monthly: usize,
}

impl PrunePolicy {
    /// Whether no rule is set (such a policy is refused: it would keep nothing).
    pub fn is_empty(&self) -> bool {
        *self == PrunePolicy::default()
    }
}

/// A reply: the version and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What happened.
    #[serde(flatten)]
    pub reply: Reply,
}

impl Response {
    /// A reply of this library's version.
    pub fn new(reply: Reply) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            reply,
        }
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(Reply::Error(ErrorReply {
            code,
            message: message.into(),
        }))
    }
}

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
    Checked(crate::report::CheckReport),
    /// `dump`.
    Dump(crate::report::DumpReport),
    /// Reply to `map`.
    Map(crate::inspect::MapReport),
    /// Reply to `diff`.
    Diff(crate::inspect::DiffReport),
    /// `export` succeeded (or the same export existed already).
    Exported(ExportEntry),
    /// `unexport` succeeded.
    Unexported(ExportEntry),
    /// `grow_store` succeeded.
    GrownStore(crate::grow::GrownStore),
    /// `resize_origin` succeeded.
    ResizedOrigin(crate::resize::ResizedOrigin),
    /// The request failed.
    Error(ErrorReply),
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
}

/// The NBD part of `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NbdStatus {
    /// Where the daemon listens for NBD clients (`unix:PATH`, `tcp:HOST:PORT`).
    pub listen: Vec<String>,
    /// Every export, by name.
    pub exports: Vec<ExportEntry>,
}

/// An NBD export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEntry {
    /// The export's name (what clients ask for).
    pub export: String,
    /// The snapshot it serves (`None`: the origin).
    pub snapshot: Option<String>,
    /// Whether clients may write.
    pub writable: bool,
    /// Connections open on it now.
    #[serde(default)]
    pub connections: usize,
    /// Where the daemon listens for NBD clients (`unix:PATH`, `tcp:HOST:PORT`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// The store's transaction id.
    pub txn_id: u64,
}

/// Store and daemon status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's pid.
    pub pid: u32,
    /// The origin's path.
    pub origin: String,
    /// The store's path.
    pub store: String,
    /// The origin's block device (`None` before it is started).
    pub origin_device: Option<String>,
    /// The origin's size in bytes now (each snapshot's is in `list`).
    pub size_bytes: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Last committed transaction.
    pub txn_id: u64,
    /// Store space, in chunks.
    pub usage: Usage,
    /// Live snapshots.
    pub nr_snapshots: usize,
    /// Every device the daemon serves, origin first.
    pub devices: Vec<ActiveDevice>,
    /// The NBD server: where it listens, its exports.
    #[serde(default)]
    pub nbd: Box<NbdStatus>,
    /// Background passes and their progress.
    pub jobs: Vec<Job>,
    /// A merge waiting for the origin device to be closed (`merge --deferred`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_merge: Option<String>,
    /// A metadata write failed: the store refuses changes until the daemon restarts.
    pub failed: bool,
    /// What a full store does to origin writes: "fail" or "delete-oldest".
    #[serde(default)]
    pub space_policy: String,
    /// Chunks the min-free guard keeps free.
    #[serde(default)]
    pub min_free_chunks: u64,
    /// Snapshots the space policy deleted since the daemon started.
    #[serde(default)]
    pub auto_deleted: u64,
    /// Writes answered with ENOSPC since the daemon started (the store was full, or
    /// the write would have gone under the min-free guard).
    #[serde(default)]
    pub enospc_writes: u64,
    /// The store had been shut down cleanly when the daemon opened it (false after
    /// a crash, a kill or a power loss: it opened at its last commit).
    #[serde(default)]
    pub last_shutdown_clean: bool,
    /// The ublk driver's feature mask (`UBLK_U_CMD_GET_FEATURES`); `None` when the
    /// driver does not report it (kernels before 6.5) or no device was started. By
    /// name: [`crate::kernel::feature_names`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_features: Option<u64>,
    /// An unfinished receive: the token `snapctl send --resume` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_resume: Option<String>,
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

/// Store space, in chunks of `chunk_size` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Chunks on the store device.
    pub nr_chunks: u64,
    /// In use (data and metadata).
    pub nr_used: u64,
    /// Holding metadata.
    pub nr_meta_chunks: u64,
    /// Free.
    pub nr_free: u64,
}

/// A device the daemon serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveDevice {
    /// `None` for the origin, else the snapshot's name.
    pub snapshot: Option<String>,
    /// `/dev/ublkbN`.
    pub device: String,
    /// How request data moves between the kernel and the daemon: "copy" or
    /// "zero-copy" (empty from a daemon that predates the field).
    #[serde(default)]
    pub data_path: String,
    /// The `UBLK_F_*` flags the device was created with, by name
    /// (`ublk_target::Features::names`).
    #[serde(default)]
    pub features: Vec<String>,
}

/// A background pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// "merge", "delete" or "cleanup".
    pub kind: String,
    /// Addresses (chunks of the origin) visited.
    pub cursor: u64,
    /// Addresses in all.
    pub total: u64,
    /// Recent progress, addresses per second (`None` until measured).
    #[serde(default)]
    pub rate: Option<u64>,
    /// Estimated seconds to completion at that rate.
    #[serde(default)]
    pub eta_secs: Option<u64>,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Its category (stable; scripts match on it).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl ErrorReply {
    /// An error reply's body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

/// Categories of failure. `snapctl` maps each to an exit code (see `docs/cli.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not a known op, or missing fields.
    BadRequest,
    /// The request line is longer than [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// The request did not arrive, or not finish, in time.
    Timeout,
    /// The request's `version` is not [`PROTOCOL_VERSION`].
    UnsupportedVersion,
    /// The peer is neither root nor the daemon's user.
    PermissionDenied,
    /// An argument is invalid (a bad name).
    Invalid,
    /// No such snapshot.
    NoSuchSnapshot,
    /// A snapshot of that name exists.
    Exists,
    /// In use (an active snapshot, background work such as a running merge).
    Busy,
    /// The snapshot is not active.
    NotActive,
    /// The store is full.
    NoSpace,
    /// A device failed.
    Io,
    /// The store's metadata is damaged.
    Corrupt,
    /// Reserved for a later version.
    NotImplemented,
    /// A bug.
    Internal,
}

/// Parse one request line (without its newline). The version is checked before the
/// op, so a request of another version gets `unsupported_version` even when its op
/// is unknown here.
pub fn parse_request(line: &[u8]) -> Result<Request, ErrorReply> {
    let v: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, format!("not JSON: {e}")))?;
    let version = v
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::BadRequest,
                "the request has no numeric \"version\"",
            )
        })?;
    if version != u64::from(PROTOCOL_VERSION) {
        return Err(ErrorReply::new(
            ErrorCode::UnsupportedVersion,
            format!("protocol version {version} is not supported; this daemon speaks {PROTOCOL_VERSION}"),
        ));
    }
    serde_json::from_value(v)
        .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, format!("bad request: {e}")))
}

/// One line of JSON, newline-terminated.
pub fn to_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys, no floats.
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|_| {
        br#"{"version":1,"error":{"code":"internal","message":"unencodable reply"}}"#.to_vec()
    });
    v.push(b'\n');
    v
}
