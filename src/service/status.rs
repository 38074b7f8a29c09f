//! The [`Service`]'s read-only reports: `list`, `status`, and the metadata `check`
//! and `dump` (which commit first and run under the store's lock).
use super::{space_policy_name, Service};
use crate::{
    protocol::{self, CheckReport, DumpReport},
    Result,
};
use exception_store::Dev;

impl Service {
    /// `list`.
    pub fn list(&self) -> protocol::List {
        let devs = self.devices.lock();
        let s = self.store.lock();
        // origin names, shown once the store has several
        let origins: std::collections::HashMap<u32, String> =
            s.origins().into_iter().map(|o| (o.id, o.name)).collect();
        let several = origins.len() > 1;
        protocol::List {
            txn_id: s.txn_id().0,
            snapshots: s
                .snapshots()
                .into_iter()
                .filter(|i| !self.repl.is_internal(i.id)) // internal to a receive
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
                    origin: several.then(|| origins.get(&i.origin).cloned()).flatten(),
                    group: (i.group != 0).then_some(i.group),
                })
                .collect(),
        }
    }

    /// `status`.
    pub fn status(&self) -> protocol::Status {
        let devs = self.devices.lock();
        // Devices exist only once start_devices asked the driver, so this never
        // makes the first GET_FEATURES.
        let copy_reason = devs.iter().next().and_then(|_| self.copy_reason());
        let origins = self.origin_entries(&devs);
        let s = self.store.lock();
        let st = s.status();
        let snaps = s.snapshots();
        let names: std::collections::HashMap<u32, String> =
            snaps.iter().map(|i| (i.id.0, i.name.clone())).collect();
        // in a pool, each device says which origin it is or belongs to
        let origin_of = |dev: Dev| -> Option<String> {
            if origins.len() < 2 {
                return None;
            }
            let k = match dev {
                Dev::Origin(k) => k,
                Dev::Snap(id) => snaps.iter().find(|i| i.id == id)?.origin,
            };
            origins.iter().find(|o| o.id == k).map(|o| o.name.clone())
        };
        protocol::Status {
            pid: std::process::id(),
            origin: self.cfg.origin.display().to_string(),
            store: self.cfg.store.display().to_string(),
            origin_device: devs.path(Dev::Origin(0)),
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
            origins: origins.clone(),
            devices: devs
                .iter()
                .map(|(dev, d)| {
                    let snapshot = match dev {
                        Dev::Origin(_) => None,
                        Dev::Snap(id) => Some(
                            names
                                .get(&id.0)
                                .cloned()
                                .unwrap_or_else(|| format!("#{}", id.0)),
                        ),
                    };
                    let mut a = crate::ublk::kernel::active_device(snapshot, d, copy_reason);
                    a.origin = origin_of(dev);
                    a
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
            deferred_merge: self.deferred_merge_name(&s),
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
}
