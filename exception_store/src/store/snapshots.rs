//! Creating, deleting, holding and listing snapshots. Each change commits before it
//! returns (with the origin flushed first on create), so that what a snapshot captured and
//! which versions are visible are always the same in memory and on disk.
use super::{Dev, OriginId, SnapInfo, Store};
use crate::{
    format::MAX_NAME_LEN,
    tables::{default_guid, guid_hex, validate_name, JobKind, JobRec, SnapRec},
    Error, Result,
};
use blockdev::ids::{Label, SnapId, TxnId};

/// A snapshot checked for creation ([`Store::plan_create`]).
pub(super) struct Planned {
    origin: OriginId,
    root: Label,
    parent: Option<SnapId>,
    parent_label: Option<Label>,
    size: u64,
}

impl Store {
    /// Create snapshot `name` of the origin (`parent = None`) or of snapshot
    /// `parent`, stamped with `created` (seconds since the epoch), with this store's
    /// own guid for it ([`default_guid`]). Durable on return.
    pub fn create_snapshot(
        &mut self,
        name: &str,
        parent: Option<SnapId>,
        created: u64,
    ) -> Result<SnapId> {
        let guid = default_guid(&self.sb.uuid, SnapId(self.sb.next_snap_id));
        self.create_snapshot_as(name, parent, created, guid)
    }

    /// Create snapshot `name` of origin `k`, as [`create_snapshot`](Self::create_snapshot)
    /// does for origin 0. Names are unique per origin.
    pub fn create_origin_snapshot(
        &mut self,
        k: OriginId,
        name: &str,
        created: u64,
    ) -> Result<SnapId> {
        let guid = default_guid(&self.sb.uuid, SnapId(self.sb.next_snap_id));
        self.create_in(k, name, None, created, guid)
    }

    /// [`create_snapshot`](Self::create_snapshot) with a given guid: the identity of
    /// a snapshot received from another store. No two snapshots share a guid.
    pub fn create_snapshot_as(
        &mut self,
        name: &str,
        parent: Option<SnapId>,
        created: u64,
        guid: [u8; 16],
    ) -> Result<SnapId> {
        self.create_in(0, name, parent, created, guid)
    }

    /// [`create_origin_snapshot`](Self::create_origin_snapshot) with a given guid
    /// (a snapshot received into origin `k`).
    pub fn create_origin_snapshot_as(
        &mut self,
        k: OriginId,
        name: &str,
        created: u64,
        guid: [u8; 16],
    ) -> Result<SnapId> {
        self.create_in(k, name, None, created, guid)
    }

    /// Create `name` in origin `k` (of snapshot `parent`'s origin when there is one).
    fn create_in(
        &mut self,
        k: OriginId,
        name: &str,
        parent: Option<SnapId>,
        created: u64,
        guid: [u8; 16],
    ) -> Result<SnapId> {
        let plan = self.plan_create(k, name, parent, guid)?;
        self.check_writable()?;
        self.ensure_room(0, 0)?;
        if parent.is_none() {
            // before the snapshot exists: origin chunks settled until now need a
            // copy-out for it (`shared::settled`)
            self.new_copy_epoch(plan.origin);
            // It must capture the merged origin (design note E7).
            self.finish_merge()?;
        }
        // Everything the new snapshot captures must be durable: the origin, flushed
        // beside the store by the commit that links the new version, before its
        // superblock (a failure latches the store, so the snapshot never commits).
        self.latching(|s| {
            let id = s.link_snapshot(&plan, name, created, guid, 0);
            s.commit_with_origins(&[plan.origin])?;
            Ok(id)
        })
    }

    /// Check that `name` can be created in origin `k` (or as a child of `parent`),
    /// changing nothing; what [`link_snapshot`](Self::link_snapshot) needs.
    pub(super) fn plan_create(
        &self,
        k: OriginId,
        name: &str,
        parent: Option<SnapId>,
        guid: [u8; 16],
    ) -> Result<Planned> {
        validate_name(name).map_err(Error::Invalid)?;
        debug_assert!(name.len() <= MAX_NAME_LEN);
        let k = match parent {
            Some(p) => self.origin_of(Dev::Snap(p))?,
            None => k,
        };
        let origin = self
            .origins
            .get(&k)
            .ok_or_else(|| Error::NoSuchOrigin(format!("#{k}")))?;
        if origin.removing {
            return Err(Error::Busy(format!(
                "origin {:?} is being removed: no new snapshots",
                origin.name
            )));
        }
        if self.names.contains_key(&(k, name.to_owned())) {
            return Err(Error::NameTaken(name.to_owned()));
        }
        if let Some(other) = self.snaps.values().find(|r| r.guid == guid) {
            return Err(Error::Invalid(format!(
                "snapshot {:?} already has guid {}",
                other.name,
                guid_hex(&guid)
            )));
        }
        Ok(match parent {
            Some(p) => Planned {
                origin: k,
                root: origin.root,
                parent,
                parent_label: Some(self.label_of(p)?),
                size: self.snaps[&p].size,
            },
            None => Planned {
                origin: k,
                root: origin.root,
                parent,
                parent_label: None,
                size: origin.size,
            },
        })
    }

    /// Link a planned snapshot into the version tree and the tables (the caller
    /// commits).
    pub(super) fn link_snapshot(
        &mut self,
        plan: &Planned,
        name: &str,
        created: u64,
        guid: [u8; 16],
        group: u32,
    ) -> SnapId {
        let l = self.new_label();
        match plan.parent_label {
            None => {
                if let Some(old) = self.vt.newest(plan.root) {
                    self.dirty_versions.insert(old);
                }
                self.vt.add_origin_snapshot(plan.root, l);
            }
            Some(p) => self.vt.add_child(l, p),
        }
        self.dirty_versions.insert(l);
        let id = SnapId(self.sb.next_snap_id);
        self.sb.next_snap_id += 1;
        self.snaps.insert(
            id,
            SnapRec {
                label: l,
                hold: false,
                created,
                parent: plan.parent,
                name: name.to_owned(),
                guid,
                size: plan.size,
                origin: plan.origin,
                group,
            },
        );
        self.names.insert((plan.origin, name.to_owned()), id);
        let cover = self.snap_cover.entry(plan.origin).or_insert(0);
        *cover = (*cover).max(plan.size);
        self.dirty_snaps.insert(id);
        self.changed = true;
        id
    }

    /// Delete a snapshot: it disappears at once (durable on return); its space comes
    /// back as the background pass advances ([`Store::background_step`]).
    pub fn delete_snapshot(&mut self, id: SnapId) -> Result<TxnId> {
        self.delete_snapshots(&[id])
    }

    /// Delete several snapshots in one commit (the members of a group): all of them
    /// disappear at once, or, on an error before the commit, none.
    pub fn delete_snapshots(&mut self, ids: &[SnapId]) -> Result<TxnId> {
        let labels = ids
            .iter()
            .map(|&id| self.label_of(id).map(|l| (id, l)))
            .collect::<Result<Vec<_>>>()?;
        self.check_writable()?;
        self.latching(|s| {
            for (id, l) in labels {
                s.retire_only(id, l, JobKind::Delete);
            }
            s.commit()
        })
    }

    /// Take snapshot `id` (on label `l`) away from users at once: its label becomes a
    /// ghost and a background job of `kind` (a delete pass or a merge) is queued for
    /// it. The caller commits (`delete_snapshots`, `merge_snapshots`).
    pub(super) fn retire_only(&mut self, id: SnapId, l: blockdev::ids::Label, kind: JobKind) {
        self.moved();
        let mut cursor = 0;
        if let Some(r) = self.snaps.remove(&id) {
            self.names.remove(&(r.origin, r.name.clone()));
            self.refresh_snap_cover();
            if kind == JobKind::Merge {
                // a merge walks its origin's addresses only
                cursor = super::pool_addr(r.origin, 0);
            }
        }
        self.dirty_snaps.insert(id);
        let now = self.tick();
        self.vt.make_ghost(l, now);
        self.dirty_versions.insert(l);
        let start = self.tick();
        let job = self.sb.next_job_id;
        self.sb.next_job_id += 1;
        self.jobs.insert(
            job,
            JobRec {
                kind,
                target: l,
                start,
                cursor,
            },
        );
        self.dirty_jobs.insert(job);
        self.changed = true;
    }

    /// Whether a device serves snapshot `id` now. The space policy never deletes a
    /// snapshot in use (its device would fail every read). Not persisted: whoever
    /// serves devices says so after every open.
    pub fn set_in_use(&mut self, id: SnapId, in_use: bool) {
        if in_use {
            self.in_use.insert(id);
        } else {
            self.in_use.remove(&id);
        }
    }

    /// Whether snapshot `id` is marked in use ([`Store::set_in_use`]).
    pub fn is_in_use(&self, id: SnapId) -> bool {
        self.in_use.contains(&id)
    }

    /// Mark a snapshot held (never pruned) or not. Durable on return.
    pub fn set_hold(&mut self, id: SnapId, hold: bool) -> Result<TxnId> {
        self.set_holds(&[id], hold)
    }

    /// [`set_hold`](Self::set_hold) of several snapshots (a group's members) in one
    /// commit.
    pub fn set_holds(&mut self, ids: &[SnapId], hold: bool) -> Result<TxnId> {
        for &id in ids {
            self.label_of(id)?;
        }
        self.latching(|s| {
            for &id in ids {
                if let Some(r) = s.snaps.get_mut(&id) {
                    r.hold = hold;
                }
                s.dirty_snaps.insert(id);
            }
            s.changed = true;
            s.commit()
        })
    }

    /// The snapshot called `name`: in a store of one origin, its name as given;
    /// otherwise `ORIGIN@NAME`, or a bare `NAME` that only one origin has.
    pub fn lookup(&self, name: &str) -> Option<SnapId> {
        if self.origins.len() <= 1 {
            return self.lookup_in(0, name);
        }
        if let Some((o, n)) = name.split_once('@') {
            if let Some(k) = self.origin_by_name(o) {
                return self.lookup_in(k, n);
            }
        }
        let mut hits = self
            .names
            .iter()
            .filter(|((_, n), _)| n == name)
            .map(|(_, id)| *id);
        match (hits.next(), hits.next()) {
            (Some(id), None) => Some(id),
            _ => None,
        }
    }

    /// The names of the origins that have a snapshot called `name` (a bare name
    /// [`lookup`](Self::lookup) cannot place when there are several).
    pub fn origins_with(&self, name: &str) -> Vec<String> {
        self.names
            .keys()
            .filter(|(_, n)| n == name)
            .filter_map(|(k, _)| self.origins.get(k).map(|o| o.name.clone()))
            .collect()
    }

    /// Snapshot `name` of origin `k`.
    pub fn lookup_in(&self, k: OriginId, name: &str) -> Option<SnapId> {
        self.names.get(&(k, name.to_owned())).copied()
    }

    /// The origin called `name`.
    pub fn origin_by_name(&self, name: &str) -> Option<OriginId> {
        self.origins
            .iter()
            .find(|(_, o)| o.name == name)
            .map(|(k, _)| *k)
    }

    /// Whether `dev` exists.
    pub fn exists(&self, dev: Dev) -> bool {
        match dev {
            Dev::Origin(k) => self.origins.contains_key(&k),
            Dev::Snap(id) => self.snaps.contains_key(&id),
        }
    }

    /// Every snapshot, by id (creation order).
    pub fn snapshots(&self) -> Vec<SnapInfo> {
        self.snaps
            .iter()
            .map(|(id, r)| SnapInfo {
                id: *id,
                name: r.name.clone(),
                created: r.created,
                parent: r.parent.map(|p| {
                    self.snaps
                        .get(&p)
                        .map_or_else(|| format!("#{} (deleted)", p.0), |x| x.name.clone())
                }),
                hold: r.hold,
                label: r.label,
                guid: r.guid,
                size: r.size,
                origin: r.origin,
                group: r.group,
            })
            .collect()
    }

    /// Every origin, by id.
    pub fn origins(&self) -> Vec<super::OriginInfo> {
        self.origins
            .iter()
            .map(|(id, o)| super::OriginInfo {
                id: *id,
                name: o.name.clone(),
                size: o.size,
                path: o.path.clone(),
                quota: o.quota,
                used: self.origin_used(*id),
                removing: o.removing,
            })
            .collect()
    }
}
