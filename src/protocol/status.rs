//! The reply to `status`: [`Status`] and its parts (store usage, the devices the
//! daemon serves, background jobs, the NBD server and its exports).
use serde::{Deserialize, Serialize};

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
    /// Every origin of the store (a pool) with its share of the space (`usage` is
    /// the pool's), by id; empty from a daemon that predates pools.
    #[serde(default)]
    pub origins: Vec<super::Origin>,
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
    /// name: `ublk::kernel::feature_names`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_features: Option<u64>,
    /// An unfinished receive: the token `snapctl send --resume` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_resume: Option<String>,
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
    /// The origin it is (`snapshot` `None`) or belongs to, by name; set when the
    /// store has several origins (a pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
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
    /// Why the daemon's new devices copy request data (`--zero-copy off`, a driver
    /// without zero copy, `--workers-per-queue`, ...), on a device whose data path
    /// is copy; absent otherwise and from a daemon that predates the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_reason: Option<String>,
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
