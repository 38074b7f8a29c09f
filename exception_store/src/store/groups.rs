//! Group snapshots: one snapshot of each of several origins, taken in one commit.
//!
//! A group has no table of its own: its members are the snapshots whose record
//! carries its id (`SnapRec::group`, from the superblock's `next_group_id`), and
//! they share one name (`a@NAME`, `b@NAME`), the group's. The commit that links
//! every member flushes the origins first (as a single create does), so after a
//! crash either every member exists or none does.
//!
//! That the members capture one instant is the caller's part: no write of any
//! member origin may be between its copy-out decision and its data while the group
//! is created (`SharedStore::create_group` holds every member's origin gate).
use super::{OriginId, Store};
use crate::{tables::default_guid, Error, Result};
use blockdev::ids::SnapId;

/// A group snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Its id (never 0).
    pub id: u32,
    /// The name its members share.
    pub name: String,
    /// Its members, by origin id.
    pub members: Vec<(OriginId, SnapId)>,
}

impl Store {
    /// Create snapshot `name` of every origin of `origins` (at least two, no origin
    /// twice) in one commit, as one group; durable on return. Refused, changing
    /// nothing, when any member cannot be created (a name taken in one of the
    /// origins, an origin being removed, a full store).
    pub fn create_group(
        &mut self,
        name: &str,
        origins: &[OriginId],
        created: u64,
    ) -> Result<GroupInfo> {
        let mut ks = origins.to_vec();
        ks.sort_unstable();
        ks.dedup();
        if ks.len() != origins.len() || ks.len() < 2 {
            return Err(Error::Invalid(
                "a group snapshot takes two or more different origins".into(),
            ));
        }
        let mut plans = Vec::with_capacity(ks.len());
        for (i, &k) in ks.iter().enumerate() {
            let guid = default_guid(&self.sb.uuid, SnapId(self.sb.next_snap_id + i as u32));
            plans.push((self.plan_create(k, name, None, guid)?, guid));
        }
        self.check_writable()?;
        self.ensure_room(0, ks.len() as u64)?;
        // before the members exist: settled origin chunks need a copy-out for them
        for &k in &ks {
            self.new_copy_epoch(k);
        }
        self.finish_merge()?;
        self.latching(|s| {
            let group = s.sb.next_group_id.max(1);
            s.sb.next_group_id = group + 1;
            let members = plans
                .iter()
                .zip(&ks)
                .map(|((plan, guid), &k)| (k, s.link_snapshot(plan, name, created, *guid, group)))
                .collect();
            s.commit_with_origins(&ks)?;
            Ok(GroupInfo {
                id: group,
                name: name.to_owned(),
                members,
            })
        })
    }

    /// The group named `name`: the members of the newest group whose snapshots are
    /// called `name` (a member deleted on its own is no longer listed).
    pub fn group(&self, name: &str) -> Option<GroupInfo> {
        let group = self
            .snaps
            .values()
            .filter(|r| r.group != 0 && r.name == name)
            .map(|r| r.group)
            .max()?;
        Some(self.group_by_id(group))
    }

    /// The members of group `id` still there.
    pub fn group_by_id(&self, id: u32) -> GroupInfo {
        let mut name = String::new();
        let members = self
            .snaps
            .iter()
            .filter(|(_, r)| r.group == id)
            .map(|(sid, r)| {
                name.clone_from(&r.name);
                (r.origin, *sid)
            })
            .collect();
        GroupInfo { id, name, members }
    }
}
