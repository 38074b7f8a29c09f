//! The crate's error type: what can go wrong while creating, recovering or stopping a
//! ublk device. Errors *inside* the data path never surface here; they become errnos
//! (see [`crate::errno`]) and are completed back to the kernel.
use std::{io, path::PathBuf};

/// Everything that can fail in `ublk_target`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/ublk-control` is missing: the driver is not loaded.
    #[error("{path} not found: load the driver with `modprobe ublk_drv`", path = crate::control::CTRL_PATH)]
    NotAvailable,
    /// The options (or the target's size) cannot describe a ublk device.
    #[error("invalid device options: {0}")]
    InvalidOptions(&'static str),
    /// A libublk control or queue operation failed.
    #[error("ublk {op} failed: {source}")]
    Ublk {
        /// What we were doing: "add", "start", "stop", "delete", "recover", ...
        op: &'static str,
        /// The errno libublk reported, as an `io::Error`.
        #[source]
        source: io::Error,
    },
    /// Queue `qid` could not be set up, so the device never started.
    #[error("ublk queue {qid} setup failed: {source}")]
    QueueSetup {
        /// The queue that failed.
        qid: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `Device::recover` found a device it must not take over.
    #[error("ublk device {dev_id} cannot be recovered: {reason}")]
    NotRecoverable {
        /// The device asked for.
        dev_id: u32,
        /// Why not.
        reason: &'static str,
    },
    /// The kernel started the device but its block node never appeared.
    #[error("{} did not appear", path.display())]
    NoBlockDevice {
        /// The node we waited for.
        path: PathBuf,
    },
    /// The device's control thread died before reporting the start.
    #[error("ublk daemon thread exited unexpectedly")]
    DaemonExited,
    /// Any other I/O failure (spawning threads, ...).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap a libublk error from operation `op`.
    pub(crate) fn ublk(op: &'static str, e: libublk::UblkError) -> Self {
        Error::Ublk {
            op,
            source: ublk_to_io(e),
        }
    }
}

/// libublk 0.4.8 reports most failures as `OtherError(-errno)` with a Display of
/// "other failure"; turn them back into errno-carrying `io::Error`s.
pub(crate) fn ublk_to_io(e: libublk::UblkError) -> io::Error {
    use libublk::UblkError as U;
    match e {
        U::OtherError(rc) | U::UringIOError(rc) if rc < 0 => io::Error::from_raw_os_error(-rc),
        U::IOError(e) => e,
        U::InvalidVal => io::Error::from_raw_os_error(libc::EINVAL),
        U::QueueIsDown => io::Error::from_raw_os_error(libc::ENODEV),
        U::UringTimeout => io::Error::from_raw_os_error(libc::ETIMEDOUT),
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
