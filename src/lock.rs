//! The store lock: an exclusive `flock` on the store file or device, held for the
//! daemon's lifetime (and for the length of an offline operation such as `format`).
//! A second daemon, or `snapctl format` while the daemon runs, is refused with
//! [`Error::Locked`].
//!
//! `flock` belongs to the open file description, so the lock goes away with the
//! process however it ends (kill -9 included), and a restarted daemon takes it again.
use crate::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::{
    fs::File,
    path::{Path, PathBuf},
};

/// A held store lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl StoreLock {
    /// Lock `path` or fail at once with [`Error::Locked`] if another holds it.
    pub fn acquire(path: &Path) -> Result<StoreLock> {
        let file = File::open(path).map_err(Error::io("open", path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StoreLock {
                _lock: lock,
                path: path.to_owned(),
            }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Locked {
                path: path.to_owned(),
            }),
            Err((_, errno)) => Err(Error::Io {
                what: "lock",
                path: path.to_owned(),
                error: errno.into(),
            }),
        }
    }

    /// The locked path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
