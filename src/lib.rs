//! `ublk-snapd`: serve an origin device and its snapshots as ublk block devices.
//!
//! The daemon opens an origin (a file or block device) and an exception store
//! formatted for it, exposes the origin as `/dev/ublkbN`, and gives snapshots their
//! own devices while they are activated. A Unix socket carries the control
//! protocol of [`protocol`]; `snapctl` (the `tools` crate) is its client and uses this
//! library for the types and the client side.
//!
//! # Modules
//! - [`protocol`]: versioned JSON-lines requests and replies, their size and time bounds.
//! - [`control`]: the socket server (peer credentials, bounds, one task per client).
//! - [`client`]: the blocking client `snapctl` uses.
//! - [`service`]: what a request does: the store, the activation table, the state file.
//! - [`devices`]: the activation table, `Dev` -> running ublk device.
//! - [`target`]: a ublk target over the shared store.
//! - [`kernel`]: the ublk driver's features and each device's data path, for `status`.
//! - [`worker`]: background passes and the periodic commit.
//! - [`nbd`]: the NBD export of snapshots and the origin, with block status.
//! - [`lock`]: the store lock that refuses a second daemon (and an online `format`).
//! - [`daemon`]: daemon mode and its readiness pipe.
//! - [`offline`]: operations on a store without a daemon (`format`).
//! - [`exit`]: the one mapping from errors to exit codes of both binaries.
//! - [`crash_point`]: named points where the kernel tests make the daemon abort.
//!
//! # Guarantees
//! - A FLUSH on any device commits the store and flushes the origin before it completes.
//! - Every change answered on the socket is durable and carries the transaction id.
//! - A bad request, or a client that stalls, costs that client its connection and
//!   nothing else.
#![warn(missing_docs)]

pub mod client;
pub mod control;
pub mod crash_point;
pub mod daemon;
pub mod devices;
mod error;
pub mod exit;
pub mod inspect;
pub mod kernel;
pub mod lock;
pub mod nbd;
pub mod offline;
pub mod protocol;
pub mod service;
pub mod target;
pub mod worker;

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
