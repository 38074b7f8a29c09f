//! Copying a range from one device to another inside the kernel (`copy_file_range`),
//! when both are regular files that allow it: one copy between page caches (or a
//! shared extent, on file systems that reflink) instead of a read into memory and a
//! write back out.
use crate::{check_range, BlockDevice};
use std::io;

/// Copy `len` bytes at `src_off` of `src` to `dst_off` of `dst` with
/// `copy_file_range(2)`. Returns `Ok(false)`, having copied nothing, when the devices
/// have no file descriptor (memory and test devices) or the kernel cannot do it for
/// this pair (block devices, two file systems, an old kernel): the caller copies
/// through memory. An error after part of the range was copied is returned.
pub fn copy_range(
    src: &dyn BlockDevice,
    src_off: u64,
    dst: &dyn BlockDevice,
    dst_off: u64,
    len: u64,
) -> io::Result<bool> {
    check_range(src.len(), src_off, len)?;
    check_range(dst.len(), dst_off, len)?;
    let (Some(sfd), Some(dfd)) = (src.raw_fd(), dst.raw_fd()) else {
        return Ok(false);
    };
    let mut done = 0u64;
    while done < len {
        let mut so = (src_off + done) as libc::loff_t;
        let mut d_o = (dst_off + done) as libc::loff_t;
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: both fds stay open for the call (the devices are borrowed); the two
        // offsets point to live loff_t on our stack, which the kernel updates; no
        // memory of ours is read or written otherwise.
        let n = unsafe { libc::copy_file_range(sfd, &mut so, dfd, &mut d_o, want, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            let unsupported = matches!(
                e.raw_os_error(),
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EBADF)
            );
            if done == 0 && unsupported {
                return Ok(false);
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "copy_file_range: end of the source file",
            ));
        }
        done += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileDevice, MemDevice};

    #[test]
    fn copies_between_files_and_declines_memory_devices() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileDevice::create(&dir.path().join("a"), 1 << 20).unwrap();
        let b = FileDevice::create(&dir.path().join("b"), 1 << 20).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        a.write_at(&data, 1000).unwrap();
        match copy_range(&a, 1000, &b, 70_000, data.len() as u64) {
            Ok(true) => {
                let mut got = vec![0u8; data.len()];
                b.read_at(&mut got, 70_000).unwrap();
                assert_eq!(got, data);
            }
            // a file system without copy_file_range: nothing copied
            Ok(false) => {
                let mut got = vec![1u8; data.len()];
                b.read_at(&mut got, 70_000).unwrap();
                assert!(got.iter().all(|&x| x == 0));
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            copy_range(&a, (1 << 20) - 10, &b, 0, 11).is_err(),
            "past the end"
        );
        let m = MemDevice::new(1 << 20);
        assert!(!copy_range(&m, 0, &b, 0, 4096).unwrap());
        assert!(!copy_range(&a, 0, &m, 0, 4096).unwrap());
    }
}
