//! The operations a request carries: [`Op`], one per control command, and the
//! [`PrunePolicy`] `prune` takes. Serialized flattened into a
//! [`Request`](super::Request), tagged by `op`.
use serde::{Deserialize, Serialize};

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
        /// Freeze the filesystems mounted on the device it captures around it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        freeze: bool,
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
        /// In a pool: only this origin's snapshots, and the groups with a member
        /// in it (each still goes whole); absent: every origin's (an older client
        /// sends none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
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
        /// The origin (by name) the map is of; absent: the first origin, or the one
        /// an `ORIGIN@NAME` names (an older client sends none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,

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
        /// The origin (by name) of both sides; absent: the first origin, or the one
        /// an `ORIGIN@NAME` names (an older client sends none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,

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
    /// Export a snapshot (or the origin, `name` = "-" or "origin") over NBD.
    Export {
        /// The snapshot, or "-" / "origin" for the origin.
        name: String,
        /// The origin (by name) exported (`name` "-"), or whose snapshot `name`
        /// is; absent: the first origin, or the one an `ORIGIN@NAME` names (an
        /// older client sends none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,

        /// `name` is a snapshot's even when it reads "origin".
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        snapshot: bool,
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
    /// Grow an origin to `size` bytes (default: its file's or block device's size
    /// now), in one commit, and tell the kernel (`UBLK_F_UPDATE_SIZE`).
    ResizeOrigin {
        /// The new size in bytes; absent: the origin device's size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// The origin (by name); absent: the first (an older client sends none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
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
        /// The origin (by name) the stream is applied to (its base is one of this
        /// origin's snapshots; the snapshot lands in it); absent: the first (an
        /// older client sends none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    /// A group snapshot: snapshot `name` of every origin of `origins`, at one
    /// instant (a write fence across them) and in one commit.
    CreateGroup {
        /// The name every member takes (`ORIGIN@NAME`).
        name: String,
        /// The origins, by name (two or more).
        origins: Vec<String>,
        /// Freeze the filesystems mounted on the origins' devices around it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        freeze: bool,
    },
    /// Add an origin to the store (a pool) and serve it as its own device.
    OriginAdd {
        /// Its name (the `ORIGIN` of `ORIGIN@NAME`; no `@`).
        name: String,
        /// Its file or block device; a stable path (`/dev/disk/by-id/...`) is what
        /// the daemon opens it by at every start.
        device: String,
    },
    /// Remove an origin (never the store's first): refused while it has snapshots,
    /// unless `with_snapshots` (then they are deleted with it).
    OriginRemove {
        /// Which.
        name: String,
        /// Delete its snapshots too.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        with_snapshots: bool,
    },
    /// The store's origins.
    OriginList,
    /// Set an origin's quota: the most store space its snapshots may hold (writes
    /// that would need more fail with ENOSPC, or, under `delete-oldest`, delete its
    /// own oldest snapshots first).
    OriginQuota {
        /// Which origin.
        name: String,
        /// The quota in bytes, rounded up to whole chunks; 0 for none.
        quota_bytes: u64,
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
