//! [`MemTarget`]: a RAM-backed [`Target`] for tests and examples.
use std::{fmt, io};

use parking_lot::RwLock;

use crate::Target;

/// A volume held in memory. Discarded and zeroed ranges read back as zeroes.
pub struct MemTarget {
    data: RwLock<Vec<u8>>,
}

impl MemTarget {
    /// A zero-filled volume of `size_bytes`.
    pub fn new(size_bytes: u64) -> io::Result<Self> {
        let len = usize::try_from(size_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size exceeds memory"))?;
        Ok(MemTarget {
            data: RwLock::new(vec![0; len]),
        })
    }

    fn range(&self, len_bytes: usize, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        let start = usize::try_from(offset).ok();
        let end = offset
            .checked_add(len)
            .and_then(|e| usize::try_from(e).ok());
        match (start, end) {
            (Some(s), Some(e)) if e <= len_bytes => Ok(s..e),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes at {offset} outside a volume of {len_bytes} bytes"),
            )),
        }
    }

    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut data = self.data.write();
        let r = self.range(data.len(), offset, len)?;
        data[r].fill(0);
        Ok(())
    }
}

impl fmt::Debug for MemTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemTarget")
            .field("size_bytes", &self.data.read().len())
            .finish()
    }
}

impl Target for MemTarget {
    fn size_bytes(&self) -> u64 {
        self.data.read().len() as u64
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.data.read();
        let r = self.range(data.len(), offset, buf.len() as u64)?;
        buf.copy_from_slice(&data[r]);
        Ok(())
    }

    fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut data = self.data.write();
        let r = self.range(data.len(), offset, buf.len() as u64)?;
        data[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.zero(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.zero(offset, len)
    }
}
