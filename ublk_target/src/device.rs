//! [`Device`]: one running ublk device, from ADD_DEV (or START_USER_RECOVERY) to
//! DEL_DEV, and the thread that drives it.
//!
//! # Threads
//! `start` spawns a control thread that runs libublk's `run_target`: it spawns one
//! thread per queue, sends START_DEV, and then waits for the queues to end. `stop`
//! sends STOP_DEV from the caller's thread, which makes the kernel abort every queued
//! fetch; the queue threads return, the control thread joins them, and `stop` joins it
//! and deletes the device.
use std::{
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use libublk::{
    ctrl::{UblkCtrl, UblkCtrlBuilder},
    io::UblkDev,
    sys, UblkError, UblkFlags,
};

use crate::{
    control::{check_available, ensure_ctrl_ring},
    error::ublk_to_io,
    params::device_params,
    queue::{self, SetupFailure},
    request::SECTOR_SIZE,
    DataPath, DeviceOptions, Error, Features, Result, Target,
};

/// Flags a recovered device keeps from the one it replaces (a zero-copy device stays
/// one: its queues fetch with auto registration).
const RECOVERY_FLAGS: u64 = (sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE) as u64
    | crate::options::ZERO_COPY_FLAGS;

/// A running ublk device, `/dev/ublkbN`; its queues run on their own threads.
///
/// Dropping a `Device` stops and deletes it, as [`Device::stop`] does, but logs
/// failures instead of returning them.
pub struct Device {
    ctrl: Arc<UblkCtrl>,
    dev_id: u32,
    daemon: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("dev_id", &self.dev_id)
            .field("running", &self.daemon.is_some())
            .finish()
    }
}

impl Device {
    /// Create a device serving `target` and return once `/dev/ublkbN` exists.
    pub fn start(target: Arc<dyn Target>, opts: DeviceOptions) -> Result<Device> {
        check_available()?;
        let size_bytes = target.size_bytes();
        opts.check(size_bytes)?;
        ensure_ctrl_ring()?;
        let id = opts.dev_id.map_or(-1, |id| id as i32); // checked above
        if id >= 0 && UblkCtrl::new_simple(id).is_ok() {
            // libublk 0.4.8 quirk: when ADD_DEV fails, dropping the half-built control
            // sends DEL_DEV for the id it asked for, deleting the device that already
            // has it. Refuse taken ids up front (racy only against other creators).
            return Err(Error::Ublk {
                op: "add",
                source: std::io::Error::from_raw_os_error(libc::EEXIST),
            });
        }
        let ctrl = UblkCtrlBuilder::default()
            .name(&opts.name)
            .id(id)
            .nr_queues(opts.nr_queues)
            .depth(opts.queue_depth)
            .io_buf_bytes(opts.io_buf_bytes)
            .ctrl_flags(opts.ctrl_flags())
            .dev_flags(UblkFlags::UBLK_DEV_F_ADD_DEV)
            .build()
            .map_err(|e| Error::ublk("add", e))?;
        let params = device_params(&opts, size_bytes);
        Self::launch(Arc::new(ctrl), target, params, &opts)
    }

    /// Take over device `dev_id` after its daemon died (`UBLK_F_USER_RECOVERY`), serving
    /// `target` from now on; its queues, depth and geometry are the device's own, so
    /// only `opts.name` and `opts.bdev_timeout` matter here.
    ///
    /// Fails with [`Error::NotRecoverable`] when the device was created without
    /// `user_recovery` or `target` is smaller than the device. A larger target (the
    /// old daemon grew it and died before telling the kernel) is recovered at the
    /// device's size and then resized ([`Device::update_size`]). Waits up to 30 s (libublk's
    /// limit) for the kernel to notice the old daemon is gone.
    pub fn recover(dev_id: u32, target: Arc<dyn Target>, opts: DeviceOptions) -> Result<Device> {
        check_available()?;
        let id = i32::try_from(dev_id).map_err(|_| Error::InvalidOptions("dev_id out of range"))?;
        ensure_ctrl_ring()?;
        let not = |reason| Error::NotRecoverable { dev_id, reason };

        let probe = UblkCtrl::new_simple(id).map_err(|e| Error::ublk("open", e))?;
        let info = probe.dev_info();
        if info.flags & u64::from(sys::UBLK_F_USER_RECOVERY) == 0 {
            return Err(not("it was created without user_recovery"));
        }
        let mut params = sys::ublk_params {
            len: std::mem::size_of::<sys::ublk_params>() as u32,
            types: sys::UBLK_PARAM_TYPE_BASIC | sys::UBLK_PARAM_TYPE_DISCARD,
            ..Default::default()
        };
        check_rc("get params", probe.get_params(&mut params))?;
        let kernel_size = params.basic.dev_sectors * SECTOR_SIZE;
        // Larger is fine: the old daemon grew the target and died before it told the
        // kernel (`update_size`); the kernel is told once the device is back.
        if kernel_size > target.size_bytes() {
            return Err(not("the target is smaller than the device"));
        }
        check_rc("start user recovery", probe.start_user_recover())?;
        drop(probe);

        let ctrl = UblkCtrl::new(
            Some(opts.name.clone()),
            id,
            info.nr_hw_queues.into(),
            info.queue_depth.into(),
            info.max_io_buf_bytes,
            info.flags & RECOVERY_FLAGS,
            0,
            UblkFlags::UBLK_DEV_F_RECOVER_DEV,
        )
        .map_err(|e| Error::ublk("recover", e))?;
        let want = target.size_bytes();
        let device = Self::launch(Arc::new(ctrl), target, params, &opts)?;
        if kernel_size < want {
            if let Err(e) = device.update_size(want) {
                tracing::warn!(dev_id, error = %e, "the recovered device keeps its old size");
            }
        }
        Ok(device)
    }

    /// Spawn the control thread, wait for START_DEV (or END_USER_RECOVERY) and the
    /// block node.
    fn launch(
        ctrl: Arc<UblkCtrl>,
        target: Arc<dyn Target>,
        params: sys::ublk_params,
        opts: &DeviceOptions,
    ) -> Result<Device> {
        let dev_id = ctrl.dev_info().dev_id;
        let (tx, rx) = mpsc::sync_channel::<Result<()>>(1);
        let daemon = thread::Builder::new()
            .name(format!("ublk{dev_id}-ctrl"))
            .spawn({
                let ctrl = Arc::clone(&ctrl);
                let workers = opts.workers_per_queue;
                move || run_daemon(&ctrl, target, params, workers, tx)
            })?;
        let mut device = Device {
            ctrl,
            dev_id,
            daemon: Some(daemon),
        };
        let started = rx.recv().unwrap_or(Err(Error::DaemonExited));
        if let Err(e) = started {
            // START failed: the queues may still be parked in FETCH; stopping the
            // device releases them. Errors here are secondary to `e`.
            let _ = device.shutdown();
            return Err(e);
        }
        wait_for_node(&device.bdev_path(), opts.bdev_timeout)?;
        tracing::info!(dev_id, path = %device.bdev_path().display(), "ublk device started");
        Ok(device)
    }

    /// The N of `/dev/ublkbN`.
    pub fn dev_id(&self) -> u32 {
        self.dev_id
    }

    /// The `UBLK_F_*` flags the driver created (or recovered) the device with.
    pub fn features(&self) -> Features {
        Features(self.ctrl.dev_info().flags)
    }

    /// How request data moves for this device (from [`Device::features`]).
    pub fn data_path(&self) -> DataPath {
        self.features().data_path()
    }

    /// Make the device `bytes` long while it runs (`UBLK_U_CMD_UPDATE_SIZE`: the
    /// kernel resizes the disk and tells its users, so `resize2fs` can grow a mounted
    /// filesystem). The driver must offer `UBLK_F_UPDATE_SIZE` (Linux 6.16+: see
    /// [`Features::of_driver`]; the bit is advisory, the command works wherever the
    /// driver knows it). The target must already serve `bytes`
    /// ([`Target::size_bytes`]); `bytes` must be whole logical blocks.
    pub fn update_size(&self, bytes: u64) -> Result<()> {
        ensure_ctrl_ring()?;
        check_rc("update size", self.ctrl.update_size(bytes))?;
        tracing::info!(dev_id = self.dev_id, bytes, "ublk device resized");
        Ok(())
    }

    /// `/dev/ublkbN`.
    pub fn bdev_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/ublkb{}", self.dev_id))
    }

    /// Stop and delete the device and join its threads.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// STOP_DEV, join, DEL_DEV; idempotent.
    fn shutdown(&mut self) -> Result<()> {
        let Some(daemon) = self.daemon.take() else {
            return Ok(());
        };
        ensure_ctrl_ring()?;
        let stopped = check_rc("stop", self.ctrl.kill_dev());
        if daemon.join().is_err() {
            tracing::error!(dev_id = self.dev_id, "ublk control thread panicked");
        }
        // With the queues gone nothing holds /dev/ublkcN, so DEL_DEV cannot block.
        let deleted = match check_rc("delete", self.ctrl.del_dev()) {
            Err(Error::Ublk { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(0),
            other => other,
        };
        tracing::info!(dev_id = self.dev_id, "ublk device stopped");
        stopped.and(deleted).map(drop)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(dev_id = self.dev_id, error = %e, "ublk device stop failed");
        }
    }
}

/// The control thread: `run_target` until the queues end, reporting the start on `tx`.
fn run_daemon(
    ctrl: &UblkCtrl,
    target: Arc<dyn Target>,
    params: sys::ublk_params,
    workers: u16,
    tx: mpsc::SyncSender<Result<()>>,
) {
    if let Err(e) = ensure_ctrl_ring() {
        let _ = tx.send(Err(e));
        return;
    }
    let failure = SetupFailure::default();
    let workers = usize::from(workers);
    let size_bytes = params.basic.dev_sectors * SECTOR_SIZE;
    let tgt_init = move |dev: &mut UblkDev| {
        dev.tgt.dev_size = size_bytes;
        dev.tgt.params = params;
        Ok(())
    };
    let queue_fn = {
        let failure = Arc::clone(&failure);
        move |qid: u16, dev: &UblkDev| queue::run(qid, dev, &target, workers, &failure)
    };
    let started_tx = tx.clone();
    let on_started = move |_: &UblkCtrl| {
        let _ = started_tx.send(Ok(()));
    };
    if let Err(e) = ctrl.run_target(tgt_init, queue_fn, on_started) {
        let err = failure
            .lock()
            .take()
            .unwrap_or_else(|| Error::ublk("start", e));
        // Nobody listens if the start was already reported; then there is no one to
        // tell, as run_target only fails before the start.
        let _ = tx.send(Err(err));
    }
}

/// libublk returns `Ok(-EBUSY)` for busy control commands; make every negative
/// return an error.
fn check_rc(op: &'static str, r: std::result::Result<i32, UblkError>) -> Result<i32> {
    match r {
        Ok(rc) if rc < 0 => Err(Error::Ublk {
            op,
            source: std::io::Error::from_raw_os_error(-rc),
        }),
        Ok(rc) => Ok(rc),
        Err(e) => Err(Error::Ublk {
            op,
            source: ublk_to_io(e),
        }),
    }
}

/// Wait until `path` exists: the kernel adds the disk in START_DEV, but the node may
/// come from udev a little later.
fn wait_for_node(path: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(Error::NoBlockDevice {
                path: path.to_path_buf(),
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
