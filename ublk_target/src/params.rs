//! The `ublk_params` sent to the driver: geometry, cache mode, discard limits.
use libublk::sys;

use crate::{request::SECTOR_SIZE, DeviceOptions};

/// Largest discard or write-zeroes request, in sectors (1 GiB).
const MAX_DISCARD_SECTORS: u32 = (1 << 30) / SECTOR_SIZE as u32;

/// Parameters for a device of `size_bytes` shaped by `opts` (already checked).
pub(crate) fn device_params(opts: &DeviceOptions, size_bytes: u64) -> sys::ublk_params {
    let lbs_shift = opts.logical_block_size.trailing_zeros() as u8;
    // Report 4 KiB physical blocks at least: the store works in whole chunks.
    let pbs_shift = lbs_shift.max(12);
    sys::ublk_params {
        len: std::mem::size_of::<sys::ublk_params>() as u32,
        types: sys::UBLK_PARAM_TYPE_BASIC | sys::UBLK_PARAM_TYPE_DISCARD,
        basic: sys::ublk_param_basic {
            // A write cache: the kernel sends FLUSH. FUA is served (a write with
            // UBLK_IO_F_FUA is followed by a full flush before it completes), so the
            // kernel passes FUA down instead of emulating it with a post-flush. That
            // also matters for user recovery: on Linux 6.12 a write parked between its
            // data and its post-flush counts as in flight forever once the queue is
            // quiesced, and recovery after a daemon crash never finishes
            // (tests/vm/soak_kill.sh with SOAK_DSYNC=1 hung in START_USER_RECOVERY).
            attrs: sys::UBLK_ATTR_VOLATILE_CACHE | sys::UBLK_ATTR_FUA,
            logical_bs_shift: lbs_shift,
            physical_bs_shift: pbs_shift,
            io_opt_shift: pbs_shift,
            io_min_shift: pbs_shift,
            max_sectors: opts.io_buf_bytes / SECTOR_SIZE as u32,
            dev_sectors: size_bytes / SECTOR_SIZE,
            ..Default::default()
        },
        discard: sys::ublk_param_discard {
            discard_alignment: 0,
            discard_granularity: opts.discard_granularity,
            max_discard_sectors: MAX_DISCARD_SECTORS,
            max_write_zeroes_sectors: MAX_DISCARD_SECTORS,
            // The descriptor carries one range, so one segment per request.
            max_discard_segments: 1,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        let opts = DeviceOptions {
            logical_block_size: 4096,
            ..DeviceOptions::default()
        };
        let p = device_params(&opts, 64 << 20);
        assert_eq!(p.basic.logical_bs_shift, 12);
        assert_eq!(p.basic.physical_bs_shift, 12);
        assert_eq!(p.basic.dev_sectors, (64 << 20) / 512);
        assert_eq!(p.basic.max_sectors, (512 << 10) / 512);
        assert_ne!(p.types & sys::UBLK_PARAM_TYPE_DISCARD, 0);
        assert_eq!(p.discard.max_discard_segments, 1);
        assert_ne!(p.basic.attrs & sys::UBLK_ATTR_FUA, 0);
        assert_ne!(p.basic.attrs & sys::UBLK_ATTR_VOLATILE_CACHE, 0);
        let p = device_params(&DeviceOptions::default(), 1 << 20);
        assert_eq!(p.basic.logical_bs_shift, 9);
    }
}
