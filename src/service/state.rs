//! The state file: which ublk devices the daemon serves, so that a daemon restarted
//! after a crash (kill -9) takes the same devices back instead of leaving them
//! orphaned. It lives in the state directory (default [`crate::DEFAULT_RUN_DIR`], a
//! tmpfs, so it does not outlive a reboot, nor need to) and is named after the store.
//!
//! It is rewritten (write to a temporary file, rename) whenever the set of devices
//! changes and removed on a clean shutdown; so its presence at startup means the
//! previous daemon did not shut down cleanly.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

/// Format of the state file.
pub const STATE_VERSION: u32 = 1;

/// What the state file records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The store the devices belong to.
    pub store: String,
    /// The pid of the daemon that wrote it.
    pub pid: u32,
    /// The origin's ublk device id.
    pub origin_dev_id: Option<u32>,
    /// Active snapshots.
    pub snapshots: Vec<ActiveSnapshot>,
    /// The devices of the store's other origins (a pool; the first is
    /// `origin_dev_id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<ActiveOrigin>,
    /// NBD exports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<RecordedExport>,
    /// The snapshot id of a merge deferred until the origin is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_merge: Option<u32>,
}

/// An active snapshot's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSnapshot {
    /// The snapshot's id in the store.
    pub id: u32,
    /// Its name when activated (for logs).
    pub name: String,
    /// The N of `/dev/ublkbN`.
    pub dev_id: u32,
}

/// The device of an origin other than the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveOrigin {
    /// The origin's id in the store.
    pub id: u32,
    /// The N of `/dev/ublkbN`.
    pub dev_id: u32,
}

/// An NBD export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedExport {
    /// The export's name.
    pub export: String,
    /// The snapshot's id (`None`: an origin, `origin`).
    pub snapshot: Option<u32>,
    /// The origin's id, when `snapshot` is `None` (absent: the first).
    #[serde(default, skip_serializing_if = "is_first")]
    pub origin: u32,
    /// The snapshot's name when exported (for logs).
    pub name: String,
    /// Writable.
    pub writable: bool,
}

/// Whether origin id `k` is the first's (what an absent `origin` means).
fn is_first(k: &u32) -> bool {
    *k == 0
}

/// The state file of one store.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file in `dir` for the store at `store`.
    pub fn new(dir: &Path, store: &Path) -> StateFile {
        let name: String = store
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        StateFile {
            path: dir.join(format!("{}.state.json", name.trim_start_matches('_'))),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded state, or `None` when there is none (the last shutdown was clean).
    /// An unreadable file is logged and ignored: recovery is then a fresh start.
    pub fn load(&self) -> Option<State> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the state file; ignoring it");
                return None;
            }
        };
        match serde_json::from_slice::<State>(&bytes) {
            Ok(s) if s.version == STATE_VERSION => Some(s),
            Ok(s) => {
                tracing::warn!(path = %self.path.display(), version = s.version, "state file of another version; ignoring it");
                None
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "bad state file; ignoring it");
                None
            }
        }
    }

    /// Replace the state file atomically.
    pub fn save(&self, state: &State) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::Protocol(format!("state file encoding: {e}")))?;
        let mut f = fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(&body).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("sync", &tmp))?;
        fs::rename(&tmp, &self.path).map_err(Error::io("rename", &self.path))?;
        Ok(())
    }

    /// Remove the state file (clean shutdown).
    pub fn remove(&self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the state file")
            }
        }
    }
}
