//! Fixed-size encoding of keys and values inside nodes.
use blockdev::Reason;

/// A key or value stored in a node: a fixed number of little-endian bytes.
pub trait Codec: Sized + Copy + std::fmt::Debug {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Write exactly `SIZE` bytes.
    fn encode(&self, out: &mut [u8]);
    /// Read `SIZE` bytes; a value no writer produces is a [`Reason`].
    fn decode(b: &[u8]) -> Result<Self, Reason>;
}

impl Codec for u32 {
    const SIZE: usize = 4;
    fn encode(&self, out: &mut [u8]) {
        blockdev::le::put_u32(out, 0, *self)
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        Ok(blockdev::le::get_u32(b, 0))
    }
}

impl Codec for u64 {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut [u8]) {
        blockdev::le::put_u64(out, 0, *self)
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        Ok(blockdev::le::get_u64(b, 0))
    }
}
