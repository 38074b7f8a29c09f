//! Why a stream was refused. Each variant names what was wrong and where.
use thiserror::Error;

/// A stream the decoder refuses (or an I/O error reading or writing it).
#[derive(Debug, Error)]
pub enum StreamError {
    /// Reading or writing the stream failed.
    #[error("stream I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended before its end record (cut, or a truncated tail).
    #[error("stream cut: it ends after {at} bytes, before its end record")]
    Truncated {
        /// Bytes read before the end.
        at: u64,
    },
    /// Not a replication stream.
    #[error("not a ublk-snap replication stream (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("stream format version {0} is not supported (this build reads {expected})", expected = super::STREAM_VERSION)]
    Version(u32),
    /// A header field is invalid.
    #[error("corrupt stream header: {0}")]
    BadHeader(&'static str),
    /// A header or record header failed its crc32c.
    #[error("corrupt stream: the {what} at byte {at} fails its crc32c")]
    HeaderCrc {
        /// `stream header` or `record header`.
        what: &'static str,
        /// Its position in the stream.
        at: u64,
    },
    /// A record's payload failed its crc32c.
    #[error("corrupt stream: the data of the record at device offset {offset} fails its crc32c")]
    DataCrc {
        /// The record's device offset.
        offset: u64,
    },
    /// A record of an unknown type.
    #[error("corrupt stream: unknown record type {kind} at byte {at}")]
    BadRecordType {
        /// The type field.
        kind: u32,
        /// Its position in the stream.
        at: u64,
    },
    /// A record starts before the end of the previous one.
    #[error(
        "corrupt stream: record at offset {offset} is out of order (previous ends at {prev_end})"
    )]
    OutOfOrder {
        /// The record's device offset.
        offset: u64,
        /// Where the previous record ended.
        prev_end: u64,
    },
    /// A record is empty, too long, or beyond the device.
    #[error("corrupt stream: record at offset {offset} length {len} is out of range (device size {size})")]
    OutOfRange {
        /// Device offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The header's size.
        size: u64,
    },
    /// The end record's count does not match.
    #[error("corrupt stream: the end record counts {claimed} records, {seen} arrived")]
    Count {
        /// In the end record.
        claimed: u64,
        /// Decoded.
        seen: u64,
    },
    /// The whole-stream checksum does not match.
    #[error("corrupt stream: the whole-stream crc32c does not match")]
    StreamCrc,
    /// Bytes after the end record.
    #[error("corrupt stream: bytes follow the end record")]
    Trailing,
}

impl StreamError {
    /// Whether the stream was merely cut (what was applied may be kept and resumed).
    pub fn is_cut(&self) -> bool {
        matches!(self, StreamError::Truncated { .. } | StreamError::Io(_))
    }
}
