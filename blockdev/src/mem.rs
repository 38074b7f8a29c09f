//! An in-memory block device.
use crate::{check_range, BlockDevice};
use parking_lot::RwLock;
use std::{fmt, io};

/// A device held in a byte vector. Flush is a no-op; nothing is ever lost.
pub struct MemDevice {
    data: RwLock<Vec<u8>>,
}

impl MemDevice {
    /// A zero-filled device of `len` bytes.
    pub fn new(len: u64) -> Self {
        Self::from_vec(vec![0; len as usize])
    }
    /// A device holding exactly these bytes.
    pub fn from_vec(v: Vec<u8>) -> Self {
        MemDevice {
            data: RwLock::new(v),
        }
    }
    /// A copy of the whole contents.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data.read().clone()
    }
    /// Extend the device with zeros to `len` bytes (as `truncate` extends a file);
    /// never shrinks. [`BlockDevice::len`] shows the new size at once.
    pub fn extend(&self, len: u64) {
        let mut d = self.data.write();
        if len as usize > d.len() {
            d.resize(len as usize, 0);
        }
    }
}

impl fmt::Debug for MemDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemDevice({} bytes)", self.len())
    }
}

impl BlockDevice for MemDevice {
    fn len(&self) -> u64 {
        self.data.read().len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.data.read();
        check_range(d.len() as u64, offset, buf.len() as u64)?;
        let o = offset as usize;
        buf.copy_from_slice(&d[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut d = self.data.write();
        check_range(d.len() as u64, offset, buf.len() as u64)?;
        let o = offset as usize;
        d[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}
