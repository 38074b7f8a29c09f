//! The control side of NBD exports: `export` and `unexport` on the [`Service`], the
//! exports' entries in `list`, `status` and the state file, and their recovery after
//! a crash.
//!
//! # Invariants
//! - An exported snapshot counts as in use (the space policy never deletes it) and
//!   cannot be deleted or merged until it is unexported, like an active one.
//! - Every change is recorded in the state file, so a daemon restarted after a crash
//!   serves the same exports (a clean shutdown removes the file: exports, like
//!   devices, are then made again by whoever made them).
//! - Export names follow the snapshot-name rules ([`exception_store::validate_name`]).
//! - Any origin of a pool can be exported (`export - --origin NAME`; its export is
//!   named after it by default); the first origin's default export name stays
//!   [`ORIGIN`].
use super::{
    state::{RecordedExport, State},
    Service,
};
use crate::{nbd::Export, protocol::ExportEntry, Error, Result};
use blockdev::ids::SnapId;
use exception_store::Dev;

/// The name that exports the origin instead of a snapshot (so does `-`, which no
/// snapshot name can be; while a snapshot is named `origin`, only `-` means the
/// origin and `origin` alone is refused as ambiguous).
pub const ORIGIN: &str = "origin";

impl Service {
    /// The export table the NBD server serves.
    pub fn exports(&self) -> &std::sync::Arc<crate::nbd::Exports> {
        &self.exports
    }

    /// Record where the NBD server listens (for replies and `status`).
    pub fn set_nbd_listen(&self, addresses: Vec<String>) {
        *self.nbd_listen.lock() = addresses;
    }

    /// [`export_as`](Self::export_as) where `origin` and `-` mean the origin.
    pub fn export(&self, name: &str, writable: bool, export: Option<&str>) -> Result<ExportEntry> {
        self.export_as(name, None, false, writable, export)
    }

    /// `export`: serve snapshot `name` of origin `of` (or that origin itself, for
    /// `-` or [`ORIGIN`]; with `snapshot`, `name` is always a snapshot's; `of`:
    /// `None` for the first origin, or the one an `ORIGIN@NAME` names) as NBD export
    /// `export` (default: `name`, [`ORIGIN`] for the first origin, another origin's
    /// name for it). Exporting the same thing again with the same settings is a
    /// no-op; an existing export of that name with other settings is refused
    /// (unexport it first).
    pub fn export_as(
        &self,
        name: &str,
        of: Option<&str>,
        snapshot: bool,
        writable: bool,
        export: Option<&str>,
    ) -> Result<ExportEntry> {
        let devs = self.devices();
        let origin = !snapshot && (name == "-" || name == ORIGIN);
        // the origin named by `of`, and the name its snapshot goes by
        let (k, qualified, origin_name, ambiguous) = {
            let s = self.store().lock();
            let k = crate::names::origin_or_first(&s, of)?;
            let o = s.origins().into_iter().find(|o| o.id == k).map(|o| o.name);
            let qualified = crate::names::qualify(&s, of, name)?;
            let ambiguous = origin && name == ORIGIN && s.lookup(&qualified).is_some();
            (k, qualified, o, ambiguous)
        };
        if ambiguous {
            return Err(Error::Invalid(
                "`origin` is ambiguous, a snapshot has that name: export `-` for the origin, or the \
                 snapshot with --snapshot origin"
                    .into(),
            ));
        }
        let export = match (export, origin) {
            (Some(e), _) => e,
            (None, true) if k == 0 => ORIGIN,
            (None, true) => origin_name.as_deref().unwrap_or(ORIGIN),
            (None, false) => &qualified,
        };
        exception_store::validate_name(export).map_err(|e| Error::Invalid(e.to_string()))?;
        if origin && writable && self.repl.receiving_into() == Some(k) {
            return Err(Error::InUse {
                device: ORIGIN.into(),
                why: "a receive writes the origin: export it writable once the receive ends",
            });
        }
        let (dev, snapshot) = if origin {
            if !self.store().lock().origin_attached(k) {
                return Err(Error::Store(exception_store::Error::OriginMissing(
                    format!(
                        "origin {:?} is not served (its device was missing at start, see \
                     `origin list`): export it once it is back",
                        origin_name.as_deref().unwrap_or(ORIGIN)
                    ),
                )));
            }
            (Dev::Origin(k), None)
        } else {
            let id = self.lookup(&qualified)?;
            self.origin_served_for(id, &qualified, "export")?;
            (Dev::Snap(id), Some(qualified.clone()))
        };
        let e = Export {
            name: export.to_owned(),
            dev,
            snapshot,
            writable,
        };
        match self.exports.get_exact(export) {
            Some(old) if old == e => return Ok(self.entry(&e)),
            Some(old) => {
                return Err(Error::Invalid(format!(
                    "export {export:?} exists already (of {}{}); unexport it first",
                    old.snapshot.as_deref().unwrap_or(ORIGIN),
                    if old.writable { ", writable" } else { "" }
                )))
            }
            None => {}
        }
        if let Dev::Snap(id) = dev {
            self.store().lock().set_in_use(id, true);
        }
        self.exports.insert(e.clone());
        self.save_state(&devs);
        tracing::info!(export, name, writable, "NBD export added");
        Ok(self.entry(&e))
    }

    /// `unexport`: remove the export and close its connections.
    pub fn unexport(&self, export: &str) -> Result<ExportEntry> {
        let devs = self.devices();
        let e = self
            .exports
            .remove(export)
            .ok_or_else(|| Error::Invalid(format!("no NBD export named {export:?}")))?;
        if let Dev::Snap(id) = e.dev {
            self.refresh_in_use(&devs, id);
        }
        self.save_state(&devs);
        // what its clients wrote is durable once they are gone
        crate::ublk::target::flush(self.store(), e.dev)?;
        tracing::info!(export, "NBD export removed");
        Ok(self.entry(&e))
    }

    fn entry(&self, e: &Export) -> ExportEntry {
        // one lock at a time: `status` takes the listen list under the store lock
        let txn = self.txn();
        let listen = self.nbd_listen.lock().clone();
        let conns = self
            .exports
            .connections()
            .get(&e.name)
            .copied()
            .unwrap_or(0);
        entry(e, conns, listen, txn)
    }

    /// The NBD part of `status` (takes no store lock: `txn_id` is given).
    pub(crate) fn nbd_status(&self, txn_id: u64) -> crate::protocol::NbdStatus {
        let exports = self.export_entries(txn_id);
        crate::protocol::NbdStatus {
            listen: self.nbd_listen.lock().clone(),
            exports,
        }
    }

    fn export_entries(&self, txn_id: u64) -> Vec<ExportEntry> {
        let conns = self.exports.connections();
        let listen = self.nbd_listen.lock().clone();
        self.exports
            .list()
            .iter()
            .map(|e| {
                entry(
                    e,
                    conns.get(&e.name).copied().unwrap_or(0),
                    listen.clone(),
                    txn_id,
                )
            })
            .collect()
    }

    /// The exports as the state file records them (takes no store lock).
    pub(crate) fn recorded_exports(&self) -> Vec<RecordedExport> {
        self.exports
            .list()
            .into_iter()
            .map(|e| RecordedExport {
                snapshot: match e.dev {
                    Dev::Origin(_) => None,
                    Dev::Snap(id) => Some(id.0),
                },
                origin: match e.dev {
                    Dev::Origin(k) => k,
                    Dev::Snap(_) => 0,
                },
                name: e.snapshot.unwrap_or_else(|| ORIGIN.into()),
                export: e.name,
                writable: e.writable,
            })
            .collect()
    }

    /// After a crash: serve the exports the previous daemon recorded, except those
    /// of snapshots that no longer exist.
    pub(crate) fn restore_exports(&self, previous: &State) {
        for r in &previous.exports {
            let dev = match r.snapshot {
                None => Dev::Origin(r.origin),
                Some(id) => Dev::Snap(SnapId(id)),
            };
            let snapshot = match dev {
                Dev::Origin(k) => {
                    if !self.store().lock().exists(dev) {
                        tracing::warn!(export = %r.export, origin = k, "recorded export's origin no longer exists");
                        continue;
                    }
                    None
                }
                Dev::Snap(id) => {
                    let s = self.store().lock();
                    let name = s
                        .snapshots()
                        .into_iter()
                        .find(|i| i.id == id)
                        .map(|i| i.name);
                    drop(s);
                    match name {
                        Some(n) => Some(n),
                        None => {
                            tracing::warn!(export = %r.export, name = %r.name, "recorded export's snapshot no longer exists");
                            continue;
                        }
                    }
                }
            };
            if let Dev::Snap(id) = dev {
                self.store().lock().set_in_use(id, true);
            }
            self.exports.insert(Export {
                name: r.export.clone(),
                dev,
                snapshot,
                writable: r.writable,
            });
            tracing::info!(export = %r.export, "NBD export restored");
        }
    }
}

fn entry(e: &Export, connections: usize, listen: Vec<String>, txn_id: u64) -> ExportEntry {
    ExportEntry {
        export: e.name.clone(),
        snapshot: e.snapshot.clone(),
        writable: e.writable,
        connections,
        listen,
        txn_id,
    }
}
