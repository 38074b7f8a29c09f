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
}

/// Fixed-size encoding of a [`SnapRec`] (the name inline, up to 63 bytes).
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
        if validate_name(name).is_err() || b[21 + n..].iter().any(|&x| x != 0) {
            return Err(Reason::BadField);
        }
        let p = le::get_u32(b, 16);
        Ok(SnapRec {
            label: Label(le::get_u32(b, 0)),
            hold: flags & SNAP_HOLD != 0,
            created: le::get_u64(b, 8),
            parent: (p != PARENT_ORIGIN).then_some(SnapId(p)),
            name: name.to_owned(),
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
        };
        assert_eq!(SnapRec::from_raw(&r.to_raw()).unwrap(), r);
    }
}
