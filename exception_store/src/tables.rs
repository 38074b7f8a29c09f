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
}

/// The guid a store gives its own snapshot `id`: the first 12 bytes of the store's
/// uuid, then the id (little-endian), so unique across stores and never reused.
pub fn default_guid(store_uuid: &[u8; 16], id: SnapId) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[..12].copy_from_slice(&store_uuid[..12]);
    le::put_u32(&mut g, 12, id.0);
    g
}

/// A guid as 32 lowercase hex digits (how reports and streams print it).
pub fn guid_hex(g: &[u8; 16]) -> String {
    g.iter().map(|b| format!("{b:02x}")).collect()
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
    /// The record as format version 3 holds it, with `guid` and `size` supplied.
    pub fn upgrade(&self, guid: [u8; 16], size: u64) -> Result<SnapRec, Reason> {
        let mut b = [0u8; SNAP_REC_SIZE];
        b[..SNAP_REC_SIZE_V2].copy_from_slice(&self.0);
        b[SNAP_GUID_OFFSET..SNAP_GUID_OFFSET + 16].copy_from_slice(&guid);
        le::put_u64(&mut b, SNAP_SIZE_OFFSET, size);
        SnapRec::from_raw(&SnapRecRaw(b))
    }
}

/// Fixed-size encoding of a [`SnapRec`] (the name inline, up to 63 bytes; format
/// version 3).
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
        })
    }
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
    fn snap_rec_roundtrip() {
        let r = SnapRec {
            label: Label(9),
            hold: true,
            created: 1_700_000_000,
            parent: Some(SnapId(3)),
            name: "hourly.7".into(),
            guid: [5; 16],
            size: 1 << 30,
        };
        assert_eq!(SnapRec::from_raw(&r.to_raw()).unwrap(), r);
        let mut zero_size = r.to_raw();
        zero_size.0[SNAP_SIZE_OFFSET..].fill(0);
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
        };
        let mut v2 = [0u8; SNAP_REC_SIZE_V2];
        v2.copy_from_slice(&r.to_raw().0[..SNAP_REC_SIZE_V2]);
        let up = SnapRecRawV2(v2).upgrade([9; 16], 8192).unwrap();
        assert_eq!((up.name.as_str(), up.guid, up.size), ("old", [9; 16], 8192));
        assert_eq!(default_guid(&[0xab; 16], SnapId(2))[12..], [2, 0, 0, 0]);
    }
}
