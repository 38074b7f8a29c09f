//! The replication stream: what `snapctl send` writes and `snapctl receive` reads
//! (byte layout in `docs/format.md`, "Replication stream").
//!
//! A stream is a [`Header`], then records in strictly ascending, non-overlapping
//! offset order ([`Record::Data`], [`Record::Zero`]), then one end record carrying the
//! record count and the crc32c of every byte before it. Every header and record
//! carries its own crc32c (Castagnoli, the checksum the issue and iSCSI/ext4 use; the
//! store's own blocks keep crc32 IEEE).
//!
//! # Invariants
//! - The [`Decoder`] never panics and never returns a record it has not checked
//!   (its header crc, its payload crc, its order and its range against the header's
//!   size); the end record is returned only after the count and the whole-stream
//!   checksum matched and nothing follows it.
//! - A stream cut anywhere is reported as [`StreamError::Truncated`], distinct from
//!   corruption, so a receiver can keep what it applied and resume.
mod decoder;
mod encoder;
mod error;
mod header;
pub mod rbd_diff;
mod record;

pub use decoder::Decoder;
pub use encoder::Encoder;
pub use error::StreamError;
pub use header::{Header, HEADER_LEN, MAGIC, STREAM_VERSION};
pub use record::{Record, MAX_DATA_LEN, RECORD_HEADER_LEN};

/// A decoded stream as a converter sees it ([`rbd_diff::Writer`], the client's
/// `send_records`): the header first, each checked record, then `End` once the
/// stream checked.
pub enum Event<'a> {
    /// The stream's header.
    Header(&'a Header),
    /// A checked record.
    Record(&'a Record),
    /// The end record checked.
    End,
}

#[cfg(test)]
mod tests;
