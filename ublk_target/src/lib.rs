//! ublk devices for ublk-snap: put any byte-addressed volume behind a Linux ublk block
//! device, `/dev/ublkbN`, through libublk.
//!
//! A [`Target`] is what the device serves; [`Device::start`] creates the device and
//! serves the target from one thread per queue until [`Device::stop`]. With
//! [`DeviceOptions::user_recovery`] a device outlives a crashed daemon and a new one
//! takes it over with [`Device::recover`].
//!
//! # Guarantees
//! - READ, WRITE, FLUSH, DISCARD and WRITE_ZEROES reach the target as byte ranges inside
//!   it; anything else completes with `EOPNOTSUPP`.
//! - The device advertises a volatile write cache, so the kernel sends FLUSH (and
//!   emulates FUA with it); a write is durable once a later [`Target::flush`] is.
//! - Target errors complete the request with the errno from [`errno::errno`].
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use ublk_target::{Device, DeviceOptions, MemTarget};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let target = Arc::new(MemTarget::new(64 << 20)?);
//! let dev = Device::start(target, DeviceOptions { nr_queues: 2, ..Default::default() })?;
//! println!("serving {}", dev.bdev_path().display());
//! dev.stop()?;
//! # Ok(())
//! # }
//! ```
//!
//! Needs root and the `ublk_drv` module; check with [`ublk_available`] first.
#![warn(missing_docs)]

mod batch;
mod control;
mod device;
pub mod errno;
mod error;
mod features;
mod mem;
mod options;
mod params;
mod queue;
mod request;
mod target;
mod zero_copy;

pub use control::{check_available, ublk_available, CTRL_PATH};
pub use device::Device;
pub use error::{Error, Result};
pub use features::{DataPath, Features};
pub use mem::MemTarget;
pub use options::{DeviceOptions, ZERO_COPY_FLAGS};
pub use request::SECTOR_SIZE;
pub use target::{DirectWrite, Piece, PieceSource, Plan, Target, WriteStart};
