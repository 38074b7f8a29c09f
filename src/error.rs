//! The library's error type. Store and device errors are kept whole (not stringified)
//! so that [`crate::exit`] and the protocol's error codes can tell them apart.
use crate::protocol::ErrorCode;
use std::{io, path::PathBuf};

/// Everything the daemon library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The exception store refused or failed.
    #[error(transparent)]
    Store(#[from] exception_store::Error),
    /// A ublk device could not be created, recovered or stopped.
    #[error(transparent)]
    Ublk(#[from] ublk_target::Error),
    /// Another process holds the store.
    #[error("{} is locked by another process (is ublk-snapd running on it?)", path.display())]
    Locked {
        /// The store.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{what} {}: {error}", path.display())]
    Io {
        /// What we were doing ("open", "bind", ...).
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why (part of the message, so not a separate `source`).
        error: io::Error,
    },
    /// No snapshot of that name.
    #[error("no snapshot named {0:?}")]
    NoSuchSnapshot(String),
    /// The snapshot has a device; the operation needs it inactive.
    #[error("snapshot {name:?} is active as {device}; deactivate it first")]
    Active {
        /// The snapshot.
        name: String,
        /// Its device.
        device: String,
    },
    /// The snapshot is exported over NBD; the operation needs it unexported.
    #[error("snapshot {name:?} is exported over NBD as {export:?}; unexport it first")]
    Exported {
        /// The snapshot.
        name: String,
        /// The export.
        export: String,
    },
    /// The snapshot is a receive's rollback point (internal to that receive).
    #[error(
        "snapshot {0:?} is the rollback point of an unfinished receive (internal): it goes \
         away when that receive ends; `snapctl receive --force` drops the receive"
    )]
    RollbackPoint(String),
    /// A device is open exclusively by someone else (a mounted filesystem).
    #[error("{device} is in use (mounted?): {why}")]
    InUse {
        /// The device.
        device: String,
        /// What needs it unused.
        why: &'static str,
    },
    /// An argument is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The snapshot has no device.
    #[error("snapshot {0:?} is not active")]
    NotActive(String),
    /// The daemon's socket cannot be reached.
    #[error("cannot reach ublk-snapd at {}: {error} (is the daemon running?)", path.display())]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A reply or request did not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The daemon answered with an error.
    #[error("{message}")]
    Remote {
        /// Its category.
        code: ErrorCode,
        /// What it said.
        message: String,
    },
    /// Reserved for a later version.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// The daemon (in daemon mode) failed before it was ready.
    #[error("ublk-snapd failed to start: {0}")]
    StartFailed(String),
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error code a reply carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Store(e) => Self::code_of_store(e),
            Error::Ublk(_) | Error::Io { .. } => ErrorCode::Io,
            Error::Locked { .. }
            | Error::Active { .. }
            | Error::Exported { .. }
            | Error::InUse { .. }
            | Error::RollbackPoint(_) => ErrorCode::Busy,
            Error::NoSuchSnapshot(_) => ErrorCode::NoSuchSnapshot,
            Error::NotActive(_) => ErrorCode::NotActive,
            Error::Invalid(_) => ErrorCode::Invalid,
            Error::NotRunning { .. } => ErrorCode::Io,
            Error::Protocol(_) => ErrorCode::BadRequest,
            Error::Remote { code, .. } => *code,
            Error::NotImplemented(_) => ErrorCode::NotImplemented,
            Error::StartFailed(_) => ErrorCode::Internal,
        }
    }

    /// The error code for a store error.
    pub fn code_of_store(e: &exception_store::Error) -> ErrorCode {
        use exception_store::Error as S;
        match e {
            S::Invalid(_) | S::Mismatch { .. } => ErrorCode::Invalid,
            S::NoSuchSnapshot(_) => ErrorCode::NoSuchSnapshot,
            S::NoSuchOrigin(_) => ErrorCode::NoSuchOrigin,
            S::NameTaken(_) => ErrorCode::Exists,
            S::Busy(_) => ErrorCode::Busy,
            S::NoSpace(_) => ErrorCode::NoSpace,
            S::Corrupt(_) | S::Unsupported(_) => ErrorCode::Corrupt,
            _ => ErrorCode::Io,
        }
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io { what, path, error }
    }
}
