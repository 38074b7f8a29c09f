//! The NBD export: snapshots (and the origin) served over the Network Block Device
//! protocol (NetworkBlockDevice/nbd `doc/proto.md`), from the same shared store as
//! the ublk devices, with block status that says what the store knows.
//!
//! # Modules
//! - [`consts`], [`be`]: the protocol's numbers; its big-endian fields.
//! - [`handshake`]: fixed newstyle option negotiation over any stream (fuzzed).
//! - [`request`]: request headers and reply encodings, and the check of a request
//!   against its export (fuzzed).
//! - [`meta`]: the metadata contexts (`base:allocation`, `qemu:allocation-depth`,
//!   `ublk-snap:owner`).
//! - [`block_status`]: block-status extents from the store's map.
//! - [`dirty`]: the dirty bitmaps `qemu:dirty-bitmap:A`, from the store's diff.
//! - [`transmission`]: one connection's request loop on the shared store.
//! - [`exports`]: the export table and its connections.
//! - [`server`]: listeners and connection threads; who may connect ([`Security`]).
//! - [`socket`]: the listening sockets and client streams (with the handshake's deadline).
//! - [`tls`]: `STARTTLS`: certificates, client checks, the TLS stream.
//!
//! # Guarantees
//! - Data goes through the ublk devices' paths ([`exception_store::SharedStore`]):
//!   a snapshot written over NBD and read through ublk, or the reverse, agree.
//! - A FLUSH (or FUA) is a store commit plus an origin flush; it covers every
//!   connection's completed writes (`NBD_FLAG_CAN_MULTI_CONN`).
//! - A read-only export refuses writes, trims and zeroing with EPERM.
//! - A client that breaks the protocol loses its connection, nothing else.
pub mod be;
pub mod block_status;
pub mod consts;
pub mod dirty;
pub mod exports;
pub mod handshake;
pub mod meta;
pub mod request;
pub mod server;
pub mod socket;
pub mod tls;
pub mod transmission;

pub use exports::{Export, Exports};
pub use server::{Security, Server, Timeouts};
pub use socket::Listener;
pub use tls::{Tls, TlsFiles};

/// The default NBD socket for control socket `control`: beside it, `NAME.sock`
/// becoming `NAME.nbd.sock` (`/run/ublk-snap/ublk-snapd.nbd.sock` by default).
pub fn default_socket(control: &std::path::Path) -> std::path::PathBuf {
    let stem = control
        .file_stem()
        .map_or_else(|| "ublk-snapd".into(), |s| s.to_string_lossy().into_owned());
    control.with_file_name(format!("{stem}.nbd.sock"))
}
