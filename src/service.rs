//! [`Service`]: the daemon's core. It holds the store lock, the shared store, the
//! activation table and the state file, and turns each protocol [`Op`] into a
//! [`Reply`]. The socket ([`crate::control`]) and the devices' queues call into it
//! from their own threads.
//!
//! # Concurrency
//! Control operations are serialised by the activation table's lock, taken first;
//! the store's own locks come after it. The I/O path never takes the table's lock.
use crate::{
    devices::Devices,
    lock::StoreLock,
    progress::Progress,
    protocol::{self, Op, Reply, Response},
    report::{CheckReport, DumpReport},
    state::{ActiveSnapshot, State, StateFile, STATE_VERSION},
    target::{SpaceRefusals, StoreTarget},
    Error, Result,
};
use blockdev::{ids::SnapId, FileDevice};
use exception_store::{retention, Dev, SharedStore, SpacePolicy, Store, StoreOptions};
use parking_lot::Mutex;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use ublk_target::{Device, DeviceOptions};

pub mod replication;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The origin file or block device.
    pub origin: PathBuf,
    /// The store file or block device.
    pub store: PathBuf,
    /// Metadata cache, bytes.
    pub cache_bytes: usize,
    /// Shape of every ublk device (its `dev_id` is ignored).
    pub device: DeviceOptions,
    /// Where the state file goes; `None`: no state file (tests).
    pub state_dir: Option<PathBuf>,
    /// What a full store does to origin writes.
    pub space_policy: SpacePolicy,
    /// Store space kept free (rounded up to whole chunks): origin writes that would
    /// use it act as if the store were full.
    pub min_free_bytes: u64,
    /// Origin reads outside a merge go to the origin's descriptor through each queue's
    /// io_uring instead of a blocking `pread` ([`StoreTarget::new`]).
    pub uring_reads: bool,
    /// The NBD server's Unix socket (`None`: none).
    pub nbd_socket: Option<PathBuf>,
    /// The NBD server's TCP address, `HOST:PORT` (`None`: no TCP).
    pub nbd_listen: Option<String>,
    /// NBD TLS: the certificates (`None`: no TLS), and whether TCP may go without.
    pub nbd_tls: Option<crate::nbd::TlsFiles>,
    /// NBD on TCP without TLS was asked for explicitly (`--nbd-listen-insecure`).
    pub nbd_insecure: bool,
}

/// See the module documentation.
pub struct Service {
    store: Arc<SharedStore>,
    devices: Mutex<Devices>,
    state: Option<StateFile>,
    progress: Arc<Progress>,
    /// A merge waiting for the origin device to be closed (`merge --deferred`).
    deferred_merge: Mutex<Option<SnapId>>,
    /// Writes the devices answered with ENOSPC (`status`).
    refusals: Arc<SpaceRefusals>,
    /// The ublk driver's features, read when the devices start ([`crate::kernel`]).
    driver: std::sync::OnceLock<Option<ublk_target::Features>>,
    /// NBD exports (see [`crate::exporting`]).
    pub(crate) exports: Arc<crate::nbd::Exports>,
    /// Where the NBD server listens, once it does.
    pub(crate) nbd_listen: Mutex<Vec<String>>,
    /// Received guids, the unfinished receive, the snapshots being sent.
    repl: replication::Replication,
    cfg: Config,
    _lock: StoreLock,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.cfg.store)
            .finish()
    }
}

impl Service {
    /// Lock and open the store. Starts no device (see [`Service::start_devices`]).
    pub fn open(cfg: Config) -> Result<Service> {
        let lock = StoreLock::acquire(&cfg.store)?;
        let origin = FileDevice::open(&cfg.origin).map_err(Error::io("open", &cfg.origin))?;
        let dev = FileDevice::open(&cfg.store).map_err(Error::io("open", &cfg.store))?;
        let chunk_size = u64::from(exception_store::superblock::read_superblock(&dev)?.chunk_size);
        let mut store = Store::open(
            Arc::new(origin),
            Arc::new(dev),
            StoreOptions {
                cache_bytes: cfg.cache_bytes,
                space_policy: cfg.space_policy,
                min_free_chunks: cfg.min_free_bytes.div_ceil(chunk_size.max(1)),
            },
        )?;
        tracing::info!(
            origin = %cfg.origin.display(),
            store = %cfg.store.display(),
            txn_id = store.txn_id().0,
            space_policy = ?cfg.space_policy,
            min_free_chunks = store.status().min_free_chunks,
            "store opened"
        );
        if let Some(now) = store.device_room() {
            tracing::warn!(
                device_bytes = now,
                store_bytes = store.store_len(),
                "the store device is larger than the store: `snapctl grow-store` takes the space"
            );
        }
        if let Ok(now) = store.origin_device_len() {
            if now > store.size() {
                tracing::warn!(
                    device_bytes = now,
                    origin_bytes = store.size(),
                    "the origin device is larger than the store's origin: `snapctl resize-origin` takes the space"
                );
            }
        }
        if !store.status().last_shutdown_clean {
            tracing::warn!(
                txn_id = store.txn_id().0,
                "the store was not shut down cleanly (crash, kill or power loss): \
                 opened at its last commit"
            );
        }
        let state = cfg
            .state_dir
            .as_deref()
            .map(|d| StateFile::new(d, &cfg.store));
        let repl = replication::Replication::load(cfg.state_dir.as_deref(), &cfg.store)?;
        if let Some(id) = repl.rollback() {
            // an unfinished receive's rollback point: never the space policy's victim
            store.set_in_use(id, true);
        }
        Ok(Service {
            repl,
            store: Arc::new(SharedStore::new(store)),
            devices: Mutex::new(Devices::new()),
            state,
            progress: Arc::default(),
            deferred_merge: Mutex::new(None),
            refusals: Arc::default(),
            driver: std::sync::OnceLock::new(),
            exports: crate::nbd::Exports::new(),
            nbd_listen: Mutex::new(Vec::new()),
            cfg,
            _lock: lock,
        })
    }

    /// The shared store.
    pub fn store(&self) -> &Arc<SharedStore> {
        &self.store
    }

    /// The progress estimates the worker feeds and `status` reads.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Start the origin's device and, after a crash, take back (or recreate) the
    /// devices the state file records. Returns the origin's `/dev/ublkbN`.
    pub fn start_devices(&self) -> Result<String> {
        self.driver.get_or_init(crate::kernel::driver_features);
        let previous = self.state.as_ref().and_then(StateFile::load);
        if let Some(p) = &previous {
            tracing::warn!(
                pid = p.pid,
                "the previous daemon did not shut down cleanly; taking its devices back"
            );
        }
        let mut devs = self.devices.lock();
        if let Some(id) = previous.as_ref().and_then(|p| p.deferred_merge) {
            tracing::info!(id, "a merge is still deferred until the origin is closed");
            *self.deferred_merge.lock() = Some(SnapId(id));
        }
        let origin_id = previous.as_ref().and_then(|p| p.origin_dev_id);
        let origin = self.bring_up(Dev::Origin, origin_id)?;
        devs.insert(Dev::Origin, origin);
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
        devs.path(Dev::Origin)
            .ok_or_else(|| Error::StartFailed("the origin device did not start".into()))
    }

    /// Stop every device, commit, and remove the state file.
    pub fn shutdown(&self) -> Result<()> {
        self.devices.lock().stop_all();
        // With the origin's device gone nobody has it mounted: like LVM, a deferred
        // merge starts now, and its copy resumes with the next daemon.
        self.start_deferred_merge();
        let r = self.store.commit_clean_shutdown();
        if let Some(s) = &self.state {
            s.remove();
        }
        let t = r?;
        tracing::info!(txn_id = t.0, "clean shutdown");
        Ok(())
    }

    /// Stop every device and commit, keeping the state file (a failed start).
    pub fn abort(&self) {
        self.devices.lock().stop_all();
        if let Err(e) = crate::target::flush(&self.store) {
            tracing::error!(error = %e, "final commit failed");
        }
    }

    /// Answer one request.
    pub fn handle(&self, op: Op) -> Response {
        let r = match op {
            Op::Create { name, from } => self.create(&name, from.as_deref()).map(Reply::Created),
            Op::Delete { name } => self.delete(&name).map(Reply::Deleted),
            Op::List => Ok(Reply::List(self.list())),
            Op::Status => Ok(Reply::Status(self.status())),
            Op::Activate { name } => self.activate(&name).map(Reply::Activated),
            Op::Deactivate { name } => self.deactivate(&name).map(Reply::Deactivated),
            Op::Merge { name, deferred } => self.merge(&name, deferred).map(|m| match m {
                Merge::Started(c) => Reply::Merging(c),
                Merge::Deferred(c) => Reply::MergeDeferred(c),
            }),
            Op::Hold { name } => self.hold(&name, true).map(Reply::Held),
            Op::Release { name } => self.hold(&name, false).map(Reply::Released),
            Op::Prune {
                policy,
                prefix,
                dry_run,
            } => self
                .prune(&policy, prefix.as_deref(), dry_run)
                .map(Reply::Pruned),
            Op::Check => self.check().map(Reply::Checked),
            Op::Dump { elements } => self.dump(elements).map(Reply::Dump),
            Op::Map { name, offset, len } => {
                crate::inspect::map(&mut self.store.lock(), name.as_deref(), offset, len)
                    .map(Reply::Map)
            }
            Op::Diff {
                from,
                to,
                offset,
                len,
            } => crate::inspect::diff(
                &mut self.store.lock(),
                from.as_deref(),
                to.as_deref(),
                offset,
                len,
            )
            .map(Reply::Diff),
            Op::Export {
                name,
                snapshot,
                writable,
                export,
            } => self
                .export_as(&name, snapshot, writable, export.as_deref())
                .map(Reply::Exported),
            Op::Unexport { export } => self.unexport(&export).map(Reply::Unexported),
            Op::GrowStore { sparse } => self.grow_store(sparse).map(Reply::GrownStore),
            Op::ResizeOrigin { size } => self.resize_origin(size).map(Reply::ResizedOrigin),
            Op::Send { .. } | Op::Receive { .. } => Err(Error::Invalid(
                "send and receive stream after their line; this connection cannot".into(),
            )),
        };
        match r {
            Ok(reply) => Response::new(reply),
            Err(e) => {
                tracing::info!(error = %e, "request failed");
                Response::error(e.code(), e.to_string())
            }
        }
    }

    /// A snapshot a control op may name: not a receive's rollback point.
    pub(crate) fn lookup(&self, name: &str) -> Result<SnapId> {
        let id = self
            .store
            .lock()
            .lookup(name)
            .ok_or_else(|| Error::NoSuchSnapshot(name.to_owned()))?;
        if self.repl.rollback() == Some(id) {
            return Err(Error::RollbackPoint(name.to_owned()));
        }
        Ok(id)
    }

    /// [`lookup`](Self::lookup), refused while the snapshot is active or exported.
    fn lookup_inactive(&self, devs: &Devices, name: &str) -> Result<SnapId> {
        let id = self.lookup(name)?;
        if let Some(e) = self.exports.of(Dev::Snap(id)).into_iter().next() {
            return Err(Error::Exported {
                name: name.to_owned(),
                export: e.name,
            });
        }
        match devs.path(Dev::Snap(id)) {
            Some(device) => Err(Error::Active {
                name: name.to_owned(),
                device,
            }),
            None => Ok(id),
        }
    }

    pub(crate) fn txn(&self) -> u64 {
        self.store.lock().txn_id().0
    }

    /// `create`.
    pub fn create(&self, name: &str, from: Option<&str>) -> Result<protocol::Created> {
        let _devs = self.devices.lock();
        let parent = from.map(|p| self.lookup(p)).transpose()?;
        let created = crate::now_secs();
        let id = self.store.create_snapshot(name, parent, created)?;
        tracing::info!(name, ?from, id = id.0, "snapshot created");
        Ok(protocol::Created {
            id: id.0,
            name: name.to_owned(),
            created,
            parent: from.map(str::to_owned),
            txn_id: self.txn(),
        })
    }

    /// `delete`.
    pub fn delete(&self, name: &str) -> Result<protocol::Changed> {
        let devs = self.devices.lock();
        let id = self.lookup_inactive(&devs, name)?;
        if self.repl.is_sending(id) {
            return Err(Error::InUse {
                device: name.to_owned(),
                why: "it is being sent (`snapctl send`)",
            });
        }
        let t = self.store.delete_snapshot(id)?;
        tracing::info!(name, id = id.0, "snapshot deleted");
        Ok(changed(name, t.0))
    }

    /// `merge`: refused while the snapshot is active (deactivate it first: its device
    /// would vanish under its users). While the origin device is open exclusively (a
    /// mounted filesystem) it is refused too, or with `deferred` recorded and started
    /// by [`start_deferred_merge`](Self::start_deferred_merge) once the origin is
    /// closed: merging under a mounted filesystem would have it write its stale cache
    /// over the merged data (the filesystem must see the change as a new disk). The
    /// origin is held open exclusively while the merge starts, so nobody mounts it
    /// in between.
    pub fn merge(&self, name: &str, deferred: bool) -> Result<Merge> {
        let devs = self.devices.lock();
        let id = self.lookup_inactive(&devs, name)?;
        let claim = match claim_origin(&devs) {
            Ok(claim) => claim,
            Err(device) if deferred => {
                let mut d = self.deferred_merge.lock();
                if d.is_some_and(|other| other != id) {
                    return Err(Error::InUse {
                        device,
                        why: "another merge is already deferred until it is closed",
                    });
                }
                *d = Some(id);
                drop(d);
                self.save_state(&devs);
                tracing::info!(name, "merge deferred until the origin device is closed");
                return Ok(Merge::Deferred(changed(name, self.txn())));
            }
            Err(device) => {
                return Err(Error::InUse {
                    device,
                    why: "unmount the origin before merging into it, or use merge --deferred",
                })
            }
        };
        let t = self.store.merge_snapshot(id)?;
        drop(claim);
        self.clear_deferred(&devs, id);
        tracing::info!(name, id = id.0, txn_id = t.0, "merge started");
        Ok(Merge::Started(changed(name, t.0)))
    }

    /// Start the deferred merge, if there is one and the origin device is no longer
    /// in use (the worker calls this about once a second; a clean shutdown calls it
    /// once the devices are gone). A deferred merge whose snapshot was deleted is
    /// dropped; one whose snapshot is active waits until it is deactivated.
    pub fn start_deferred_merge(&self) {
        let devs = self.devices.lock();
        let Some(id) = *self.deferred_merge.lock() else {
            return;
        };
        let name = self
            .store
            .lock()
            .snapshots()
            .into_iter()
            .find(|i| i.id == id)
            .map(|i| i.name);
        let Some(name) = name else {
            tracing::warn!(
                id = id.0,
                "the snapshot of the deferred merge is gone; merge dropped"
            );
            self.clear_deferred(&devs, id);
            return;
        };
        if devs.get(Dev::Snap(id)).is_some() {
            return;
        }
        let Ok(claim) = claim_origin(&devs) else {
            return;
        };
        match self.store.merge_snapshot(id) {
            Ok(t) => tracing::info!(name, txn_id = t.0, "deferred merge started"),
            Err(e) => tracing::error!(name, error = %e, "deferred merge failed to start; dropped"),
        }
        drop(claim);
        self.clear_deferred(&devs, id);
    }

    /// Forget the deferred merge if it is `id`'s, and record that in the state file.
    fn clear_deferred(&self, devs: &Devices, id: SnapId) {
        let cleared = {
            let mut d = self.deferred_merge.lock();
            let was = *d == Some(id);
            if was {
                *d = None;
            }
            was
        };
        if cleared {
            self.save_state(devs);
        }
    }

    /// `hold` and `release`.
    pub fn hold(&self, name: &str, hold: bool) -> Result<protocol::Changed> {
        let _devs = self.devices.lock();
        let id = self.lookup(name)?;
        let t = self.store.lock().set_hold(id, hold)?;
        tracing::info!(name, hold, "snapshot hold changed");
        Ok(changed(name, t.0))
    }

    /// `prune`: computed and carried out under the activation table's lock, so two
    /// overlapping runs are serialised and the second sees what the first deleted.
    /// Held snapshots are never candidates; active ones are skipped and reported.
    pub fn prune(
        &self,
        policy: &protocol::PrunePolicy,
        prefix: Option<&str>,
        dry_run: bool,
    ) -> Result<protocol::Pruned> {
        if policy.is_empty() {
            return Err(Error::Invalid(
                "a prune policy needs at least one rule (keep-last, hourly, daily, weekly, monthly)"
                    .into(),
            ));
        }
        let devs = self.devices.lock();
        let rollback = self.repl.rollback();
        let snaps: Vec<_> = self
            .store
            .lock()
            .snapshots()
            .into_iter()
            .filter(|s| s.name.starts_with(prefix.unwrap_or("")))
            .filter(|s| Some(s.id) != rollback)
            .collect();
        let p = retention::Policy {
            last: policy.keep_last,
            hourly: policy.hourly,
            daily: policy.daily,
            weekly: policy.weekly,
            monthly: policy.monthly,
        };
        let victims = retention::victims(&snaps, &p);
        let mut skipped: Vec<protocol::Skipped> = snaps
            .iter()
            .filter(|s| s.hold)
            .map(|s| protocol::Skipped {
                name: s.name.clone(),
                reason: "held".into(),
            })
            .collect();
        let mut deleted = Vec::new();
        for id in &victims {
            let Some(s) = snaps.iter().find(|s| s.id == *id) else {
                continue;
            };
            if let Some(device) = devs.path(Dev::Snap(*id)) {
                skipped.push(protocol::Skipped {
                    name: s.name.clone(),
                    reason: format!("active as {device}"),
                });
                continue;
            }
            if !dry_run {
                match self.store.delete_snapshot(*id) {
                    Ok(_) => tracing::info!(name = %s.name, id = id.0, "snapshot pruned"),
                    // gone already (a merge, the space policy): not an error
                    Err(exception_store::Error::NoSuchSnapshot(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            deleted.push(protocol::PrunedSnapshot {
                id: id.0,
                name: s.name.clone(),
                created: s.created,
            });
        }
        let considered = snaps.iter().filter(|s| !s.hold).count();
        Ok(protocol::Pruned {
            dry_run,
            kept: considered - victims.len(),
            deleted,
            skipped,
            txn_id: self.txn(),
        })
    }

    /// `check`: commit, then check the store under its lock (I/O waits meanwhile).
    pub fn check(&self) -> Result<CheckReport> {
        let _devs = self.devices.lock();
        self.store.commit()?;
        let mut s = self.store.lock();
        let r = s.check()?;
        Ok(CheckReport::new(r, s.txn_id().0))
    }

    /// `dump`.
    pub fn dump(&self, elements: bool) -> Result<DumpReport> {
        let _devs = self.devices.lock();
        Ok(self.store.lock().dump(elements)?.into())
    }

    /// The activation table's lock (control operations are serialised by it).
    /// Whether the ublk driver offers every `UBLK_F_*` bit of `bits` (false when
    /// its features were never read: no device started, or no driver).
    pub(crate) fn driver_offers(&self, bits: u64) -> bool {
        self.driver
            .get()
            .copied()
            .flatten()
            .is_some_and(|f| f.has(bits))
    }

    pub(crate) fn devices(&self) -> parking_lot::MutexGuard<'_, Devices> {
        self.devices.lock()
    }

    /// `activate`.
    pub fn activate(&self, name: &str) -> Result<protocol::Activated> {
        let mut devs = self.devices.lock();
        let id = self.lookup(name)?;
        let dev = Dev::Snap(id);
        if devs.get(dev).is_none() {
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

    /// `deactivate`.
    pub fn deactivate(&self, name: &str) -> Result<protocol::Changed> {
        let mut devs = self.devices.lock();
        let id = self.lookup(name)?;
        let device = devs
            .remove(Dev::Snap(id))
            .ok_or_else(|| Error::NotActive(name.to_owned()))?;
        let stopped = device.stop();
        let exported = !self.exports.of(Dev::Snap(id)).is_empty();
        self.store.lock().set_in_use(id, exported);
        self.save_state(&devs);
        stopped?;
        let t = crate::target::flush(&self.store)?;
        tracing::info!(name, "snapshot deactivated");
        Ok(changed(name, t.0))
    }

    /// `list`.
    pub fn list(&self) -> protocol::List {
        let devs = self.devices.lock();
        let rollback = self.repl.rollback();
        let s = self.store.lock();
        protocol::List {
            txn_id: s.txn_id().0,
            snapshots: s
                .snapshots()
                .into_iter()
                .filter(|i| Some(i.id) != rollback) // internal to a receive
                .map(|i| protocol::Snapshot {
                    id: i.id.0,
                    device: devs.path(Dev::Snap(i.id)),
                    exports: self
                        .exports
                        .of(Dev::Snap(i.id))
                        .into_iter()
                        .map(|e| e.name)
                        .collect(),
                    name: i.name,
                    created: i.created,
                    parent: i.parent,
                    hold: i.hold,
                    guid: exception_store::tables::guid_hex(&i.guid),
                    size_bytes: i.size,
                })
                .collect(),
        }
    }

    /// `status`.
    pub fn status(&self) -> protocol::Status {
        let devs = self.devices.lock();
        let s = self.store.lock();
        let st = s.status();
        let names: std::collections::HashMap<u32, String> = s
            .snapshots()
            .into_iter()
            .map(|i| (i.id.0, i.name))
            .collect();
        protocol::Status {
            pid: std::process::id(),
            origin: self.cfg.origin.display().to_string(),
            store: self.cfg.store.display().to_string(),
            origin_device: devs.path(Dev::Origin),
            size_bytes: st.origin_len,
            chunk_size: st.chunk_size,
            txn_id: st.txn_id.0,
            usage: protocol::Usage {
                nr_chunks: st.nr_chunks,
                nr_used: st.nr_used,
                nr_meta_chunks: st.nr_meta_chunks,
                nr_free: st.nr_free,
            },
            nr_snapshots: st.nr_snapshots,
            devices: devs
                .iter()
                .map(|(dev, d)| {
                    let snapshot = match dev {
                        Dev::Origin => None,
                        Dev::Snap(id) => Some(
                            names
                                .get(&id.0)
                                .cloned()
                                .unwrap_or_else(|| format!("#{}", id.0)),
                        ),
                    };
                    crate::kernel::active_device(snapshot, d)
                })
                .collect(),
            nbd: Box::new(self.nbd_status(s.txn_id().0)),
            jobs: st
                .jobs
                .iter()
                .zip(self.progress.estimates(&st.jobs))
                .map(|(j, (rate, eta_secs))| protocol::Job {
                    kind: j.kind.to_owned(),
                    cursor: j.cursor,
                    total: j.total,
                    rate,
                    eta_secs,
                })
                .collect(),
            deferred_merge: self
                .deferred_merge
                .lock()
                .and_then(|id| names.get(&id.0).cloned()),
            failed: st.failed,
            space_policy: space_policy_name(st.space_policy).into(),
            min_free_chunks: st.min_free_chunks,
            auto_deleted: st.auto_deleted,
            enospc_writes: self.refusals.get(),
            last_shutdown_clean: st.last_shutdown_clean,
            driver_features: self.driver.get().copied().flatten().map(|f| f.0),
            receive_resume: self.repl.resume_token(),
        }
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
    }

    /// Create (or take back) the ublk device of `dev`. With `recorded` (a device id
    /// from the state file): if the kernel still has that device, recover it
    /// (`UBLK_F_USER_RECOVERY`); else start a fresh one, with that id if it is free.
    fn bring_up(&self, dev: Dev, recorded: Option<u32>) -> Result<Device> {
        let target = Arc::new(self.target(dev));
        let opts = DeviceOptions {
            dev_id: None,
            zero_copy: self.cfg.device.zero_copy && self.zero_copy_offered(),
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
        let driver = self.driver.get_or_init(crate::kernel::driver_features);
        driver.is_some_and(|f| f.has(ublk_target::ZERO_COPY_FLAGS))
            && self.cfg.device.workers_per_queue == 0
            && self.store.origin_writes_direct()
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
            origin_dev_id: devs.get(Dev::Origin).map(Device::dev_id),
            snapshots: devs
                .iter()
                .filter_map(|(dev, d)| match dev {
                    Dev::Origin => None,
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

/// The outcome of `merge`.
#[derive(Debug)]
pub enum Merge {
    /// The origin reads the snapshot's data from now on.
    Started(protocol::Changed),
    /// Recorded: it starts when the origin device is closed.
    Deferred(protocol::Changed),
}

/// The reply of a request that changed snapshot `name`.
fn changed(name: &str, txn_id: u64) -> protocol::Changed {
    protocol::Changed {
        name: name.to_owned(),
        txn_id,
    }
}

/// What an exclusive open of a block device found.
enum Claim {
    /// Ours until the file is dropped: nobody can mount it meanwhile.
    Held(std::fs::File),
    /// Someone holds it exclusively (a mounted filesystem does): EBUSY.
    Busy,
    /// The open failed otherwise (logged); nobody is known to hold it.
    Unknown,
}

/// Hold the origin's device exclusively while a merge starts, so nobody mounts it
/// meanwhile: `Ok(None)` when it has no device or could not be opened for another
/// reason than being in use; `Err(device)` when it is in use (mounted).
fn claim_origin(devs: &Devices) -> std::result::Result<Option<std::fs::File>, String> {
    let Some(device) = devs.path(Dev::Origin) else {
        return Ok(None);
    };
    match claim_exclusive(&device) {
        Claim::Held(f) => Ok(Some(f)),
        Claim::Busy => Err(device),
        Claim::Unknown => Ok(None),
    }
}

/// Open the block device `path` with `O_EXCL`.
fn claim_exclusive(path: &str) -> Claim {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(path)
    {
        Ok(f) => Claim::Held(f),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Claim::Busy,
        Err(e) => {
            tracing::warn!(path, error = %e, "cannot open the device exclusively");
            Claim::Unknown
        }
    }
}

/// The name of a space policy, as `--space-policy` and `status` spell it.
pub fn space_policy_name(p: SpacePolicy) -> &'static str {
    match p {
        SpacePolicy::Fail => "fail",
        SpacePolicy::DeleteOldest => "delete-oldest",
    }
}

/// Whether the kernel has ublk device `id` (its char device exists from ADD_DEV to
/// DEL_DEV, whether or not a daemon serves it).
fn kernel_has_device(id: u32) -> bool {
    Path::new(&format!("/sys/class/ublk-char/ublkc{id}")).exists()
        || Path::new(&format!("/dev/ublkc{id}")).exists()
}
