//! [`DeviceOptions`]: how a ublk device is shaped, and the checks that it can be.
use std::time::Duration;

use libublk::sys;

use crate::{Error, Result};

/// The flags of a zero-copy device (`UBLK_F_AUTO_BUF_REG | UBLK_F_USER_COPY`).
pub const ZERO_COPY_FLAGS: u64 = (sys::UBLK_F_AUTO_BUF_REG as u64) | (sys::UBLK_F_USER_COPY as u64);

/// Largest I/O buffer libublk 0.4.8 accepts per tag (its private `MAX_BUF_SZ`).
const MAX_IO_BUF_BYTES: u32 = 32 << 20;

/// Options for [`crate::Device::start`] and [`crate::Device::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOptions {
    /// Ask for `/dev/ublkbN` with this N; `None` lets the driver pick.
    pub dev_id: Option<u32>,
    /// Hardware queues, each served by its own thread.
    pub nr_queues: u16,
    /// Requests in flight per queue.
    pub queue_depth: u16,
    /// 512 or 4096.
    pub logical_block_size: u32,
    /// Target name recorded by libublk (shows in its JSON under `/run/ublksrvd`).
    pub name: String,
    /// Create with `UBLK_F_USER_RECOVERY`: after the daemon dies the device waits,
    /// queued, for [`crate::Device::recover`] instead of failing I/O.
    pub user_recovery: bool,
    /// With `user_recovery`: also `UBLK_F_USER_RECOVERY_REISSUE`, so requests in flight
    /// when the daemon died are sent again to the recovered daemon instead of failing
    /// with EIO. Only for targets whose requests are idempotent (ublk-snap's are: a
    /// write is redone from the committed state).
    pub user_recovery_reissue: bool,
    /// Largest single read or write, in bytes (a page multiple); one buffer per tag.
    pub io_buf_bytes: u32,
    /// Discard granularity in bytes (a multiple of `logical_block_size`).
    pub discard_granularity: u32,
    /// How long [`crate::Device::start`] waits for `/dev/ublkbN` to appear.
    pub bdev_timeout: Duration,
    /// Worker threads per queue. 0: the queue thread serves each request itself, one
    /// at a time. N > 0: the queue thread hands requests to N workers and completes
    /// them as they finish (an eventfd read on the queue's io_uring wakes it), so up
    /// to N requests of the queue are served at once: a request waiting for a commit
    /// no longer stalls the others, and concurrent first writes share one commit.
    pub workers_per_queue: u16,
    /// Zero copy (`UBLK_F_AUTO_BUF_REG` with `UBLK_F_USER_COPY`): request data goes
    /// between the kernel's pages and the backing files with fixed-buffer io_uring
    /// I/O wherever the target allows it (`Target::read_plan`,
    /// `Target::direct_write_start`), and is copied with `pread`/`pwrite` on
    /// `/dev/ublkcN` elsewhere. Only where the driver offers it
    /// ([`crate::Features::of_driver`]); the queues then serve inline whatever
    /// `workers_per_queue` says.
    pub zero_copy: bool,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            dev_id: None,
            nr_queues: 1,
            queue_depth: 64,
            logical_block_size: 512,
            name: "ublk-snap".to_string(),
            user_recovery: false,
            user_recovery_reissue: false,
            io_buf_bytes: 512 << 10,
            discard_granularity: 4096,
            bdev_timeout: Duration::from_secs(10),
            workers_per_queue: 0,
            zero_copy: false,
        }
    }
}

impl DeviceOptions {
    /// Check the options against a target of `size_bytes`.
    pub fn check(&self, size_bytes: u64) -> Result<()> {
        let bad = |why| Err(Error::InvalidOptions(why));
        if !matches!(self.logical_block_size, 512 | 4096) {
            return bad("logical_block_size must be 512 or 4096");
        }
        if self.nr_queues == 0 || u32::from(self.nr_queues) > sys::UBLK_MAX_NR_QUEUES {
            return bad("nr_queues out of range");
        }
        if self.queue_depth == 0 || u32::from(self.queue_depth) > sys::UBLK_MAX_QUEUE_DEPTH {
            return bad("queue_depth out of range");
        }
        if self.io_buf_bytes < 4096
            || self.io_buf_bytes > MAX_IO_BUF_BYTES
            || self.io_buf_bytes & 4095 != 0
        {
            return bad("io_buf_bytes must be a multiple of 4096 up to 32 MiB");
        }
        // logical_block_size is a power of two, so masks test divisibility.
        let lbs_mask = self.logical_block_size - 1;
        if self.discard_granularity == 0 || self.discard_granularity & lbs_mask != 0 {
            return bad("discard_granularity must be a multiple of logical_block_size");
        }
        if self.workers_per_queue > self.queue_depth {
            return bad("workers_per_queue must not exceed queue_depth");
        }
        if self.dev_id.is_some_and(|id| i32::try_from(id).is_err()) {
            return bad("dev_id out of range");
        }
        if size_bytes == 0 || size_bytes & u64::from(lbs_mask) != 0 {
            return bad("target size must be a non-zero multiple of logical_block_size");
        }
        Ok(())
    }

    /// The `ctrl_flags` passed to ADD_DEV.
    pub(crate) fn ctrl_flags(&self) -> u64 {
        let zc = if self.zero_copy { ZERO_COPY_FLAGS } else { 0 };
        zc | match (self.user_recovery, self.user_recovery_reissue) {
            (true, true) => {
                u64::from(sys::UBLK_F_USER_RECOVERY) | u64::from(sys::UBLK_F_USER_RECOVERY_REISSUE)
            }
            (true, false) => u64::from(sys::UBLK_F_USER_RECOVERY),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        DeviceOptions::default().check(1 << 30).unwrap();
    }

    #[test]
    fn rejects() {
        let ok = DeviceOptions::default();
        let cases: [(DeviceOptions, u64); 8] = [
            (
                DeviceOptions {
                    workers_per_queue: 65,
                    ..ok.clone()
                },
                1 << 20,
            ),
            (
                DeviceOptions {
                    logical_block_size: 1024,
                    ..ok.clone()
                },
                1 << 20,
            ),
            (
                DeviceOptions {
                    nr_queues: 0,
                    ..ok.clone()
                },
                1 << 20,
            ),
            (
                DeviceOptions {
                    queue_depth: 0,
                    ..ok.clone()
                },
                1 << 20,
            ),
            (
                DeviceOptions {
                    io_buf_bytes: 1000,
                    ..ok.clone()
                },
                1 << 20,
            ),
            (
                DeviceOptions {
                    dev_id: Some(u32::MAX),
                    ..ok.clone()
                },
                1 << 20,
            ),
            (
                DeviceOptions {
                    logical_block_size: 4096,
                    ..ok.clone()
                },
                4096 + 512,
            ),
            (ok.clone(), 0),
        ];
        for (opts, size) in cases {
            assert!(
                matches!(opts.check(size), Err(Error::InvalidOptions(_))),
                "{opts:?} {size}"
            );
        }
    }
}
