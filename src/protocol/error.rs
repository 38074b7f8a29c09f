//! A failed request on the wire: [`ErrorReply`] and its stable [`ErrorCode`], which
//! the daemon's `Error::code` maps every error to and `snapctl` maps to an exit code.
use serde::{Deserialize, Serialize};

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
    /// The request line is longer than [`MAX_REQUEST_BYTES`](super::MAX_REQUEST_BYTES).
    TooLarge,
    /// The request did not arrive, or not finish, in time.
    Timeout,
    /// The request's `version` is not [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
    UnsupportedVersion,
    /// The peer is neither root nor the daemon's user.
    PermissionDenied,
    /// An argument is invalid (a bad name).
    Invalid,
    /// No such snapshot.
    NoSuchSnapshot,
    /// No such origin.
    NoSuchOrigin,
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
