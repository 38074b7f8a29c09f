//! Big-endian field helpers for the NBD wire format.
//!
//! The project's own formats are little-endian (`blockdev::le`); NBD is defined in
//! network byte order, so this one module encodes big-endian, explicitly.
#![allow(clippy::big_endian_bytes)]

/// Read a big-endian `u16` at `off`. Panics if `b` is too short (callers check).
pub fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Read a big-endian `u32` at `off`.
pub fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_be_bytes(a)
}

/// Read a big-endian `u64` at `off`.
pub fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// Append a big-endian `u16`.
pub fn put_u16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// Append a big-endian `u32`.
pub fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// Append a big-endian `u64`.
pub fn put_u64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_be_bytes());
}
