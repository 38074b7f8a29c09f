//! The stream header: who sent what, at which size and chunk size, relative to which
//! base. Fixed [`HEADER_LEN`] bytes, little-endian, crc32c over the bytes before
//! the crc (layout in `docs/format.md`).
use super::StreamError;
use crate::format::MAX_NAME_LEN;
use blockdev::le;

/// The first eight bytes of every stream.
pub const MAGIC: [u8; 8] = *b"USNPSTRM";
/// The stream format version this build writes and reads.
pub const STREAM_VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 192;

const FLAG_INCREMENTAL: u32 = 1;
const FLAG_RESUME: u32 = 2;
const KNOWN_FLAGS: u32 = FLAG_INCREMENTAL | FLAG_RESUME;
const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_STREAM_ID: usize = 16;
const OFF_SOURCE: usize = 32;
const OFF_GUID: usize = 48;
const OFF_FROM_GUID: usize = 64;
const OFF_CHUNK: usize = 80;
const OFF_SIZE: usize = 88;
const OFF_CREATED: usize = 96;
const OFF_RESUME: usize = 104;
const OFF_NAME_LEN: usize = 112;
const OFF_NAME: usize = 113;
const OFF_CRC: usize = HEADER_LEN - 4;

/// What a stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// This stream's identity (random; kept by a resumed stream).
    pub stream_id: [u8; 16],
    /// The sending store's uuid.
    pub source_uuid: [u8; 16],
    /// The sending store's chunk size.
    pub chunk_size: u64,
    /// Snapshot B's device size.
    pub size: u64,
    /// B's name.
    pub name: String,
    /// B's creation time (seconds since the epoch).
    pub created: u64,
    /// B's identity.
    pub guid: [u8; 16],
    /// A's identity for an incremental stream (`None`: a full stream).
    pub from_guid: Option<[u8; 16]>,
    /// A resumed stream: its records start at or after this offset (0: from the start).
    pub resume_offset: Option<u64>,
}

impl Header {
    /// Encode.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        le::put_u32(&mut b, OFF_VERSION, STREAM_VERSION);
        let mut flags = 0;
        if self.from_guid.is_some() {
            flags |= FLAG_INCREMENTAL;
        }
        if self.resume_offset.is_some() {
            flags |= FLAG_RESUME;
        }
        le::put_u32(&mut b, OFF_FLAGS, flags);
        b[OFF_STREAM_ID..OFF_STREAM_ID + 16].copy_from_slice(&self.stream_id);
        b[OFF_SOURCE..OFF_SOURCE + 16].copy_from_slice(&self.source_uuid);
        b[OFF_GUID..OFF_GUID + 16].copy_from_slice(&self.guid);
        b[OFF_FROM_GUID..OFF_FROM_GUID + 16].copy_from_slice(&self.from_guid.unwrap_or([0; 16]));
        le::put_u64(&mut b, OFF_CHUNK, self.chunk_size);
        le::put_u64(&mut b, OFF_SIZE, self.size);
        le::put_u64(&mut b, OFF_CREATED, self.created);
        le::put_u64(&mut b, OFF_RESUME, self.resume_offset.unwrap_or(0));
        let name = self.name.as_bytes();
        let n = name.len().min(MAX_NAME_LEN);
        b[OFF_NAME_LEN] = n as u8;
        b[OFF_NAME..OFF_NAME + n].copy_from_slice(&name[..n]);
        let crc = crc32c::crc32c(&b[..OFF_CRC]);
        le::put_u32(&mut b, OFF_CRC, crc);
        b
    }

    /// Decode and check a header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, StreamError> {
        if b[..8] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        if crc32c::crc32c(&b[..OFF_CRC]) != le::get_u32(b, OFF_CRC) {
            return Err(StreamError::HeaderCrc {
                what: "stream header",
                at: 0,
            });
        }
        let version = le::get_u32(b, OFF_VERSION);
        if version != STREAM_VERSION {
            return Err(StreamError::Version(version));
        }
        let flags = le::get_u32(b, OFF_FLAGS);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(StreamError::BadHeader("unknown flags"));
        }
        let chunk_size = le::get_u64(b, OFF_CHUNK);
        if chunk_size == 0 || !chunk_size.is_power_of_two() {
            return Err(StreamError::BadHeader("chunk size is not a power of two"));
        }
        let n = usize::from(b[OFF_NAME_LEN]);
        if n > MAX_NAME_LEN || b[OFF_NAME + n..OFF_CRC].iter().any(|&x| x != 0) {
            return Err(StreamError::BadHeader("name length"));
        }
        let name = std::str::from_utf8(&b[OFF_NAME..OFF_NAME + n])
            .map_err(|_| StreamError::BadHeader("name is not UTF-8"))?;
        crate::tables::validate_name(name).map_err(|_| StreamError::BadHeader("bad name"))?;
        let id16 = |off: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[off..off + 16]);
            a
        };
        let resume = le::get_u64(b, OFF_RESUME);
        if flags & FLAG_RESUME == 0 && resume != 0 {
            return Err(StreamError::BadHeader(
                "resume offset without the resume flag",
            ));
        }
        Ok(Header {
            stream_id: id16(OFF_STREAM_ID),
            source_uuid: id16(OFF_SOURCE),
            chunk_size,
            size: le::get_u64(b, OFF_SIZE),
            name: name.to_owned(),
            created: le::get_u64(b, OFF_CREATED),
            guid: id16(OFF_GUID),
            from_guid: (flags & FLAG_INCREMENTAL != 0).then(|| id16(OFF_FROM_GUID)),
            resume_offset: (flags & FLAG_RESUME != 0).then_some(resume),
        })
    }
}
