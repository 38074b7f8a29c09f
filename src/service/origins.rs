//! The [`Service`]'s origins (a pool): attaching every origin of the store at open
//! from the path it was added with, serving each as its own ublk device,
//! `origin add`, `origin remove`, `origin list`, and the `ORIGIN@NAME` names.
//!
//! # Invariants
//! - An origin whose device cannot be opened at start, or is smaller than the
//!   origin, is reported (`origin list`, the log) and not served; the others are.
//! - An origin is served (a device up) from `origin add` until `origin remove`;
//!   the state file records its device, so a daemon restarted after a crash takes
//!   it back as it takes back the first origin's.
//! - The first origin (id 0) is the daemon's `--origin` and is never removed.
use super::{state::State, Service};
use crate::{protocol, ublk::Devices, Error, Result};
use blockdev::FileDevice;
use exception_store::{Dev, OriginId, OriginRemoved, Store};
use std::{collections::BTreeMap, sync::Arc};

/// Why each origin of the store is not served (id -> reason).
pub(crate) type Missing = BTreeMap<OriginId, String>;

/// Attach the device of every origin of `store` but the first, from the path it was
/// added with; returns those that could not be.
pub(crate) fn attach_recorded(store: &mut Store) -> Missing {
    let mut missing = Missing::new();
    for o in store.origins() {
        // the first is the daemon's --origin; one being removed is not served
        if o.id == 0 || o.removing {
            continue;
        }
        let r = FileDevice::open(std::path::Path::new(&o.path))
            .map_err(|e| format!("missing: cannot open {}: {e}", o.path))
            .and_then(|d| {
                store
                    .attach_origin(o.id, Arc::new(d))
                    .map_err(|e| format!("missing: {}: {e}", o.path))
            });
        if let Err(why) = r {
            tracing::error!(origin = %o.name, path = %o.path, %why, "origin not served");
            missing.insert(o.id, why);
        }
    }
    missing
}

impl Service {
    /// Bring up the device of every attached origin but the first (taking back the
    /// devices `previous` records).
    pub(crate) fn start_origins(&self, devs: &mut Devices, previous: Option<&State>) {
        let origins = self.store.lock().origins();
        for o in origins {
            if o.id == 0 || o.removing || self.missing.lock().contains_key(&o.id) {
                continue;
            }
            let recorded = previous
                .and_then(|p| p.origins.iter().find(|r| r.id == o.id))
                .map(|r| r.dev_id);
            match self.bring_up(Dev::Origin(o.id), recorded) {
                Ok(d) => devs.insert(Dev::Origin(o.id), d),
                Err(e) => {
                    tracing::error!(origin = %o.name, error = %e, "cannot start the origin's device");
                    self.missing.lock().insert(o.id, format!("no device: {e}"));
                }
            }
        }
    }

    /// Split `ORIGIN@NAME` when the store has several origins and `ORIGIN` names
    /// one: (that origin, `NAME`); otherwise (`None`, the name as given).
    pub(crate) fn split_origin<'a>(&self, name: &'a str) -> (Option<OriginId>, &'a str) {
        let s = self.store.lock();
        if s.origins().len() > 1 {
            if let Some((o, n)) = name.split_once('@') {
                if let Some(k) = s.origin_by_name(o) {
                    return (Some(k), n);
                }
            }
        }
        (None, name)
    }

    /// `create NAME --origins a,b,...`: a group snapshot (the fence is the shared
    /// store's, [`exception_store::SharedStore::create_group`]).
    pub fn create_group(
        &self,
        name: &str,
        origins: &[String],
        freeze: bool,
    ) -> Result<protocol::GroupCreated> {
        if exception_store::replicate::is_receive_name(name) {
            return Err(Error::Invalid(format!(
                "{name:?}: names recv+, recv-mark+ and recv-force+ followed by 16 hex \
                 digits are a receive's own"
            )));
        }
        let devs = self.devices.lock();
        let ids = origins
            .iter()
            .map(|o| self.origin_id(o))
            .collect::<Result<Vec<_>>>()?;
        let created = crate::now_secs();
        let frozen = match freeze {
            true => {
                let targets: Vec<Dev> = ids.iter().map(|&k| Dev::Origin(k)).collect();
                Some(self.freeze(&devs, &targets)?)
            }
            false => None,
        };
        let t0 = std::time::Instant::now();
        let g = self.store.create_group(name, &ids, created);
        let frozen = super::freeze::thawed(frozen)?;
        let g = g?;
        let names: std::collections::HashMap<OriginId, String> = self
            .store
            .lock()
            .origins()
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect();
        tracing::info!(
            name,
            group = g.id,
            members = g.members.len(),
            micros = t0.elapsed().as_micros() as u64,
            "group snapshot created"
        );
        Ok(protocol::GroupCreated {
            group: g.id,
            name: name.to_owned(),
            created,
            members: g
                .members
                .iter()
                .map(|(k, _)| format!("{}@{name}", names.get(k).map_or("?", |n| n.as_str())))
                .collect(),
            txn_id: self.txn(),
            frozen,
        })
    }

    /// Freeze the filesystems mounted on the devices of `targets` (those that have
    /// one) until the returned guard is dropped or the freeze timeout passes.
    pub(crate) fn freeze(&self, devs: &Devices, targets: &[Dev]) -> Result<super::freeze::Frozen> {
        let mut numbers = Vec::new();
        for &t in targets {
            if let Some(path) = devs.path(t) {
                numbers.push(super::freeze::dev_numbers(&path)?);
            }
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(Error::io("read", "/proc/self/mountinfo"))?;
        let paths = super::freeze::mounts_on(&info, &numbers);
        let timeout = self
            .cfg
            .freeze_timeout
            .unwrap_or(std::time::Duration::from_secs(10));
        super::freeze::freeze(Arc::new(super::freeze::Kernel), paths, timeout)
    }

    /// The members of the group called `name`, when `name` names a group and no
    /// single snapshot (`delete`, `hold` and `release` then act on every member).
    pub(crate) fn group_members(&self, name: &str) -> Option<Vec<exception_store::SnapInfo>> {
        let s = self.store.lock();
        if s.lookup(name).is_some() {
            return None;
        }
        let g = s.group(name)?;
        let ids: Vec<_> = g.members.iter().map(|(_, id)| *id).collect();
        Some(
            s.snapshots()
                .into_iter()
                .filter(|i| ids.contains(&i.id))
                .collect(),
        )
    }

    /// `origin add`.
    pub fn origin_add(&self, name: &str, path: &str) -> Result<protocol::Origin> {
        let mut devs = self.devices.lock();
        exception_store::validate_origin_name(name)?;
        let dev = FileDevice::open(std::path::Path::new(path)).map_err(Error::io("open", path))?;
        let k = self
            .store
            .add_origin(name, Arc::new(dev), path, crate::now_secs())?;
        if !self.started.load(std::sync::atomic::Ordering::SeqCst) {
            // no device has started yet: `start_devices` brings this one up too
            return self.origin_entry(&devs, k);
        }
        match self.bring_up(Dev::Origin(k), None) {
            Ok(d) => devs.insert(Dev::Origin(k), d),
            Err(e) => {
                // nothing served it: take it back out, so that a retry starts clean
                if let Err(undo) = self.store.remove_origin(k, false) {
                    tracing::error!(origin = name, error = %undo, "cannot undo the origin's add");
                }
                return Err(e);
            }
        }
        self.save_state(&devs);
        tracing::info!(origin = name, id = k, path, device = ?devs.path(Dev::Origin(k)), "origin added");
        self.origin_entry(&devs, k)
    }

    /// `origin remove`: its device stops first (refused while it is in use, e.g.
    /// mounted), then the store removes it.
    pub fn origin_remove(&self, name: &str, with_snapshots: bool) -> Result<protocol::OriginGone> {
        let mut devs = self.devices.lock();
        let k = self.origin_id(name)?;
        if k == 0 {
            return Err(Error::Invalid(format!(
                "{name:?} is the store's first origin (the daemon's --origin): it stays"
            )));
        }
        let snaps: Vec<_> = {
            let s = self.store.lock();
            s.snapshots()
                .into_iter()
                .filter(|i| i.origin == k)
                .collect()
        };
        if !snaps.is_empty() && !with_snapshots {
            return Err(Error::Store(exception_store::Error::Busy(format!(
                "origin {name:?} has {} snapshots: delete them first, or remove it with them \
                 (--with-snapshots)",
                snaps.len()
            ))));
        }
        for i in &snaps {
            if let Some(why) = self.protected(&devs, i.id) {
                return Err(Error::Store(exception_store::Error::Busy(format!(
                    "snapshot {:?} of origin {name:?} is {why}",
                    i.name
                ))));
            }
        }
        if let Some(device) = devs.path(Dev::Origin(k)) {
            if let super::Claim::Busy = super::claim_exclusive(&device) {
                return Err(Error::InUse {
                    device,
                    why: "the origin's device is open exclusively (unmount it first)",
                });
            }
        }
        if let Some(d) = devs.remove(Dev::Origin(k)) {
            d.stop()?;
        }
        self.missing.lock().remove(&k);
        let r = self.store.remove_origin(k, with_snapshots);
        self.save_state(&devs);
        let (removed, t) = match r? {
            OriginRemoved::Removed(t) => (true, t),
            OriginRemoved::Removing(t) => (false, t),
        };
        tracing::info!(origin = name, id = k, removed, "origin removed");
        Ok(protocol::OriginGone {
            name: name.to_owned(),
            removed,
            txn_id: t.0,
        })
    }

    /// `origin list`.
    pub fn origin_list(&self) -> protocol::Origins {
        let devs = self.devices.lock();
        protocol::Origins {
            txn_id: self.txn(),
            origins: self.origin_entries(&devs),
        }
    }

    /// `origin quota`: set origin `name`'s quota to `bytes` (rounded up to whole
    /// chunks; 0: none). Lowering it below what the origin uses deletes nothing.
    pub fn origin_quota(&self, name: &str, bytes: u64) -> Result<protocol::Origin> {
        let devs = self.devices.lock();
        let k = self.origin_id(name)?;
        let chunks = {
            let mut s = self.store.lock();
            let chunks = bytes.div_ceil(s.chunk_size());
            s.set_origin_quota(k, chunks)?;
            chunks
        };
        tracing::info!(origin = name, quota_chunks = chunks, "origin quota set");
        self.origin_entry(&devs, k)
    }

    /// Every origin, as `origin list` shows it (for `status` too).
    pub(crate) fn origin_entries(&self, devs: &Devices) -> Vec<protocol::Origin> {
        let ids: Vec<OriginId> = self.store.lock().origins().iter().map(|o| o.id).collect();
        ids.into_iter()
            .filter_map(|k| self.origin_entry(devs, k).ok())
            .collect()
    }

    /// Whether an origin of the store is not served.
    pub fn origins_missing(&self) -> bool {
        !self.missing.lock().is_empty()
    }

    /// The store's origins' names, by id.
    pub(crate) fn origin_names(&self) -> BTreeMap<OriginId, String> {
        self.store
            .lock()
            .origins()
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect()
    }

    /// The origin called `name` (the store's `NoSuchOrigin` otherwise).
    pub(crate) fn origin_id(&self, name: &str) -> Result<OriginId> {
        self.store
            .lock()
            .origin_by_name(name)
            .ok_or_else(|| Error::Store(exception_store::Error::NoSuchOrigin(name.to_owned())))
    }

    fn origin_entry(&self, devs: &Devices, k: OriginId) -> Result<protocol::Origin> {
        let s = self.store.lock();
        let o =
            s.origins().into_iter().find(|o| o.id == k).ok_or_else(|| {
                Error::Store(exception_store::Error::NoSuchOrigin(format!("#{k}")))
            })?;
        let snapshots = s.snapshots().iter().filter(|i| i.origin == k).count();
        let device = devs.path(Dev::Origin(k));
        let state = match self.missing.lock().get(&k) {
            Some(why) => why.clone(),
            None if o.removing => "removing".into(),
            None if device.is_some() => "served".into(),
            // the devices have not started (in-process use), or it has none yet
            None => "idle".into(),
        };
        Ok(protocol::Origin {
            id: k,
            name: o.name,
            size_bytes: o.size,
            path: if k == 0 {
                self.cfg.origin.display().to_string()
            } else {
                o.path
            },
            device,
            snapshots,
            used_bytes: o.used * s.chunk_size(),
            quota_bytes: o.quota * s.chunk_size(),
            state,
        })
    }
}
