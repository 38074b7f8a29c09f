//! The ublk control device: whether the driver is there, and libublk's per-thread
//! control ring.
//!
//! libublk 0.4.8 sends control commands through a *thread-local* io_uring that only
//! `UblkCtrl`'s constructor initialises, and panics on any thread without one. A
//! `UblkCtrl` built on one thread and stopped, started or dropped on another must call
//! [`ensure_ctrl_ring`] there first.
use std::path::Path;

use crate::{Error, Result};

/// The driver's control node.
pub const CTRL_PATH: &str = "/dev/ublk-control";

/// Entries in a control ring; control commands are sent one at a time.
const CTRL_RING_DEPTH: u32 = 16;

/// Whether the ublk driver is loaded (`/dev/ublk-control` exists).
pub fn ublk_available() -> bool {
    Path::new(CTRL_PATH).exists()
}

/// [`Error::NotAvailable`] (with its `modprobe ublk_drv` hint) unless the driver is loaded.
pub fn check_available() -> Result<()> {
    if ublk_available() {
        Ok(())
    } else {
        Err(Error::NotAvailable)
    }
}

/// Give the calling thread a libublk control ring if it has none.
pub(crate) fn ensure_ctrl_ring() -> Result<()> {
    libublk::ublk_init_ctrl_task_ring(|ring| {
        if ring.is_none() {
            let r = io_uring::IoUring::<io_uring::squeue::Entry128>::builder()
                .build(CTRL_RING_DEPTH)
                .map_err(libublk::UblkError::IOError)?;
            *ring = Some(r);
        }
        Ok(())
    })
    .map_err(|e| Error::ublk("control ring setup", e))
}
