//! [`Service`]: the daemon's core. It holds the store lock, the shared store, the
//! activation table and the state file, and turns each protocol [`Op`] into a
//! [`Reply`]. The control socket (the daemon's, `daemon::control`) and the devices'
//! queues call into it from their own threads; it names nothing of the daemon.
//!
//! Every `impl Service` lives in this folder, one file per concern:
//! - this file: [`Config`], [`Service::open`], shutdown, and [`Service::handle`],
//!   the one table from [`Op`] to the method that answers it;
//! - [`snapshots`]: `create`, `delete`, `merge` (and the deferred merge), `hold`,
//!   `prune`;
//! - [`activate`]: the ublk devices: start, `activate`, `deactivate`, the state file;
//! - [`status`]: `list`, `status`, `check`, `dump`;
//! - [`export`]: NBD `export` and `unexport`;
//! - [`freeze`]: `create --freeze` (the mounted filesystems frozen around a
//!   snapshot, with a watchdog);
//! - [`grow`]: `grow-store` and `resize-origin` online;
//! - [`origins`]: the store's other origins (a pool): `origin add`, `remove`,
//!   `list`, their devices, `ORIGIN@NAME`;
//! - [`replication`]: `send` and `receive`;
//! - [`state`]: the state file a restarted daemon takes its devices back from;
//! - [`progress`]: rates and ETAs of background jobs for `status`.
//!
//! # Concurrency
//! Control operations are serialised by the activation table's lock, taken first;
//! the store's own locks come after it. The I/O path never takes the table's lock.
use crate::{
    lock::StoreLock,
    protocol::{self, Op, Reply, Response},
    ublk::{target::SpaceRefusals, Devices},
    Error, Result,
};
use blockdev::{ids::SnapId, FileDevice};
use exception_store::{Dev, SharedStore, SpacePolicy, Store, StoreOptions};
use parking_lot::Mutex;
use progress::Progress;
use snapshots::Merge;
use state::StateFile;
use std::{path::PathBuf, sync::Arc};
use ublk_target::DeviceOptions;

pub mod activate;
pub mod export;
pub mod freeze;
pub mod grow;
pub mod origins;
pub mod progress;
pub mod replication;
pub mod snapshots;
pub mod state;
pub mod status;

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
    /// io_uring instead of a blocking `pread` ([`crate::ublk::target::StoreTarget::new`]).
    pub uring_reads: bool,
    /// The NBD server's Unix socket (`None`: none).
    pub nbd_socket: Option<PathBuf>,
    /// The NBD server's TCP address, `HOST:PORT` (`None`: no TCP).
    pub nbd_listen: Option<String>,
    /// NBD TLS: the certificates (`None`: no TLS), and whether TCP may go without.
    pub nbd_tls: Option<crate::nbd::TlsFiles>,
    /// NBD on TCP without TLS was asked for explicitly (`--nbd-listen-insecure`).
    pub nbd_insecure: bool,
    /// How long `create --freeze` may keep filesystems frozen (`None`: 10 s).
    pub freeze_timeout: Option<std::time::Duration>,
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
    /// The ublk driver's features, read when the devices start ([`crate::ublk::kernel`]).
    driver: std::sync::OnceLock<Option<ublk_target::Features>>,
    /// NBD exports (see [`export`]).
    pub(crate) exports: Arc<crate::nbd::Exports>,
    /// Where the NBD server listens, once it does.
    pub(crate) nbd_listen: Mutex<Vec<String>>,
    /// Received guids, the unfinished receive, the snapshots being sent.
    repl: replication::Replication,
    /// The store's origins that are not served, and why ([`origins`]).
    missing: Mutex<origins::Missing>,
    /// [`Service::start_devices`] ran: origins added from now on get their device
    /// at once (before it, in-process users do I/O through [`Service::target`]).
    started: std::sync::atomic::AtomicBool,
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
        if let Ok(now) = store.origin_device_len(0) {
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
        let missing = origins::attach_recorded(&mut store);
        for id in repl.internal() {
            // an unfinished receive's snapshots: never the space policy's victims
            store.set_in_use(id, true);
        }
        let svc = Service {
            repl,
            missing: Mutex::new(missing),
            started: std::sync::atomic::AtomicBool::new(false),
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
        };
        // before any device serves the origin
        svc.repl.take_mark(&svc.store)?;
        Ok(svc)
    }

    /// The shared store.
    pub fn store(&self) -> &Arc<SharedStore> {
        &self.store
    }

    /// The progress estimates the worker feeds and `status` reads.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
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

    /// Stop every device, flush every origin served and commit, keeping the state
    /// file (a failed start).
    pub fn abort(&self) {
        self.devices.lock().stop_all();
        let served: Vec<_> = {
            let s = self.store.lock();
            s.origins()
                .into_iter()
                .filter(|o| s.origin_attached(o.id))
                .map(|o| o.id)
                .collect()
        };
        for k in served {
            if let Err(e) = crate::ublk::target::flush(&self.store, Dev::Origin(k)) {
                tracing::error!(origin = k, error = %e, "final flush and commit failed");
            }
        }
    }

    /// Answer one request.
    pub fn handle(&self, op: Op) -> Response {
        let r = match op {
            Op::Create { name, from, freeze } => self
                .create(&name, from.as_deref(), freeze)
                .map(Reply::Created),
            Op::CreateGroup {
                name,
                origins,
                freeze,
            } => self
                .create_group(&name, &origins, freeze)
                .map(Reply::GroupCreated),
            Op::OriginAdd { name, device } => {
                self.origin_add(&name, &device).map(Reply::OriginAdded)
            }
            Op::OriginRemove {
                name,
                with_snapshots,
            } => self
                .origin_remove(&name, with_snapshots)
                .map(Reply::OriginRemoved),
            Op::OriginList => Ok(Reply::Origins(self.origin_list())),
            Op::OriginQuota { name, quota_bytes } => self
                .origin_quota(&name, quota_bytes)
                .map(Reply::OriginQuota),
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
                origin,
            } => self
                .prune(&policy, prefix.as_deref(), origin.as_deref(), dry_run)
                .map(Reply::Pruned),
            Op::Check => self.check().map(Reply::Checked),
            Op::Dump { elements } => self.dump(elements).map(Reply::Dump),
            Op::Map {
                name,
                origin,
                offset,
                len,
            } => crate::inspect::map(
                &mut self.store.lock(),
                origin.as_deref(),
                name.as_deref(),
                offset,
                len,
            )
            .map(Reply::Map),
            Op::Diff {
                from,
                origin,
                to,
                offset,
                len,
            } => crate::inspect::diff(
                &mut self.store.lock(),
                origin.as_deref(),
                from.as_deref(),
                to.as_deref(),
                offset,
                len,
            )
            .map(Reply::Diff),
            Op::Export {
                name,
                origin,
                snapshot,
                writable,
                export,
            } => self
                .export_as(
                    &name,
                    origin.as_deref(),
                    snapshot,
                    writable,
                    export.as_deref(),
                )
                .map(Reply::Exported),
            Op::Unexport { export } => self.unexport(&export).map(Reply::Unexported),
            Op::GrowStore { sparse } => self.grow_store(sparse).map(Reply::GrownStore),
            Op::ResizeOrigin { size, origin } => self
                .resize_origin(origin.as_deref(), size)
                .map(Reply::ResizedOrigin),
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
        let found = self.store.lock().lookup(name);
        let id = match found {
            Some(id) => id,
            None => {
                let mut owners = self.store.lock().origins_with(name);
                if owners.len() > 1 {
                    owners.sort();
                    return Err(Error::Invalid(format!(
                        "{name:?} is a snapshot of several origins ({}): name one as \
                         ORIGIN@{name}",
                        owners.join(", ")
                    )));
                }
                return Err(Error::NoSuchSnapshot(name.to_owned()));
            }
        };
        if self.repl.is_internal(id) {
            return Err(Error::RollbackPoint(name.to_owned()));
        }
        Ok(id)
    }

    /// Why snapshot `id` must not vanish now, if it must not: a device serves it, an
    /// NBD export serves it, or it is being sent. `delete`, `merge` and `prune` ask
    /// this, and the space policy is kept off such snapshots
    /// ([`refresh_in_use`](Self::refresh_in_use)).
    pub(crate) fn protected(&self, devs: &Devices, id: SnapId) -> Option<String> {
        if let Some(device) = devs.path(Dev::Snap(id)) {
            return Some(format!("active as {device}"));
        }
        if let Some(e) = self.exports.of(Dev::Snap(id)).into_iter().next() {
            return Some(format!("exported over NBD as {:?}", e.name));
        }
        if self.repl.is_sending(id) {
            return Some("being sent".into());
        }
        None
    }

    /// Tell the store whether snapshot `id` is in use (the space policy never
    /// deletes one that is): protected ([`protected`](Self::protected)) or internal
    /// to a receive.
    pub(crate) fn refresh_in_use(&self, devs: &Devices, id: SnapId) {
        let used = self.protected(devs, id).is_some() || self.repl.is_internal(id);
        self.store.lock().set_in_use(id, used);
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

    /// Whether the ublk driver offers every `UBLK_F_*` bit of `bits` (false when
    /// its features were never read: no device started, or no driver).
    pub(crate) fn driver_offers(&self, bits: u64) -> bool {
        self.driver
            .get()
            .copied()
            .flatten()
            .is_some_and(|f| f.has(bits))
    }

    /// The activation table's lock (control operations are serialised by it).
    pub(crate) fn devices(&self) -> parking_lot::MutexGuard<'_, Devices> {
        self.devices.lock()
    }
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

/// Hold the device of `origin` (a `Dev::Origin`) exclusively while a merge starts,
/// so nobody mounts it meanwhile: `Ok(None)` when it has no device or could not be
/// opened for another reason than being in use; `Err(device)` when it is in use
/// (mounted).
fn claim_origin(devs: &Devices, origin: Dev) -> std::result::Result<Option<std::fs::File>, String> {
    let Some(device) = devs.path(origin) else {
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
