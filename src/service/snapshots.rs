//! The snapshot ops of the [`Service`]: `create`, `delete`, `merge` (and the
//! deferred merge that waits for the origin device to be closed), `hold` /
//! `release` and `prune`.
//!
//! # Invariants
//! - Each op runs under the activation table's lock, so ops on snapshots are
//!   serialised against activation and against each other.
//! - `create` of an origin snapshot finishes a running merge first, one batch per
//!   hold of the store lock (the other devices' I/O is served in between).
//! - `delete` and `merge` refuse a snapshot that is active, exported or a
//!   receive's rollback point; `delete` also one being sent. `prune` never deletes
//!   a held or active one.
use super::{changed, claim_origin, Service};
use crate::{protocol, ublk::Devices, Error, Result};
use blockdev::ids::SnapId;
use exception_store::retention;

impl Service {
    /// `create`.
    pub fn create(
        &self,
        name: &str,
        from: Option<&str>,
        freeze: bool,
    ) -> Result<protocol::Created> {
        if exception_store::replicate::is_receive_name(name) {
            // the daemon would take it for a receive's own snapshot (an orphan at
            // the next start)
            return Err(Error::Invalid(format!(
                "{name:?}: names recv+, recv-mark+ and recv-force+ followed by 16 hex \
                 digits are a receive's own"
            )));
        }
        if from.is_none() {
            // A snapshot of the origin captures the merged origin: a running merge
            // ends first, batch by batch, before the activation table's lock (so
            // `status` and the other control ops are not held up either) and with the
            // store lock released between batches (the devices' I/O goes on). The
            // store finishes whatever is left under its lock (a merge started since).
            self.store.finish_merge()?;
        }
        let devs = self.devices.lock();
        let parent = from.map(|p| self.lookup(p)).transpose()?;
        let created = crate::now_secs();
        // the device it captures: the parent snapshot's, or the origin's
        let captured = match (parent, self.split_origin(name).0) {
            (Some(p), _) => exception_store::Dev::Snap(p),
            (None, k) => exception_store::Dev::Origin(k.unwrap_or(0)),
        };
        let frozen = match freeze {
            true => Some(self.freeze(&devs, &[captured])?),
            false => None,
        };
        // `ORIGIN@NAME` in a store of several origins
        let id = match self.split_origin(name) {
            (Some(k), base) => match parent {
                None => self.store.create_origin_snapshot(k, base, created)?,
                Some(p) if self.store.lock().origin_of(exception_store::Dev::Snap(p))? == k => {
                    self.store.create_snapshot(base, parent, created)?
                }
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "{name:?}: a snapshot of a snapshot belongs to its parent's origin"
                    )))
                }
            },
            (None, _) => self.store.create_snapshot(name, parent, created)?,
        };
        let frozen = super::freeze::thawed(frozen)?;
        tracing::info!(name, ?from, id = id.0, ?frozen, "snapshot created");
        Ok(protocol::Created {
            id: id.0,
            name: name.to_owned(),
            created,
            parent: from.map(str::to_owned),
            txn_id: self.txn(),
            frozen,
        })
    }

    /// `delete`; of a group's name, every member in one commit (refused, nothing
    /// deleted, while any member is active, exported, being sent or a rollback point).
    pub fn delete(&self, name: &str) -> Result<protocol::Changed> {
        if let Some(members) = self.group_members(name) {
            let devs = self.devices.lock();
            for m in &members {
                if let Some(why) = self.protected(&devs, m.id) {
                    return Err(Error::Store(exception_store::Error::Busy(format!(
                        "member #{} of group {name:?} is {why}",
                        m.id.0
                    ))));
                }
                if self.repl.is_internal(m.id) {
                    return Err(Error::RollbackPoint(name.to_owned()));
                }
            }
            let ids: Vec<_> = members.iter().map(|m| m.id).collect();
            let t = self.store.delete_snapshots(&ids)?;
            tracing::info!(name, members = ids.len(), "group deleted");
            return Ok(changed(name, t.0));
        }
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
        if let Some(members) = self.group_members(name) {
            return self
                .merge_group(name, &members, deferred)
                .map(Merge::Started);
        }
        let devs = self.devices.lock();
        let id = self.lookup_inactive(&devs, name)?;
        if self.repl.is_sending(id) {
            return Err(Error::InUse {
                device: name.to_owned(),
                why: "it is being sent (`snapctl send`)",
            });
        }
        // the device of the snapshot's own origin
        let origin = exception_store::Dev::Origin(
            self.store
                .lock()
                .origin_of(exception_store::Dev::Snap(id))?,
        );
        let claim = match claim_origin(&devs, origin) {
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

    /// `merge NAME` of a group: every member into its own origin in one commit, so
    /// the origins roll back together (a crash leaves all the merges or none; each
    /// copy resumes). Refused, nothing changed, while a member is active, exported
    /// or being sent, or a member's origin device is mounted (`--deferred` is not
    /// taken for a group: unmount them all).
    fn merge_group(
        &self,
        name: &str,
        members: &[exception_store::SnapInfo],
        deferred: bool,
    ) -> Result<protocol::Changed> {
        let devs = self.devices.lock();
        if deferred {
            return Err(Error::Invalid(format!(
                "{name:?} is a group: merge --deferred takes one snapshot; unmount its \
                 origins and merge the group"
            )));
        }
        for m in members {
            if let Some(why) = self.protected(&devs, m.id) {
                return Err(Error::Store(exception_store::Error::Busy(format!(
                    "member #{} of group {name:?} is {why}",
                    m.id.0
                ))));
            }
        }
        // hold every member's origin device while the merges start
        let mut claims = Vec::new();
        for m in members {
            match claim_origin(&devs, exception_store::Dev::Origin(m.origin)) {
                Ok(c) => claims.push(c),
                Err(device) => {
                    return Err(Error::InUse {
                        device,
                        why: "unmount every origin of the group before merging it",
                    })
                }
            }
        }
        let ids: Vec<SnapId> = members.iter().map(|m| m.id).collect();
        let t = self.store.merge_snapshots(&ids)?;
        drop(claims);
        tracing::info!(
            name,
            members = ids.len(),
            txn_id = t.0,
            "group merge started"
        );
        Ok(changed(name, t.0))
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
        if self.protected(&devs, id).is_some() {
            // active, exported or being sent: later, once it is not
            return;
        }
        let Ok(k) = self.store.lock().origin_of(exception_store::Dev::Snap(id)) else {
            return;
        };
        let Ok(claim) = claim_origin(&devs, exception_store::Dev::Origin(k)) else {
            return;
        };
        match self.store.merge_snapshot(id) {
            Ok(t) => tracing::info!(name, txn_id = t.0, "deferred merge started"),
            Err(e) => tracing::error!(name, error = %e, "deferred merge failed to start; dropped"),
        }
        drop(claim);
        self.clear_deferred(&devs, id);
    }

    /// The snapshot of the deferred merge, if there is one, as `status` names it:
    /// `ORIGIN@NAME` in a pool, so that it says which origin waits to be closed.
    pub(crate) fn deferred_merge_name(&self, s: &exception_store::Store) -> Option<String> {
        let id = (*self.deferred_merge.lock())?;
        let i = s.snapshots().into_iter().find(|i| i.id == id)?;
        let origins = s.origins();
        if origins.len() <= 1 {
            return Some(i.name);
        }
        let o = origins.into_iter().find(|o| o.id == i.origin)?;
        Some(format!("{}@{}", o.name, i.name))
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
        if let Some(members) = self.group_members(name) {
            let _devs = self.devices.lock();
            let ids: Vec<_> = members.iter().map(|m| m.id).collect();
            let t = self.store.lock().set_holds(&ids, hold)?;
            tracing::info!(name, hold, members = ids.len(), "group hold changed");
            return Ok(changed(name, t.0));
        }
        let _devs = self.devices.lock();
        let id = self.lookup(name)?;
        let t = self.store.lock().set_hold(id, hold)?;
        tracing::info!(name, hold, "snapshot hold changed");
        Ok(changed(name, t.0))
    }

    /// `prune`: computed and carried out under the activation table's lock, so two
    /// overlapping runs are serialised and the second sees what the first deleted.
    /// Held snapshots are never candidates; active ones are skipped and reported.
    /// With `origin`, only that origin's snapshots and the groups with a member in
    /// it are considered (a group still goes whole).
    pub fn prune(
        &self,
        policy: &protocol::PrunePolicy,
        prefix: Option<&str>,
        origin: Option<&str>,
        dry_run: bool,
    ) -> Result<protocol::Pruned> {
        if policy.is_empty() {
            return Err(Error::Invalid(
                "a prune policy needs at least one rule (keep-last, hourly, daily, weekly, monthly)"
                    .into(),
            ));
        }
        let devs = self.devices.lock();
        let (only, snaps) = {
            let s = self.store.lock();
            let only = origin.map(|o| crate::names::origin(&s, o)).transpose()?;
            let snaps: Vec<_> = s
                .snapshots()
                .into_iter()
                .filter(|s| s.name.starts_with(prefix.unwrap_or("")))
                .filter(|s| !self.repl.is_internal(s.id))
                .collect();
            (only, snaps)
        };
        // the groups with a member in the origin asked for
        let groups_in: std::collections::HashSet<u32> = snaps
            .iter()
            .filter(|i| i.group != 0 && only.is_none_or(|k| i.origin == k))
            .map(|i| i.group)
            .collect();
        let in_scope = |i: &exception_store::SnapInfo| match i.group {
            0 => only.is_none_or(|k| i.origin == k),
            g => groups_in.contains(&g),
        };
        let p = retention::Policy {
            last: policy.keep_last,
            hourly: policy.hourly,
            daily: policy.daily,
            weekly: policy.weekly,
            monthly: policy.monthly,
        };
        // Retention runs per series: each origin's own snapshots, and the group
        // snapshots (a group counts once, by one member, and goes as a whole).
        let mut series: std::collections::BTreeMap<Option<u32>, Vec<_>> = Default::default();
        let mut group_of: std::collections::HashMap<SnapId, u32> = Default::default();
        for i in snaps.iter().filter(|i| in_scope(i)) {
            if i.group == 0 {
                series.entry(Some(i.origin)).or_default().push(i.clone());
            } else if !group_of.values().any(|g| *g == i.group) {
                group_of.insert(i.id, i.group);
                series.entry(None).or_default().push(i.clone());
            }
        }
        let mut victims: Vec<SnapId> = Vec::new();
        for list in series.values() {
            for v in retention::victims(list, &p) {
                match group_of.get(&v) {
                    // every member of the group
                    Some(g) => victims.extend(snaps.iter().filter(|i| i.group == *g).map(|i| i.id)),
                    None => victims.push(v),
                }
            }
        }
        // a group with a protected member stays whole
        let held_back: std::collections::HashSet<u32> = snaps
            .iter()
            .filter(|i| i.group != 0 && victims.contains(&i.id))
            .filter(|i| i.hold || self.protected(&devs, i.id).is_some())
            .map(|i| i.group)
            .collect();
        let mut skipped: Vec<protocol::Skipped> = snaps
            .iter()
            .filter(|s| s.hold && in_scope(s))
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
            if let Some(reason) = self.protected(&devs, *id) {
                skipped.push(protocol::Skipped {
                    name: s.name.clone(),
                    reason,
                });
                continue;
            }
            if held_back.contains(&s.group) {
                skipped.push(protocol::Skipped {
                    name: s.name.clone(),
                    reason: "another member of its group is held or in use".into(),
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
        let considered = series.values().flatten().filter(|s| !s.hold).count();
        let victims_counted = series
            .values()
            .flatten()
            .filter(|i| victims.contains(&i.id))
            .count();
        Ok(protocol::Pruned {
            dry_run,
            kept: considered - victims_counted,
            deleted,
            skipped,
            txn_id: self.txn(),
        })
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
