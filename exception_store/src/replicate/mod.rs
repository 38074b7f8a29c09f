//! Replication: [`send`] writes what a snapshot holds (or what changed since an
//! older one) as a [`crate::stream`], [`receive`] applies one to a store's origin and
//! takes the received snapshot of it.
//!
//! # Receiving, and why it is atomic from the user's side
//! A receive first takes a *rollback snapshot* (`recv+<stream id>`) of the origin,
//! then writes the stream's records to the origin as they arrive and checks them
//! one by one. Only after the end record checked (count, whole-stream crc32c) does it
//! create snapshot B of the origin (with the sender's name and creation time) and
//! delete the rollback snapshot. A corrupt, out-of-order or wrong-base stream merges
//! the rollback snapshot back into the origin (the origin reads what it read before,
//! at once; every snapshot is untouched since snapshots never change when the origin
//! is written). A cut stream keeps what arrived: the [`Pending`] record (saved by
//! the caller after every durable checkpoint) names the stream and the offset up to
//! which it is applied and durable, and a resumed stream continues from there.
//!
//! # Identity
//! A snapshot's guid (format v3) identifies it across stores: a stream carries B's
//! and A's, and the received B is created with B's guid
//! ([`crate::Store::create_snapshot_as`]), so it can be the base of the next one.
//!
//! # Invariants
//! - An incremental is applied only where the target holds A (by guid) and its origin
//!   reads exactly A (`diff(origin, A)` is empty), unless forced, which first rolls
//!   the origin back to A.
//! - B appears on the target only after the whole stream checked.
mod receive;
mod send;

pub use receive::{
    abandon, is_receive_name, mark, orphans, receive, Pending, ReceiveError, ReceiveOptions,
    Received,
};
pub use send::{send, SendError, SendSpec, Sent};

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parse 32 hex digits.
pub fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A resume token: `<stream id hex>:<offset>`.
pub fn resume_token(stream_id: &[u8; 16], offset: u64) -> String {
    format!("{}:{offset}", hex(stream_id))
}

/// Parse a resume token.
pub fn parse_resume_token(t: &str) -> Option<([u8; 16], u64)> {
    let (id, off) = t.split_once(':')?;
    Some((parse_hex16(id)?, off.parse().ok()?))
}

#[cfg(test)]
mod tests;
