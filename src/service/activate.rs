//! The [`Service`] and its ublk devices: starting the origin's device (and taking
//! back a crashed daemon's), `activate` / `deactivate` of a snapshot, the ublk
//! target each device runs, and the state file written whenever the set changes.
//!
//! # Invariants
//! - A snapshot counts as in use (never the space policy's victim) from before
//!   its device starts until it is stopped (or while it is still exported).
//! - Every change to the set of devices is recorded in the state file before the
//!   op answers, so a daemon restarted after a crash takes the same devices back.
use super::{
    changed,
    state::{ActiveSnapshot, State, StateFile, STATE_VERSION},
    Service,
};
use crate::{
    protocol,
    ublk::{target::StoreTarget, Devices},
    Error, Result,
};
use blockdev::ids::SnapId;
use exception_store::Dev;
use std::{path::Path, sync::Arc};
use ublk_target::{Device, DeviceOptions};

impl Service {
    /// Start the origin's device and, after a crash, take back (or recreate) the
    /// devices the state file records. Returns the origin's `/dev/ublkbN`.
    pub fn start_devices(&self) -> Result<String> {
        match self.copy_reason() {
            Some(why) if why.is_surprise() => {
                tracing::warn!(reason = %why, "zero copy is off: the devices copy request data")
            }
            _ => {}
        }
        let previous = self.state.as_ref().and_then(StateFile::load);
        if let Some(p) = &previous {
            tracing::warn!(
                pid = p.pid,
                "the previous daemon did not shut down cleanly; taking its devices back"
            );
        }
        let mut devs = self.devices.lock();
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(id) = previous.as_ref().and_then(|p| p.deferred_merge) {
            tracing::info!(id, "a merge is still deferred until the origin is closed");
            *self.deferred_merge.lock() = Some(SnapId(id));
        }
        let origin_id = previous.as_ref().and_then(|p| p.origin_dev_id);
        let origin = self.bring_up(Dev::Origin(0), origin_id)?;
        devs.insert(Dev::Origin(0), origin);
        self.start_origins(&mut devs, previous.as_ref());
        for s in previous.iter().flat_map(|p| &p.snapshots) {
            let id = SnapId(s.id);
            if !self.store.lock().exists(Dev::Snap(id)) {
                tracing::warn!(name = %s.name, dev_id = s.dev_id, "recorded snapshot no longer exists");
                continue;
            }
            match self.bring_up(Dev::Snap(id), Some(s.dev_id)) {
                Ok(d) => {
                    devs.insert(Dev::Snap(id), d);
                    self.store.lock().set_in_use(id, true);
                }
                Err(e) => {
                    tracing::error!(name = %s.name, error = %e, "cannot bring back snapshot device")
                }
            }
        }
        if let Some(p) = &previous {
            self.restore_exports(p);
        }
        self.save_state(&devs);
        devs.path(Dev::Origin(0))
            .ok_or_else(|| Error::StartFailed("the origin device did not start".into()))
    }

    /// `activate`.
    pub fn activate(&self, name: &str) -> Result<protocol::Activated> {
        let mut devs = self.devices.lock();
        let id = self.lookup(name)?;
        let dev = Dev::Snap(id);
        if devs.get(dev).is_none() {
            self.origin_served_for(id, name, "activate")?;
            // the space policy must not delete a snapshot whose device is up
            self.store.lock().set_in_use(id, true);
            let device = match self.bring_up(dev, None) {
                Ok(d) => d,
                Err(e) => {
                    self.store.lock().set_in_use(id, false);
                    return Err(e);
                }
            };
            devs.insert(dev, device);
            self.save_state(&devs);
            tracing::info!(name, device = ?devs.path(dev), "snapshot activated");
        }
        Ok(protocol::Activated {
            name: name.to_owned(),
            device: devs.path(dev).unwrap_or_default(),
            txn_id: self.txn(),
        })
    }

    /// Refuse to `verb` snapshot `id` (called `name`) when its origin has no device
    /// (missing at start): it reads the origin wherever it shares a chunk with it,
    /// so its device would fail those reads with I/O errors.
    pub(crate) fn origin_served_for(&self, id: SnapId, name: &str, verb: &str) -> Result<()> {
        let s = self.store.lock();
        let k = s.origin_of(Dev::Snap(id))?;
        if s.origin_attached(k) {
            return Ok(());
        }
        let origin = s.origins().into_iter().find(|o| o.id == k).map(|o| o.name);
        Err(Error::Store(exception_store::Error::OriginMissing(
            format!(
                "snapshot {name:?} reads origin {:?} where it shares chunks with it, and that \
             origin is not served (its device was missing at start, see `origin list`): \
             {verb} it once the origin is back",
                origin.as_deref().unwrap_or("origin")
            ),
        )))
    }

    /// `deactivate`.
    pub fn deactivate(&self, name: &str) -> Result<protocol::Changed> {
        let mut devs = self.devices.lock();
        let id = self.lookup(name)?;
        let device = devs
            .remove(Dev::Snap(id))
            .ok_or_else(|| Error::NotActive(name.to_owned()))?;
        let stopped = device.stop();
        self.refresh_in_use(&devs, id);
        self.save_state(&devs);
        stopped?;
        let t = crate::ublk::target::flush(&self.store, Dev::Snap(id))?;
        tracing::info!(name, "snapshot deactivated");
        Ok(changed(name, t.0))
    }

    /// The ublk target of `dev`: what its device's queues call, so also a way to do
    /// I/O as the kernel would without one (tests).
    pub fn target(&self, dev: Dev) -> StoreTarget {
        StoreTarget::new(
            self.store.clone(),
            dev,
            self.cfg.uring_reads,
            self.refusals.clone(),
        )
        .refusing_writes_while(self.repl.receiving_flag())
    }

    /// Create (or take back) the ublk device of `dev`. With `recorded` (a device id
    /// from the state file): if the kernel still has that device, recover it
    /// (`UBLK_F_USER_RECOVERY`); else start a fresh one, with that id if it is free.
    pub(crate) fn bring_up(&self, dev: Dev, recorded: Option<u32>) -> Result<Device> {
        let target = Arc::new(self.target(dev));
        let opts = DeviceOptions {
            dev_id: None,
            zero_copy: self.zero_copy_offered(),
            ..self.cfg.device.clone()
        };
        if let Some(id) = recorded {
            if kernel_has_device(id) {
                match Device::recover(id, target.clone(), opts.clone()) {
                    Ok(d) => {
                        tracing::info!(?dev, dev_id = id, "device recovered");
                        return Ok(d);
                    }
                    Err(e) => {
                        tracing::error!(?dev, dev_id = id, error = %e, "recovery failed; starting a new device")
                    }
                }
            } else {
                let same = DeviceOptions {
                    dev_id: Some(id),
                    ..opts.clone()
                };
                match Device::start(target.clone(), same) {
                    Ok(d) => return Ok(d),
                    Err(e) => {
                        tracing::warn!(?dev, dev_id = id, error = %e, "cannot reuse the device id")
                    }
                }
            }
        }
        Ok(Device::start(target, opts)?)
    }

    /// Whether new devices can be zero-copy: the driver offers auto buffer
    /// registration and user copy (7.x; not 6.12), the queues serve inline (no
    /// `--workers-per-queue`: the request buffers belong to the queue's own ring),
    /// and the origin has a descriptor for the queues' fixed-buffer writes.
    fn zero_copy_offered(&self) -> bool {
        self.copy_reason().is_none()
    }

    /// Why new devices copy request data (`None`: they are zero-copy); status
    /// reports it with each copying device (`crate::ublk::kernel::copy_reason`).
    pub(crate) fn copy_reason(&self) -> Option<crate::ublk::kernel::CopyReason> {
        let driver = self
            .driver
            .get_or_init(crate::ublk::kernel::driver_features);
        crate::ublk::kernel::copy_reason(
            self.cfg.device.zero_copy,
            *driver,
            self.cfg.device.workers_per_queue,
            self.store.origin_writes_direct(0),
        )
    }

    pub(crate) fn save_state(&self, devs: &Devices) {
        let Some(file) = &self.state else {
            return;
        };
        let s = self.store.lock();
        let state = State {
            version: STATE_VERSION,
            store: self.cfg.store.display().to_string(),
            pid: std::process::id(),
            origin_dev_id: devs.get(Dev::Origin(0)).map(Device::dev_id),
            origins: devs
                .iter()
                .filter_map(|(dev, d)| match dev {
                    Dev::Origin(k) if k != 0 => Some(super::state::ActiveOrigin {
                        id: k,
                        dev_id: d.dev_id(),
                    }),
                    _ => None,
                })
                .collect(),
            snapshots: devs
                .iter()
                .filter_map(|(dev, d)| match dev {
                    Dev::Origin(_) => None,
                    Dev::Snap(id) => Some(ActiveSnapshot {
                        id: id.0,
                        name: s
                            .snapshots()
                            .into_iter()
                            .find(|i| i.id == id)
                            .map(|i| i.name)
                            .unwrap_or_default(),
                        dev_id: d.dev_id(),
                    }),
                })
                .collect(),
            deferred_merge: self.deferred_merge.lock().map(|id| id.0),
            exports: self.recorded_exports(),
        };
        drop(s);
        if let Err(e) = file.save(&state) {
            tracing::error!(error = %e, "cannot write the state file; devices will not be recovered after a crash");
        }
    }
}

/// Whether the kernel has ublk device `id` (its char device exists from ADD_DEV to
/// DEL_DEV, whether or not a daemon serves it).
fn kernel_has_device(id: u32) -> bool {
    Path::new(&format!("/sys/class/ublk-char/ublkc{id}")).exists()
        || Path::new(&format!("/dev/ublkc{id}")).exists()
}
