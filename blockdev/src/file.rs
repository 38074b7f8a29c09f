//! A regular file or a block device, through pread/pwrite.
use crate::{check_range, BlockDevice};
use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileExt, FileTypeExt},
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// A file-backed device. Its length is taken when opened and changes only through
/// [`BlockDevice::grow`] (after the file or block device was extended).
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    len: AtomicU64,
    is_blockdev: bool,
}

impl FileDevice {
    /// Open an existing file or block device read-write.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_with(path, true)
    }

    /// Open an existing file or block device, read-only when `writable` is false.
    pub fn open_with(path: &Path, writable: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        let meta = file.metadata()?;
        let is_blockdev = meta.file_type().is_block_device();
        let len = if is_blockdev {
            blockdev_size(&file)?
        } else {
            meta.len()
        };
        Ok(FileDevice {
            file,
            path: path.to_owned(),
            len: AtomicU64::new(len),
            is_blockdev,
        })
    }

    /// Create (or truncate to) a sparse regular file of `len` bytes.
    pub fn create(path: &Path, len: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len)?;
        Ok(FileDevice {
            file,
            path: path.to_owned(),
            len: AtomicU64::new(len),
            is_blockdev: false,
        })
    }

    /// The path this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for callers that take their own lock on it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether this is a block device (not a regular file).
    pub fn is_block_device(&self) -> bool {
        self.is_blockdev
    }

    /// The size of the file or block device now (not [`BlockDevice::len`], which
    /// changes only through [`BlockDevice::grow`]).
    fn current_len(&self) -> io::Result<u64> {
        if self.is_blockdev {
            blockdev_size(&self.file)
        } else {
            Ok(self.file.metadata()?.len())
        }
    }
}

fn blockdev_size(file: &File) -> io::Result<u64> {
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live,
    // properly aligned u64 on our stack; the fd is open for the duration of the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

impl BlockDevice for FileDevice {
    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }
    fn grow(&self) -> io::Result<u64> {
        let now = self.current_len()?;
        self.len.fetch_max(now, Ordering::AcqRel);
        Ok(now)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len)?;
        if self.is_blockdev || len == 0 {
            return Ok(());
        }
        // SAFETY: fallocate takes plain integers and an fd that stays open for the call.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                0,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the filesystem cannot preallocate (fallocate: {e})"),
                ));
            }
            return Err(e);
        }
        Ok(())
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.file.as_raw_fd())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len(), offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(self.len(), offset, buf.len() as u64)?;
        self.file.write_all_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: sync_file_range takes plain integers and an fd that stays open for
        // the call; SYNC_FILE_RANGE_WRITE only starts writeback of dirty pages.
        let r = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if self.is_blockdev {
            // BLKDISCARD = _IO(0x12, 119); a hint, so failure is not an error.
            const BLKDISCARD: libc::c_ulong = 0x1277;
            let range = [offset, len];
            // SAFETY: BLKDISCARD reads two u64 from the pointer, which points to a live
            // array of two u64 on our stack; the fd is open for the duration of the call.
            let _ = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKDISCARD as _, range.as_ptr()) };
            return Ok(());
        }
        // SAFETY: fallocate takes plain integers and an fd that stays open for the call.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // Filesystems without hole punching: discard is only a hint.
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }
}
