//! Records of the three small tables kept in B-trees beside the elements: versions
//! (label -> parent, ghost), snapshots (id -> label, name, creation time, user parent,
//! hold) and background jobs (id -> kind, target, start, cursor).
use crate::format::*;
use blockdev::{
    ids::{Label, SnapId},
    le, Reason,
};
use btree::Codec;

/// A row of the version table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRec {
    /// Parent label.
    pub parent: Label,
    /// A ghost.
    pub ghost: bool,
    /// When it became a ghost.
    pub ghost_since: u64,
}

impl Codec for VersionRec {
    const SIZE: usize = VERSION_REC_SIZE;
    fn encode(&self, out: &mut [u8]) {
        le::put_u32(out, 0, self.parent.0);
        le::put_u32(out, 4, if self.ghost { VERSION_GHOST } else { 0 });
        le::put_u64(out, 8, self.ghost_since);
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        let flags = le::get_u32(b, 4);
        if flags & !VERSION_GHOST != 0 {
            return Err(Reason::BadField);
        }
        Ok(VersionRec {
            parent: Label(le::get_u32(b, 0)),
            ghost: flags & VERSION_GHOST != 0,
            ghost_since: le::get_u64(b, 8),
        })
    }
}

/// A row of the snapshot table: one user-visible snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapRec {
    /// The label the device reads through (moves on implicit splits).
    pub label: Label,
    /// Never pruned.
    pub hold: bool,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The snapshot it was taken of, or `None` for the origin.
    pub parent: Option<SnapId>,
    /// Unique name.
    pub name: String,
    /// The snapshot's identity across stores (kept by replication: a received
    /// snapshot carries its source's guid). Format version 3; an upgraded store's
    /// snapshots get [`default_guid`].
    pub guid: [u8; 16],
    /// The device size in bytes the snapshot was taken at. Format version 3; an
    /// upgraded store's snapshots get the origin size.
    pub size: u64,
    /// The origin whose version tree it belongs to. Format version 4; an upgraded
    /// store's snapshots get origin 0.
    pub origin: u32,
    /// The group snapshot it is a member of (0: none). Format version 4.
    pub group: u32,
}

/// The guid a store gives its own snapshot `id`: the first 12 bytes of the store's
/// uuid, then the id (little-endian), so unique across stores and never reused.
pub fn default_guid(store_uuid: &[u8; 16], id: SnapId) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[..12].copy_from_slice(&store_uuid[..12]);
    le::put_u32(&mut g, 12, id.0);
    g
}

/// A guid as 32 lowercase hex digits (how reports and streams print it). One
/// allocation: `list` prints one per snapshot, and a `format!` per byte was two
/// thirds of the daemon's `list` of 10,000 snapshots (7.9 ms of it; 2.6 ms left,
/// benches/pool_scale.rs).
pub fn guid_hex(g: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in g {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The fixed-size encoding of a snapshot record of format versions 1 and 2 (read
/// at open to upgrade the table; never written).
#[derive(Debug, Clone, Copy)]
pub struct SnapRecRawV2(pub [u8; SNAP_REC_SIZE_V2]);

impl Codec for SnapRecRawV2 {
    const SIZE: usize = SNAP_REC_SIZE_V2;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0);
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        let mut a = [0u8; SNAP_REC_SIZE_V2];
        a.copy_from_slice(b);
        Ok(SnapRecRawV2(a))
    }
}

impl SnapRecRawV2 {
    /// The record as format version 4 holds it, with `guid` and `size` supplied, of
    /// origin 0 and no group.
    pub fn upgrade(&self, guid: [u8; 16], size: u64) -> Result<SnapRec, Reason> {
        let mut b = [0u8; SNAP_REC_SIZE];
        b[..SNAP_REC_SIZE_V2].copy_from_slice(&self.0);
        b[SNAP_GUID_OFFSET..SNAP_GUID_OFFSET + 16].copy_from_slice(&guid);
        le::put_u64(&mut b, SNAP_SIZE_OFFSET, size);
        SnapRec::from_raw(&SnapRecRaw(b))
    }
}

/// The fixed-size encoding of a snapshot record of format version 3 (read at open
/// to upgrade the table; never written).
#[derive(Debug, Clone, Copy)]
pub struct SnapRecRawV3(pub [u8; SNAP_REC_SIZE_V3]);

impl Codec for SnapRecRawV3 {
    const SIZE: usize = SNAP_REC_SIZE_V3;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0);
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        let mut a = [0u8; SNAP_REC_SIZE_V3];
        a.copy_from_slice(b);
        Ok(SnapRecRawV3(a))
    }
}

impl SnapRecRawV3 {
    /// The record as format version 4 holds it: of origin 0, no group.
    pub fn upgrade(&self) -> Result<SnapRec, Reason> {
        let mut b = [0u8; SNAP_REC_SIZE];
        b[..SNAP_REC_SIZE_V3].copy_from_slice(&self.0);
        SnapRec::from_raw(&SnapRecRaw(b))
    }
}

/// Fixed-size encoding of a [`SnapRec`] (the name inline, up to 63 bytes; format
/// version 4).
#[derive(Debug, Clone, Copy)]
pub struct SnapRecRaw(pub [u8; SNAP_REC_SIZE]);

impl Codec for SnapRecRaw {
    const SIZE: usize = SNAP_REC_SIZE;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0);
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        let mut a = [0u8; SNAP_REC_SIZE];
        a.copy_from_slice(b);
        SnapRec::from_raw(&SnapRecRaw(a))?;
        Ok(SnapRecRaw(a))
    }
}

impl SnapRec {
    /// Encode.
    pub fn to_raw(&self) -> SnapRecRaw {
        let mut b = [0u8; SNAP_REC_SIZE];
        le::put_u32(&mut b, 0, self.label.0);
        le::put_u32(&mut b, 4, if self.hold { SNAP_HOLD } else { 0 });
        le::put_u64(&mut b, 8, self.created);
        le::put_u32(&mut b, 16, self.parent.map_or(PARENT_ORIGIN, |p| p.0));
        let name = self.name.as_bytes();
        let n = name.len().min(MAX_NAME_LEN);
        b[20] = n as u8;
        b[21..21 + n].copy_from_slice(&name[..n]);
        b[SNAP_GUID_OFFSET..SNAP_GUID_OFFSET + 16].copy_from_slice(&self.guid);
        le::put_u64(&mut b, SNAP_SIZE_OFFSET, self.size);
        le::put_u32(&mut b, SNAP_ORIGIN_OFFSET, self.origin);
        le::put_u32(&mut b, SNAP_GROUP_OFFSET, self.group);
        SnapRecRaw(b)
    }
    /// Decode, validating the name.
    pub fn from_raw(r: &SnapRecRaw) -> Result<SnapRec, Reason> {
        let b = &r.0;
        let flags = le::get_u32(b, 4);
        if flags & !SNAP_HOLD != 0 {
            return Err(Reason::BadField);
        }
        let n = b[20] as usize;
        if n == 0 || n > MAX_NAME_LEN {
            return Err(Reason::BadField);
        }
        let name = std::str::from_utf8(&b[21..21 + n]).map_err(|_| Reason::BadField)?;
        if validate_name(name).is_err() || b[21 + n..SNAP_REC_SIZE_V2].iter().any(|&x| x != 0) {
            return Err(Reason::BadField);
        }
        let size = le::get_u64(b, SNAP_SIZE_OFFSET);
        if size == 0 {
            return Err(Reason::BadField);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&b[SNAP_GUID_OFFSET..SNAP_GUID_OFFSET + 16]);
        let p = le::get_u32(b, 16);
        Ok(SnapRec {
            label: Label(le::get_u32(b, 0)),
            hold: flags & SNAP_HOLD != 0,
            created: le::get_u64(b, 8),
            parent: (p != PARENT_ORIGIN).then_some(SnapId(p)),
            name: name.to_owned(),
            guid,
            size,
            origin: le::get_u32(b, SNAP_ORIGIN_OFFSET),
            group: le::get_u32(b, SNAP_GROUP_OFFSET),
        })
    }
}

/// A row of the origin table (format version 4): one origin of the store, the root
/// of its own version tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRec {
    /// The root label of its version tree (label 0 for origin 0).
    pub root: Label,
    /// Being removed: its snapshots are being deleted, no new ones are taken.
    pub removing: bool,
    /// Its size in bytes now.
    pub size: u64,
    /// Most chunks its snapshots may hold (0: no quota).
    pub quota: u64,
    /// When it was added, seconds since the epoch (0 for an upgraded store's).
    pub created: u64,
    /// Unique name (the `ORIGIN` of `ORIGIN@NAME`).
    pub name: String,
    /// The device path it was added with (empty for an upgraded store's origin 0,
    /// which the daemon is given at start).
    pub path: String,
}

/// Fixed-size encoding of an [`OriginRec`].
#[derive(Debug, Clone, Copy)]
pub struct OriginRecRaw(pub [u8; ORIGIN_REC_SIZE]);

impl Codec for OriginRecRaw {
    const SIZE: usize = ORIGIN_REC_SIZE;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0);
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        let mut a = [0u8; ORIGIN_REC_SIZE];
        a.copy_from_slice(b);
        OriginRec::from_raw(&OriginRecRaw(a))?;
        Ok(OriginRecRaw(a))
    }
}

impl OriginRec {
    /// Encode (a path longer than the record holds is cut: `add` refuses those).
    pub fn to_raw(&self) -> OriginRecRaw {
        let mut b = [0u8; ORIGIN_REC_SIZE];
        le::put_u32(&mut b, 0, self.root.0);
        le::put_u32(&mut b, 4, if self.removing { ORIGIN_REMOVING } else { 0 });
        le::put_u64(&mut b, 8, self.size);
        le::put_u64(&mut b, 16, self.quota);
        le::put_u64(&mut b, 24, self.created);
        let name = self.name.as_bytes();
        let n = name.len().min(MAX_NAME_LEN);
        b[ORIGIN_NAME_OFFSET] = n as u8;
        b[ORIGIN_NAME_OFFSET + 1..ORIGIN_NAME_OFFSET + 1 + n].copy_from_slice(&name[..n]);
        let path = self.path.as_bytes();
        let n = path.len().min(MAX_ORIGIN_PATH_LEN);
        le::put_u16(&mut b, ORIGIN_PATH_OFFSET, n as u16);
        b[ORIGIN_PATH_OFFSET + 2..ORIGIN_PATH_OFFSET + 2 + n].copy_from_slice(&path[..n]);
        OriginRecRaw(b)
    }

    /// Decode, validating the name, the path and the flags.
    pub fn from_raw(r: &OriginRecRaw) -> Result<OriginRec, Reason> {
        let b = &r.0;
        let flags = le::get_u32(b, 4);
        if flags & !ORIGIN_REMOVING != 0 {
            return Err(Reason::BadField);
        }
        let n = b[ORIGIN_NAME_OFFSET] as usize;
        if n == 0 || n > MAX_NAME_LEN {
            return Err(Reason::BadField);
        }
        let name_at = ORIGIN_NAME_OFFSET + 1;
        let name = std::str::from_utf8(&b[name_at..name_at + n]).map_err(|_| Reason::BadField)?;
        if validate_origin_name(name).is_err()
            || b[name_at + n..ORIGIN_PATH_OFFSET].iter().any(|&x| x != 0)
        {
            return Err(Reason::BadField);
        }
        let p = le::get_u16(b, ORIGIN_PATH_OFFSET) as usize;
        let path_at = ORIGIN_PATH_OFFSET + 2;
        if p > MAX_ORIGIN_PATH_LEN || b[path_at + p..].iter().any(|&x| x != 0) {
            return Err(Reason::BadField);
        }
        let path = std::str::from_utf8(&b[path_at..path_at + p]).map_err(|_| Reason::BadField)?;
        let size = le::get_u64(b, 8);
        if size == 0 {
            return Err(Reason::BadField);
        }
        Ok(OriginRec {
            root: Label(le::get_u32(b, 0)),
            removing: flags & ORIGIN_REMOVING != 0,
            size,
            quota: le::get_u64(b, 16),
            created: le::get_u64(b, 24),
            name: name.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// Check an origin name: a snapshot name ([`validate_name`]) without `@`, which
/// separates the origin from the snapshot in `ORIGIN@NAME`.
pub fn validate_origin_name(name: &str) -> Result<(), String> {
    validate_name(name)?;
    if name.contains('@') {
        return Err("an origin name may not hold '@' (it separates ORIGIN@SNAPSHOT)".into());
    }
    Ok(())
}

/// Check a snapshot name: 1 to 63 bytes of `[A-Za-z0-9._:@+-]`, not starting with
/// `-` or `.`, so that names are safe in paths, shells and device names.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("a name is 1 to {MAX_NAME_LEN} bytes"));
    }
    if name.starts_with('-') || name.starts_with('.') {
        return Err("a name may not start with '-' or '.'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:@+-".contains(*c)))
    {
        return Err(format!(
            "a name may hold letters, digits and . _ : @ + - only, not {c:?}"
        ));
    }
    Ok(())
}

/// Kinds of background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The pass after deleting a version.
    Delete,
    /// A pass that lets thin ghosts be reshaped.
    Cleanup,
    /// A merge of a snapshot into the origin.
    Merge,
}

impl JobKind {
    /// "delete", "cleanup" or "merge", as reports name it.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Delete => "delete",
            JobKind::Cleanup => "cleanup",
            JobKind::Merge => "merge",
        }
    }
}

/// A row of the job table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRec {
    /// What it is.
    pub kind: JobKind,
    /// The deleted or merged label (0 for cleanup).
    pub target: Label,
    /// Logical time the pass began.
    pub start: u64,
    /// Next address to visit.
    pub cursor: u64,
}

impl Codec for JobRec {
    const SIZE: usize = JOB_REC_SIZE;
    fn encode(&self, out: &mut [u8]) {
        le::put_u32(
            out,
            0,
            match self.kind {
                JobKind::Delete => JOB_DELETE,
                JobKind::Cleanup => JOB_CLEANUP,
                JobKind::Merge => JOB_MERGE,
            },
        );
        le::put_u32(out, 4, self.target.0);
        le::put_u64(out, 8, self.start);
        le::put_u64(out, 16, self.cursor);
    }
    fn decode(b: &[u8]) -> Result<Self, Reason> {
        let kind = match le::get_u32(b, 0) {
            JOB_DELETE => JobKind::Delete,
            JOB_CLEANUP => JobKind::Cleanup,
            JOB_MERGE => JobKind::Merge,
            _ => return Err(Reason::BadField),
        };
        Ok(JobRec {
            kind,
            target: Label(le::get_u32(b, 4)),
            start: le::get_u64(b, 8),
            cursor: le::get_u64(b, 16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("daily-2026-11-23T10:00").is_ok());
        for bad in ["", "a/b", "x\n", "-rf", "..", &"x".repeat(64), "a b", "ü"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn guid_hex_is_32_lowercase_digits_in_byte_order() {
        let mut g = [0u8; 16];
        g[0] = 0x0f;
        g[1] = 0xa0;
        g[15] = 0xff;
        assert_eq!(guid_hex(&g), "0fa000000000000000000000000000ff");
        assert_eq!(guid_hex(&[0xab; 16]), "ab".repeat(16));
    }

    #[test]
    fn snap_rec_roundtrip() {
        let r = SnapRec {
            label: Label(9),
            hold: true,
            created: 1_700_000_000,
            parent: Some(SnapId(3)),
            name: "hourly.7".into(),
            guid: [5; 16],
            size: 1 << 30,
            origin: 3,
            group: 12,
        };
        assert_eq!(SnapRec::from_raw(&r.to_raw()).unwrap(), r);
        // golden: origin and group after the version 3 record
        assert_eq!(r.to_raw().0[SNAP_REC_SIZE_V3..], [3, 0, 0, 0, 12, 0, 0, 0]);
        let mut zero_size = r.to_raw();
        zero_size.0[SNAP_SIZE_OFFSET..SNAP_SIZE_OFFSET + 8].fill(0);
        assert!(SnapRec::from_raw(&zero_size).is_err());
    }

    #[test]
    fn a_version2_record_upgrades_with_the_guid_and_size_given() {
        let r = SnapRec {
            label: Label(4),
            hold: false,
            created: 7,
            parent: None,
            name: "old".into(),
            guid: [1; 16],
            size: 4096,
            origin: 0,
            group: 0,
        };
        let mut v2 = [0u8; SNAP_REC_SIZE_V2];
        v2.copy_from_slice(&r.to_raw().0[..SNAP_REC_SIZE_V2]);
        let up = SnapRecRawV2(v2).upgrade([9; 16], 8192).unwrap();
        assert_eq!((up.name.as_str(), up.guid, up.size), ("old", [9; 16], 8192));
        assert_eq!(default_guid(&[0xab; 16], SnapId(2))[12..], [2, 0, 0, 0]);
    }

    #[test]
    fn a_version3_record_upgrades_to_origin_0_and_no_group() {
        let r = SnapRec {
            label: Label(4),
            hold: true,
            created: 7,
            parent: Some(SnapId(2)),
            name: "v3".into(),
            guid: [1; 16],
            size: 4096,
            origin: 0,
            group: 0,
        };
        let mut v3 = [0u8; SNAP_REC_SIZE_V3];
        v3.copy_from_slice(&r.to_raw().0[..SNAP_REC_SIZE_V3]);
        assert_eq!(SnapRecRawV3(v3).upgrade().unwrap(), r);
    }

    #[test]
    fn origin_rec_roundtrip_and_refusals() {
        let o = OriginRec {
            root: Label(17),
            removing: false,
            size: 1 << 40,
            quota: 1000,
            created: 1_800_000_000,
            name: "db-wal".into(),
            path: "/dev/disk/by-id/nvme-SAMSUNG_123-part2".into(),
        };
        assert_eq!(OriginRec::from_raw(&o.to_raw()).unwrap(), o);
        assert_eq!(o.to_raw().0.len(), ORIGIN_REC_SIZE);
        let mut bad_flags = o.to_raw();
        bad_flags.0[4] = 2;
        assert!(OriginRec::from_raw(&bad_flags).is_err());
        let mut zero_size = o.to_raw();
        zero_size.0[8..16].fill(0);
        assert!(OriginRec::from_raw(&zero_size).is_err());
        let mut junk_after_path = o.to_raw();
        junk_after_path.0[ORIGIN_REC_SIZE - 1] = 1;
        assert!(OriginRec::from_raw(&junk_after_path).is_err());
        let mut at = o.clone();
        at.name = "a@b".into();
        assert!(OriginRec::from_raw(&at.to_raw()).is_err());
        assert!(validate_origin_name("vm1-disk0").is_ok());
        assert!(validate_origin_name("x@y").is_err());
    }
}
