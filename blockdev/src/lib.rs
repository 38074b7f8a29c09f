//! Block I/O for ublk-snap: the [`BlockDevice`] trait every layer above reads and
//! writes through, and its backends.
//!
//! - [`FileDevice`]: a regular file or a block device (pread/pwrite, fdatasync).
//! - [`MemDevice`]: a byte vector; the backend of unit tests and doctests.
//! - `FaultyDevice` (feature `testing`): wraps an in-memory image, fails chosen I/Os,
//!   and simulates power loss: everything written since the last flush may be lost,
//!   whole or torn at sector granularity.
//! - `pattern` (feature `testing`): deterministic test data.
//!
//! Also the unit newtypes shared by every crate ([`ids`]), little-endian helpers for
//! on-disk encoding ([`le`]) and the one corruption type ([`Corrupt`]).
//!
//! # Contract
//! A write that returned `Ok` is durable once a later [`BlockDevice::flush`] returns
//! `Ok`. Until then it may be lost, whole or in part (sector granularity), on power
//! loss. Reads always see the latest write.
//!
//! ```
//! use blockdev::{BlockDevice, MemDevice};
//! let dev = MemDevice::new(1 << 20);
//! dev.write_at(b"hello", 4096).unwrap();
//! let mut buf = [0u8; 5];
//! dev.read_at(&mut buf, 4096).unwrap();
//! assert_eq!(&buf, b"hello");
//! ```
#![warn(missing_docs)]

mod copy;
mod corrupt;
mod device;
#[cfg(feature = "testing")]
mod faulty;
mod file;
pub mod ids;
pub mod le;
mod mem;
#[cfg(feature = "testing")]
mod pattern;

pub use copy::copy_range;
pub use corrupt::{BlockKind, Corrupt, Reason};
pub use device::{check_range, BlockDevice};
#[cfg(feature = "testing")]
pub use faulty::{CrashMode, FaultPlan, FaultyDevice};
pub use file::FileDevice;
pub use mem::MemDevice;
#[cfg(feature = "testing")]
pub use pattern::pattern;

/// The sector size: the unit of atomicity assumed of the media (see `docs/format.md`).
pub const SECTOR_SIZE: u64 = 512;
