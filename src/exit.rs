//! Exit codes of `ublk-snapd` and `snapctl`, and the one mapping from errors to them
//! (documented in `docs/cli.md`).
use crate::{protocol::ErrorCode, Error};

/// Success.
pub const OK: u8 = 0;
/// A check found problems.
pub const CHECK_FAILED: u8 = 1;
/// Bad usage: arguments, names, options.
pub const USAGE: u8 = 2;
/// An I/O error (a device, a file, the ublk driver).
pub const IO: u8 = 3;
/// Corruption prevented the operation.
pub const CORRUPT: u8 = 4;
/// The daemon is not running (or its socket cannot be reached).
pub const NOT_RUNNING: u8 = 5;
/// No such snapshot (or origin).
pub const NO_SUCH_SNAPSHOT: u8 = 6;
/// A conflict: the name exists, the snapshot is (not) active, the store is locked.
pub const CONFLICT: u8 = 7;
/// The store is out of space.
pub const NO_SPACE: u8 = 8;
/// The daemon and the client do not understand each other, or the daemon failed.
pub const PROTOCOL: u8 = 9;
/// The command is reserved for a later version.
pub const NOT_IMPLEMENTED: u8 = 10;
/// `origin list`: an origin of the store is not served (its device is missing or
/// the wrong size).
pub const ORIGIN_MISSING: u8 = 11;

/// The exit code for a protocol error code.
pub fn for_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Invalid => USAGE,
        ErrorCode::Io => IO,
        ErrorCode::Corrupt => CORRUPT,
        ErrorCode::NoSuchSnapshot | ErrorCode::NoSuchOrigin => NO_SUCH_SNAPSHOT,
        ErrorCode::Exists | ErrorCode::Busy | ErrorCode::NotActive => CONFLICT,
        ErrorCode::NoSpace => NO_SPACE,
        ErrorCode::PermissionDenied => NOT_RUNNING,
        ErrorCode::NotImplemented => NOT_IMPLEMENTED,
        ErrorCode::BadRequest
        | ErrorCode::TooLarge
        | ErrorCode::Timeout
        | ErrorCode::UnsupportedVersion
        | ErrorCode::Internal => PROTOCOL,
    }
}

/// The exit code for an error, from the first cause in its chain we recognise
/// (`anyhow::Error::chain()` gives the chain).
pub fn exit_code<'a>(chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>) -> u8 {
    for cause in chain {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::NotRunning { .. } => NOT_RUNNING,
                Error::Locked { .. } => CONFLICT,
                Error::Io { .. } | Error::Ublk(_) => IO,
                Error::StartFailed(_) => IO,
                Error::Protocol(_) => PROTOCOL,
                other => for_code(other.code()),
            };
        }
        if let Some(e) = cause.downcast_ref::<exception_store::Error>() {
            return for_code(Error::code_of_store(e));
        }
        if cause.downcast_ref::<ublk_target::Error>().is_some() {
            return IO;
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return IO;
        }
    }
    IO
}
