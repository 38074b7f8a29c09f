//! The origins of a pool: adding, attaching, removing and listing them.
//!
//! A store serves origins by id (`OriginId`). Origin 0 is the one every store has:
//! its device is given at open, its root label is 0 and its size is also the
//! superblock's `origin_len`. Another origin gets a new root label (the root of its
//! own version tree), its own address range (`pool_addr`) and a record in the origin
//! table; its device is attached after open ([`Store::attach_origin`]), and an origin
//! whose device is missing stays in the store, its snapshots listed, its I/O refused
//! with [`Error::OriginMissing`].
//!
//! # Invariants
//! - The origin table's roots are exactly the version forest's roots.
//! - An origin is removed only once its tree holds nothing but its root: its
//!   snapshots deleted and their delete passes finished, so that no element of its
//!   address range is left and its id may be given again.
//! - Origin 0 is never removed.
use super::{OriginId, Store};
use crate::{
    format::{MAX_ORIGINS, MAX_ORIGIN_PATH_LEN},
    tables::{validate_name, OriginRec},
    Error, Result,
};
use blockdev::{ids::TxnId, BlockDevice};
use std::sync::Arc;

/// What [`Store::remove_origin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginRemoved {
    /// The origin is gone (committed in this transaction).
    Removed(TxnId),
    /// Its snapshots are deleted and it takes no new ones; it goes once their delete
    /// passes have run ([`Store::background_step`]).
    Removing(TxnId),
}

impl Store {
    /// Add origin `name` on `dev` (of its whole size), recording `path` (what the
    /// daemon opens it by at start: a stable name such as `/dev/disk/by-id/...`).
    /// Durable on return.
    pub fn add_origin(
        &mut self,
        name: &str,
        dev: Arc<dyn BlockDevice>,
        path: &str,
        created: u64,
    ) -> Result<OriginId> {
        validate_origin_name(name)?;
        if self.origin_by_name(name).is_some() {
            return Err(Error::NameTaken(name.to_owned()));
        }
        if path.len() > MAX_ORIGIN_PATH_LEN {
            return Err(Error::Invalid(format!(
                "an origin's path is at most {MAX_ORIGIN_PATH_LEN} bytes; use a shorter \
                 stable name (a /dev/disk/by-id/ link)"
            )));
        }
        let size = dev.len();
        if size == 0 || !size.is_multiple_of(512) {
            return Err(Error::Invalid(format!(
                "origin {name:?} is {size} bytes: an origin is a non-empty whole number \
                 of 512-byte sectors"
            )));
        }
        let k = self.origins.keys().next_back().map_or(0, |k| k + 1);
        if k >= MAX_ORIGINS {
            return Err(Error::Invalid(format!(
                "a store holds at most {MAX_ORIGINS} origins"
            )));
        }
        self.check_writable()?;
        self.ensure_room(0, 2)?;
        self.latching(|s| {
            let root = s.new_label();
            s.vt.add_root(root);
            s.dirty_versions.insert(root);
            s.origins.insert(
                k,
                OriginRec {
                    root,
                    removing: false,
                    size,
                    quota: 0,
                    created,
                    name: name.to_owned(),
                    path: path.to_owned(),
                },
            );
            s.dirty_origins.insert(k);
            s.origin_devs.insert(k, dev);
            s.changed = true;
            s.commit()
        })?;
        tracing::info!(origin = name, id = k, size, "origin added");
        Ok(k)
    }

    /// Give origin `k` its device (at start, for every origin but 0). Refused when the
    /// device is smaller than the origin.
    pub fn attach_origin(&mut self, k: OriginId, dev: Arc<dyn BlockDevice>) -> Result<()> {
        let size = self.origin_size(k)?;
        if dev.len() < size {
            return Err(Error::Mismatch {
                what: "origin size in bytes",
                store: size,
                given: dev.len(),
            });
        }
        self.origin_devs.insert(k, dev);
        Ok(())
    }

    /// Remove origin `k`. With snapshots left it is refused, unless `with_snapshots`:
    /// then they are deleted and the origin goes once their space is freed
    /// ([`OriginRemoved::Removing`]); it takes no new snapshot meanwhile. The caller
    /// stops serving its devices first.
    pub fn remove_origin(&mut self, k: OriginId, with_snapshots: bool) -> Result<OriginRemoved> {
        let name = match self.origins.get(&k) {
            Some(o) => o.name.clone(),
            None => return Err(Error::NoSuchOrigin(format!("#{k}"))),
        };
        if k == 0 {
            return Err(Error::Invalid(format!(
                "origin {name:?} is the store's first origin: it stays as long as the store"
            )));
        }
        let snaps: Vec<_> = self
            .snaps
            .iter()
            .filter(|(_, r)| r.origin == k)
            .map(|(id, r)| (*id, r.hold))
            .collect();
        if !snaps.is_empty() && !with_snapshots {
            return Err(Error::Busy(format!(
                "origin {name:?} has {} snapshots: delete them first, or remove it with them",
                snaps.len()
            )));
        }
        if let Some((id, _)) = snaps.iter().find(|(_, hold)| *hold) {
            let held = self.snaps.get(id).map_or(String::new(), |r| r.name.clone());
            return Err(Error::Busy(format!(
                "snapshot {held:?} of origin {name:?} is held: release it first"
            )));
        }
        if let Some((id, _)) = snaps.iter().find(|(id, _)| self.in_use.contains(id)) {
            let used = self.snaps.get(id).map_or(String::new(), |r| r.name.clone());
            return Err(Error::Busy(format!(
                "snapshot {used:?} of origin {name:?} is in use: deactivate it first"
            )));
        }
        self.check_writable()?;
        self.ensure_room(0, 2)?;
        for (id, _) in snaps {
            self.delete_snapshot(id)?;
        }
        self.latching(|s| {
            if let Some(o) = s.origins.get_mut(&k) {
                o.removing = true;
            }
            s.dirty_origins.insert(k);
            s.changed = true;
            s.reap_origins();
            let t = s.commit()?;
            Ok(if s.origins.contains_key(&k) {
                OriginRemoved::Removing(t)
            } else {
                tracing::info!(origin = %name, id = k, "origin removed");
                OriginRemoved::Removed(t)
            })
        })
    }

    /// Drop every origin being removed whose tree holds nothing but its root (part
    /// of the change that commits next).
    pub(crate) fn reap_origins(&mut self) {
        let done: Vec<OriginId> = self
            .origins
            .iter()
            .filter(|(k, o)| **k != 0 && o.removing && self.vt.children(o.root).is_empty())
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some(o) = self.origins.remove(&k) {
                self.vt.remove_root(o.root);
                self.dirty_versions.insert(o.root);
                self.snap_cover.remove(&k);
            }
            self.origin_devs.remove(&k);
            self.dirty_origins.insert(k);
            self.changed = true;
        }
    }

    /// Whether origin `k` has its device attached.
    pub fn origin_attached(&self, k: OriginId) -> bool {
        self.origin_devs.contains_key(&k)
    }
}

/// An origin's name: a snapshot name without `@` (which separates `ORIGIN@NAME`).
pub fn validate_origin_name(name: &str) -> Result<()> {
    validate_name(name).map_err(Error::Invalid)?;
    if name.contains('@') {
        return Err(Error::Invalid(
            "an origin's name may not hold '@' (it separates ORIGIN@NAME)".into(),
        ));
    }
    Ok(())
}
