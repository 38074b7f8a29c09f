//! The one place where a target's `io::Error` becomes the errno completed to the kernel.
//!
//! | `io::Error` | errno |
//! |---|---|
//! | has a `raw_os_error()` | that errno |
//! | `ErrorKind::InvalidInput` | `EINVAL` |
//! | `ErrorKind::Unsupported` | `EOPNOTSUPP` |
//! | anything else | `EIO` |
//!
//! Higher layers that want `ENOSPC` or `EROFS` on the block device build their
//! `io::Error` with [`io::Error::from_raw_os_error`].
use std::io;

/// The positive errno to report for `e`.
pub fn errno(e: &io::Error) -> i32 {
    match e.raw_os_error() {
        Some(rc) if rc > 0 => rc,
        _ => match e.kind() {
            io::ErrorKind::InvalidInput => libc::EINVAL,
            io::ErrorKind::Unsupported => libc::EOPNOTSUPP,
            _ => libc::EIO,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            (io::Error::from_raw_os_error(libc::ENOSPC), libc::ENOSPC),
            (io::Error::from_raw_os_error(libc::EROFS), libc::EROFS),
            (
                io::Error::new(io::ErrorKind::InvalidInput, "range"),
                libc::EINVAL,
            ),
            (
                io::Error::new(io::ErrorKind::Unsupported, "op"),
                libc::EOPNOTSUPP,
            ),
            (io::Error::other("boom"), libc::EIO),
            (
                io::Error::new(io::ErrorKind::UnexpectedEof, "short"),
                libc::EIO,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(errno(&e), want, "{e}");
        }
    }
}
