//! `ublk-snapd`: serve an origin device and its snapshots as ublk block devices.
//!
//! The daemon opens an origin (a file or block device) and an exception store
//! formatted for it, exposes the origin as `/dev/ublkbN`, and gives snapshots their
//! own devices while they are activated. A Unix socket carries the control
//! protocol of [`protocol`]; `snapctl` (the `tools` crate) is its client and uses this
//! library for the types and the client side.
//!
//! # Modules, bottom up
//! Each layer imports only from the layers listed before it (the map, with
//! what each folder owns, is in `docs/architecture.md`).
//! 1. [`protocol`]: the wire, a leaf: versioned JSON-lines requests and replies,
//!    their size and time bounds.
//! 2. [`Error`] and [`exit`]: the one error type and its exit codes.
//! 3. [`lock`]: the store lock that refuses a second daemon (and an online
//!    `format`); [`crash_point`]: named points where the kernel tests make the
//!    daemon abort.
//! 4. [`client`]: the blocking client `snapctl` uses, and its streaming ops;
//!    [`inspect`]: `map` and `diff` pages of a store; [`ublk`]: the store as ublk
//!    devices (the activation table, the target, the driver's features); [`nbd`]:
//!    the NBD export of snapshots and the origin, with block status; [`names`]:
//!    which device of a pool a request's names pick.
//! 5. [`offline`]: operations on a store without a daemon (`format`, `check`,
//!    `grow-store`, …).
//! 6. [`service`]: what a request does; every `impl Service` lives there.
//! 7. [`daemon`]: the process: `serve`, daemon mode, the control socket server,
//!    the background worker.
//!
//! # Guarantees
//! - A FLUSH on any device commits the store and flushes the origin before it completes.
//! - Every change answered on the socket is durable and carries the transaction id.
//! - A bad request, or a client that stalls, costs that client its connection and
//!   nothing else.
#![warn(missing_docs)]

// 1. the wire
pub mod protocol;
// 2. errors
mod error;
pub mod exit;
// 3. the store lock, test hooks
pub mod crash_point;
pub mod lock;
// 4. the client; the store seen as pages, ublk devices, NBD exports
pub mod client;
pub mod inspect;
pub mod names;
pub mod nbd;
pub mod ublk;
// 5. without a daemon
pub mod offline;
// 6. what each request does
pub mod service;
// 7. the process
pub mod daemon;

pub use error::{Error, Result};

/// Where the daemon keeps its socket and state file unless told otherwise.
pub const DEFAULT_RUN_DIR: &str = "/run/ublk-snap";
/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/ublk-snap/ublk-snapd.sock";

/// Seconds since the epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
