//! Records: a fixed [`RECORD_HEADER_LEN`]-byte header (type, device offset, length,
//! payload crc32c, header crc32c), then the payload for data records.
use blockdev::le;

/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 32;
/// Longest data payload of one record (a sender splits longer runs).
pub const MAX_DATA_LEN: u64 = 1 << 20;

pub(crate) const KIND_DATA: u32 = 1;
pub(crate) const KIND_ZERO: u32 = 2;
pub(crate) const KIND_END: u32 = 3;

/// One record of a stream, as the decoder returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Bytes to write at `offset`.
    Data {
        /// Device offset.
        offset: u64,
        /// The bytes (at most [`MAX_DATA_LEN`]).
        data: Vec<u8>,
    },
    /// `len` bytes of zeros at `offset` (a hole, a discard or all-zero data).
    Zero {
        /// Device offset.
        offset: u64,
        /// Length (any, within the device).
        len: u64,
    },
}

impl Record {
    /// Device range `(offset, len)`.
    pub fn range(&self) -> (u64, u64) {
        match self {
            Record::Data { offset, data } => (*offset, data.len() as u64),
            Record::Zero { offset, len } => (*offset, *len),
        }
    }
}

/// The decoded fields of a record header.
pub(crate) struct RawHeader {
    pub kind: u32,
    pub offset: u64,
    pub len: u64,
    pub payload_crc: u32,
}

pub(crate) fn encode_header(
    kind: u32,
    offset: u64,
    len: u64,
    payload_crc: u32,
) -> [u8; RECORD_HEADER_LEN] {
    let mut b = [0u8; RECORD_HEADER_LEN];
    le::put_u32(&mut b, 0, kind);
    le::put_u64(&mut b, 8, offset);
    le::put_u64(&mut b, 16, len);
    le::put_u32(&mut b, 24, payload_crc);
    let crc = crc32c::crc32c(&b[..28]);
    le::put_u32(&mut b, 28, crc);
    b
}

/// Decode a record header; `None` when its crc or reserved field is wrong.
pub(crate) fn decode_header(b: &[u8; RECORD_HEADER_LEN]) -> Option<RawHeader> {
    if crc32c::crc32c(&b[..28]) != le::get_u32(b, 28) || le::get_u32(b, 4) != 0 {
        return None;
    }
    Some(RawHeader {
        kind: le::get_u32(b, 0),
        offset: le::get_u64(b, 8),
        len: le::get_u64(b, 16),
        payload_crc: le::get_u32(b, 24),
    })
}
