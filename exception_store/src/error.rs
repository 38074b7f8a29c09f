//! Errors of the exception store. Lower-layer errors are flattened into these
//! categories so that `Error::Corrupt(c)` matches at every level.
use blockdev::{ids::SnapId, Corrupt};
use std::io;

/// Which space ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Data chunks (copy-outs, snapshot writes).
    Data,
    /// Metadata blocks.
    Metadata,
    /// An origin's quota: its snapshots hold as many chunks as it allows
    /// ([`Store::set_origin_quota`](crate::Store::set_origin_quota)).
    Quota,
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Space::Data => "data space",
            Space::Metadata => "metadata space",
            Space::Quota => "the origin's quota",
        })
    }
}

/// An error of the exception store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store or origin device failed.
    #[error("I/O error on {device} at byte {offset}: {source}")]
    Io {
        /// "store" or "origin".
        device: &'static str,
        /// Where.
        offset: u64,
        /// What the device said.
        #[source]
        source: io::Error,
    },
    /// Metadata failed verification; nothing was served from it.
    #[error("corrupt store: {0}")]
    Corrupt(Corrupt),
    /// The store is full.
    #[error("exception store out of {0}")]
    NoSpace(Space),
    /// Not a store of a format we can open.
    #[error("unsupported store: {0}")]
    Unsupported(String),
    /// The store was formatted for a different origin or geometry.
    #[error("store mismatch: {what}: the store says {store}, given {given}")]
    Mismatch {
        /// Which property.
        what: &'static str,
        /// Value recorded in the store.
        store: u64,
        /// Value of what was given.
        given: u64,
    },
    /// An argument out of range (an I/O past the end, a bad chunk size).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An earlier metadata write failed; the store refuses changes until reopened.
    #[error("an earlier metadata write failed; the store is read-only until reopened and checked")]
    PreviousIo,
    /// No such snapshot.
    #[error("no snapshot {0}")]
    NoSuchSnapshot(String),
    /// A snapshot of that name exists.
    #[error("a snapshot named {0:?} already exists")]
    NameTaken(String),
    /// The operation conflicts with work in progress.
    #[error("busy: {0}")]
    Busy(String),
    /// No such origin.
    #[error("no origin {0}")]
    NoSuchOrigin(String),
    /// The origin is in the store but its device is not attached.
    #[error("{0}")]
    OriginMissing(String),
}

impl Error {
    /// Map to the errno a block device returns for it.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::NoSpace(_) => libc::ENOSPC,
            Error::Invalid(_) | Error::Mismatch { .. } => libc::EINVAL,
            Error::NoSuchSnapshot(_) | Error::NoSuchOrigin(_) => libc::ENOENT,
            Error::OriginMissing(_) => libc::ENXIO,
            Error::NameTaken(_) => libc::EEXIST,
            Error::Busy(_) => libc::EBUSY,
            _ => libc::EIO,
        }
    }
}

impl From<btree::Error> for Error {
    fn from(e: btree::Error) -> Self {
        match e {
            btree::Error::Io { block, source } => Error::Io {
                device: "store",
                offset: block.0 * btree::format::BLOCK_SIZE as u64,
                source,
            },
            btree::Error::Corrupt(c) => Error::Corrupt(c),
            btree::Error::NoSpace => Error::NoSpace(Space::Metadata),
            other => Error::Unsupported(other.to_string()),
        }
    }
}

/// Which snapshot, for error messages.
pub fn snap_name(id: SnapId) -> String {
    format!("#{}", id.0)
}

/// Result of the exception store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// By hand rather than `#[from]`: the message already shows the block, and a `source`
// would make `{:#}` print it twice.
impl From<Corrupt> for Error {
    fn from(c: Corrupt) -> Self {
        Error::Corrupt(c)
    }
}
