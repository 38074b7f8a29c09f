//! Transmission-phase messages: decoding and checking a request header, encoding
//! simple and structured replies. Pure functions over bytes (fuzzed).
//!
//! [`check`] decides, for a decoded header and the export's shape, whether the
//! request is served, answered with an error, or ends the connection; it never
//! trusts a length before comparing it with the export's size. Any READ or WRITE
//! within the export is served, however long (the transmission phase streams it:
//! [`super::transmission`]); a WRITE longer than the whole export cannot be
//! valid, and its payload is not worth reading: it drops the connection.
use super::{be, consts::*};

/// A request header (28 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// Command type.
    pub cmd: u16,
    /// The client's cookie (handle), echoed in the reply.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u32,
}

/// Length of a request header.
pub const REQUEST_LEN: usize = 28;

/// Decode a header; `None` for a wrong magic (the connection cannot be resynced).
pub fn decode(b: &[u8; REQUEST_LEN]) -> Option<Request> {
    if be::get_u32(b, 0) != REQUEST_MAGIC {
        return None;
    }
    Some(Request {
        flags: be::get_u16(b, 4),
        cmd: be::get_u16(b, 6),
        cookie: be::get_u64(b, 8),
        offset: be::get_u64(b, 16),
        len: be::get_u32(b, 24),
    })
}

/// Encode a header (the client side; tests and the fuzzer's corpus).
pub fn encode(r: &Request) -> [u8; REQUEST_LEN] {
    let mut v = Vec::with_capacity(REQUEST_LEN);
    be::put_u32(&mut v, REQUEST_MAGIC);
    be::put_u16(&mut v, r.flags);
    be::put_u16(&mut v, r.cmd);
    be::put_u64(&mut v, r.cookie);
    be::put_u64(&mut v, r.offset);
    be::put_u32(&mut v, r.len);
    let mut out = [0u8; REQUEST_LEN];
    out.copy_from_slice(&v);
    out
}

/// What the export looks like to [`check`].
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Size in bytes.
    pub size: u64,
    /// Writes allowed.
    pub writable: bool,
    /// Structured replies negotiated.
    pub structured: bool,
    /// Metadata contexts selected.
    pub has_contexts: bool,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Serve,
    /// Answer with this error (a write's payload is read and dropped first).
    Error(u32),
    /// The client disconnects (`NBD_CMD_DISC`).
    Disconnect,
    /// Drop the connection: the stream cannot be trusted (a write longer than the
    /// export).
    Fatal,
}

/// The flags each command may carry.
fn allowed_flags(cmd: u16) -> u16 {
    match cmd {
        CMD_READ => CMD_FLAG_DF,
        CMD_WRITE | CMD_TRIM => CMD_FLAG_FUA,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
        CMD_BLOCK_STATUS => CMD_FLAG_REQ_ONE,
        _ => 0,
    }
}

/// See the module documentation.
pub fn check(r: &Request, sh: &Shape) -> Verdict {
    if r.cmd == CMD_WRITE && u64::from(r.len) > sh.size {
        return Verdict::Fatal;
    }
    let end = r.offset.checked_add(u64::from(r.len));
    let past_end = end.is_none_or(|e| e > sh.size);
    match r.cmd {
        CMD_DISC => return Verdict::Disconnect,
        CMD_FLUSH => {}
        CMD_READ | CMD_CACHE | CMD_BLOCK_STATUS | CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES => {}
        _ => return Verdict::Error(EINVAL),
    }
    if r.flags & !allowed_flags(r.cmd) != 0 {
        return Verdict::Error(EINVAL);
    }
    if r.flags & CMD_FLAG_DF != 0 && !sh.structured {
        return Verdict::Error(EINVAL);
    }
    let writes = matches!(r.cmd, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && !sh.writable {
        return Verdict::Error(EPERM);
    }
    match r.cmd {
        CMD_FLUSH => Verdict::Serve,
        _ if past_end && writes => Verdict::Error(ENOSPC),
        _ if past_end => Verdict::Error(EINVAL),
        CMD_BLOCK_STATUS if !sh.structured || !sh.has_contexts || r.len == 0 => {
            Verdict::Error(EINVAL)
        }
        _ => Verdict::Serve,
    }
}

/// A simple reply header.
pub fn simple_reply(cookie: u64, error: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    be::put_u32(&mut v, SIMPLE_REPLY_MAGIC);
    be::put_u32(&mut v, error);
    be::put_u64(&mut v, cookie);
    v
}

/// A structured reply chunk header for `payload_len` bytes that follow it.
pub fn chunk_header(cookie: u64, flags: u16, typ: u16, payload_len: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    be::put_u32(&mut v, STRUCTURED_REPLY_MAGIC);
    be::put_u16(&mut v, flags);
    be::put_u16(&mut v, typ);
    be::put_u64(&mut v, cookie);
    be::put_u32(&mut v, payload_len);
    v
}

/// The header (and offset) of an `NBD_REPLY_TYPE_OFFSET_DATA` chunk carrying
/// `len` data bytes at `offset`, the last chunk of its reply.
pub fn offset_data_header(cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut v = chunk_header(cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, len + 8);
    be::put_u64(&mut v, offset);
    v
}

/// A whole `NBD_REPLY_TYPE_ERROR` chunk (the last of its reply).
pub fn error_chunk(cookie: u64, error: u32, msg: &str) -> Vec<u8> {
    let msg = &msg.as_bytes()[..msg.len().min(4096)];
    let mut v = chunk_header(
        cookie,
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        6 + msg.len() as u32,
    );
    be::put_u32(&mut v, error);
    be::put_u16(&mut v, msg.len() as u16);
    v.extend_from_slice(msg);
    v
}

/// A whole `NBD_REPLY_TYPE_BLOCK_STATUS` chunk: context id, then (length, flags).
pub fn block_status_chunk(
    cookie: u64,
    done: bool,
    context: u32,
    extents: &[(u32, u32)],
) -> Vec<u8> {
    let len = 4 + 8 * extents.len() as u32;
    let flags = if done { REPLY_FLAG_DONE } else { 0 };
    let mut v = chunk_header(cookie, flags, REPLY_TYPE_BLOCK_STATUS, len);
    be::put_u32(&mut v, context);
    for (l, f) in extents {
        be::put_u32(&mut v, *l);
        be::put_u32(&mut v, *f);
    }
    v
}

#[cfg(test)]
mod tests;
