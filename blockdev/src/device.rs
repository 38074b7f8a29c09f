//! The block-device trait.
use std::{fmt, io};

/// A device addressed in bytes. Its size is fixed except through
/// [`grow`](Self::grow), which takes a backing file or device that was extended
/// outside (never shrinks).
///
/// Implementations accept any offset and length inside the device; callers that need
/// atomicity align to [`crate::SECTOR_SIZE`].
///
/// # Durability
/// A write that returned `Ok` is durable once a later [`flush`](Self::flush) returns
/// `Ok`; before that it may be lost, whole or torn at sector granularity.
pub trait BlockDevice: fmt::Debug + Send + Sync {
    /// Size of the device in bytes.
    fn len(&self) -> u64;
    /// Whether the device has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` from `offset`; the whole buffer or an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make every earlier write durable.
    fn flush(&self) -> io::Result<()>;
    /// Tell the device that a range is no longer needed (contents become unspecified).
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Start writing `[offset, offset + len)` back to stable storage now, without
    /// waiting for it (a file or block device: `sync_file_range` with
    /// `SYNC_FILE_RANGE_WRITE`). A hint for bulk data a later [`flush`](Self::flush)
    /// must make durable: the thread that wrote it starts its writeback, so that the
    /// flush (one thread) finds less to do. Durability is still the flush's; devices
    /// with no cache of their own (memory, fault injection) do nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len)
    }
    /// The descriptor whose bytes at the same offsets are this device's, for callers
    /// that read it asynchronously (io_uring) instead of through
    /// [`read_at`](Self::read_at); `None` where there is none (memory, fault
    /// injection). Valid as long as the device.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// Re-read the size of the backing file or device and return it. When it is
    /// larger than [`len`](Self::len), `len` takes it (the new bytes become
    /// addressable); when it is smaller, `len` stays (the caller refuses: nothing
    /// past the new end can be read any more). Devices whose size is their contents'
    /// (memory) return `len`.
    fn grow(&self) -> io::Result<u64> {
        Ok(self.len())
    }
    /// Give `[offset, offset + len)` storage behind it now, so that later writes there
    /// cannot fail for lack of space on the filesystem beneath (a regular file:
    /// `fallocate`). An error of kind [`io::ErrorKind::Unsupported`] says the backing
    /// cannot (a filesystem without `fallocate`); devices with nothing to allocate
    /// (block devices, memory) return `Ok`.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len)
    }
}

/// Check that `[offset, offset + len)` lies inside a device of `dev_len` bytes.
pub fn check_range(dev_len: u64, offset: u64, len: u64) -> io::Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= dev_len => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("I/O of {len} bytes at {offset} is outside a device of {dev_len} bytes"),
        )),
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for std::sync::Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).discard(offset, len)
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).raw_fd()
    }
    fn grow(&self) -> io::Result<u64> {
        (**self).grow()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).allocate(offset, len)
    }
}

#[cfg(test)]
pub(crate) mod tests;
