//! The store as ublk devices. This file is the activation table: which store
//! devices have a running ublk device.
//!
//! The origin has one for the daemon's whole life; a snapshot has one only while it
//! is active, so an inactive snapshot costs no device and no thread.
//!
//! - [`target`]: [`StoreTarget`](target::StoreTarget), the ublk target over the
//!   shared store each device runs.
//! - [`kernel`]: what the ublk driver offers and what each device uses, for
//!   `status`.
//!
//! # Invariants
//! Below the service: nothing here names the service or the daemon; the service
//! owns the table and decides when devices start and stop.
pub mod kernel;
pub mod target;

use exception_store::Dev;
use std::collections::BTreeMap;
use ublk_target::Device;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Devices {
    map: BTreeMap<Dev, Device>,
}

impl Devices {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The device of `dev`, if active.
    pub fn get(&self, dev: Dev) -> Option<&Device> {
        self.map.get(&dev)
    }

    /// `/dev/ublkbN` of `dev`, if active.
    pub fn path(&self, dev: Dev) -> Option<String> {
        self.get(dev).map(|d| d.bdev_path().display().to_string())
    }

    /// Record a running device.
    pub fn insert(&mut self, dev: Dev, device: Device) {
        if let Some(old) = self.map.insert(dev, device) {
            tracing::error!(?dev, "replaced a running device; stopping the old one");
            drop(old);
        }
    }

    /// Take a device out of the table (the caller stops it).
    pub fn remove(&mut self, dev: Dev) -> Option<Device> {
        self.map.remove(&dev)
    }

    /// Every active device, origin first.
    pub fn iter(&self) -> impl Iterator<Item = (Dev, &Device)> {
        self.map.iter().map(|(d, dev)| (*d, dev))
    }

    /// Stop every device, snapshots first; failures are logged.
    pub fn stop_all(&mut self) {
        while let Some((dev, device)) = self.map.pop_last() {
            if let Err(e) = device.stop() {
                tracing::warn!(?dev, error = %e, "stopping a device failed");
            }
        }
    }
}
