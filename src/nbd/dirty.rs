//! Dirty bitmaps: the metadata contexts `qemu:dirty-bitmap:A`, one for each
//! snapshot A older than the exported device B (every snapshot, for the origin),
//! as QEMU's incremental-backup tools read them: `NBD_STATE_DIRTY` (1) where B may
//! read differently from A, 0 where it reads the same.
//!
//! The answer is the store's diff ([`SharedStore::diff`], the same as `snapctl
//! diff A B`), computed from the element index over the request's range only: its
//! cost is in proportion to the elements in that range, never the device's size.
//! Unlike QEMU's bitmaps it is exact (whole chunks), persistent, and never reset.
//!
//! # Invariants
//! - A bitmap's descriptors cover the range they describe exactly, from the
//!   request's offset (clean gaps between dirty runs included), at most one with
//!   `NBD_CMD_FLAG_REQ_ONE`, at most [`MAX_EXTENTS`]; their boundaries are the
//!   diff's (chunk boundaries), not necessarily those of the other contexts. The
//!   transmission phase walks long requests in windows and may describe less
//!   than was asked.
//! - Context ids of bitmaps are [`FIRST_ID`] and up, in selection order; they never
//!   collide with the fixed contexts' ids (1 to 3).
use super::block_status::MAX_EXTENTS;
use blockdev::ids::SnapId;
use exception_store::{Dev, SharedStore};

/// The prefix of every dirty-bitmap context's name.
pub const PREFIX: &str = "qemu:dirty-bitmap:";
/// The namespace the prefix belongs to.
const NAMESPACE: &str = "qemu:";
/// The id of the first bitmap selected on a connection.
pub const FIRST_ID: u32 = 16;
/// `NBD_STATE_DIRTY`.
pub const STATE_DIRTY: u32 = 1;

/// A snapshot an export can be compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The snapshot's name (the context is `qemu:dirty-bitmap:NAME`).
    pub name: String,
    /// Its id in the store.
    pub snap: u32,
}

/// A bitmap selected by `NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// The context id sent to the client.
    pub id: u32,
    /// The snapshot compared with.
    pub snap: u32,
    /// The context's name.
    pub name: String,
}

/// The context name of candidate `c`.
pub fn context_name(c: &Candidate) -> String {
    format!("{PREFIX}{}", c.name)
}

/// What `NBD_OPT_LIST_META_CONTEXT` lists among `candidates` for `queries`: all of
/// them for no query, the `qemu:` namespace or the `qemu:dirty-bitmap:` prefix;
/// else the exact names asked for.
pub fn list<'a>(queries: &[String], candidates: &'a [Candidate]) -> Vec<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| {
            queries.is_empty()
                || queries
                    .iter()
                    .any(|q| q == NAMESPACE || q == PREFIX || *q == context_name(c))
        })
        .collect()
}

/// What `NBD_OPT_SET_META_CONTEXT` selects among `candidates`: exact names only,
/// once each, in the candidates' order, with ids from [`FIRST_ID`].
pub fn select(queries: &[String], candidates: &[Candidate]) -> Vec<Bitmap> {
    candidates
        .iter()
        .filter(|c| queries.iter().any(|q| *q == context_name(c)))
        .zip(FIRST_ID..)
        .map(|(c, id)| Bitmap {
            id,
            snap: c.snap,
            name: context_name(c),
        })
        .collect()
}

/// The candidates for an export of `dev`: every snapshot for the origin, every
/// snapshot created before it for a snapshot (ids are in creation order); never a
/// receive's internal snapshots (`replicate::is_receive_name`).
pub fn candidates(store: &SharedStore, dev: Dev) -> Vec<Candidate> {
    let snaps = store.lock().snapshots();
    snaps
        .into_iter()
        .filter(|s| !exception_store::replicate::is_receive_name(&s.name))
        .filter(|s| match dev {
            Dev::Origin(_) => true,
            Dev::Snap(b) => s.id.0 < b.0,
        })
        .map(|s| Candidate {
            name: s.name,
            snap: s.id.0,
        })
        .collect()
}

/// The dirty runs of bitmap `b` in `len` bytes of `dev` at `offset` (sorted).
pub fn dirty_runs(
    store: &SharedStore,
    dev: Dev,
    b: &Bitmap,
    offset: u64,
    len: u64,
) -> exception_store::Result<Vec<(u64, u64)>> {
    store.diff(Dev::Snap(SnapId(b.snap)), dev, offset, len)
}

/// Descriptors covering `[offset, offset + len)`: the `dirty` runs (sorted, inside
/// the range) dirty, the gaps clean; neighbours of the same state merged.
pub fn cover(dirty: &[(u64, u64)], offset: u64, len: u64, req_one: bool) -> Vec<(u32, u32)> {
    let limit = if req_one { 1 } else { MAX_EXTENTS };
    let mut out: Vec<(u64, u32)> = Vec::new();
    let mut push = |l: u64, state: u32| match out.last_mut() {
        Some(p) if p.1 == state => p.0 += l,
        _ => out.push((l, state)),
    };
    let end = offset + len;
    let mut at = offset;
    for &(o, l) in dirty {
        let (o, e) = (o.max(at), (o + l).min(end));
        if e <= o {
            continue;
        }
        if o > at {
            push(o - at, 0);
        }
        push(e - o, STATE_DIRTY);
        at = e;
    }
    if at < end {
        push(end - at, 0);
    }
    out.truncate(limit);
    // a request is at most u32::MAX bytes, so each run fits
    out.into_iter()
        .map(|(l, s)| (u32::try_from(l).unwrap_or(u32::MAX), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands() -> Vec<Candidate> {
        ["a", "b"]
            .iter()
            .zip(1..)
            .map(|(n, i)| Candidate {
                name: (*n).into(),
                snap: i,
            })
            .collect()
    }

    fn q(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn list_and_select() {
        let c = cands();
        assert_eq!(list(&[], &c).len(), 2);
        assert_eq!(list(&q(&["qemu:"]), &c).len(), 2);
        assert_eq!(list(&q(&["qemu:dirty-bitmap:"]), &c).len(), 2);
        assert_eq!(list(&q(&["qemu:dirty-bitmap:b"]), &c), vec![&c[1]]);
        assert!(list(&q(&["base:"]), &c).is_empty());
        assert!(select(&q(&["qemu:dirty-bitmap:"]), &c).is_empty());
        let s = select(&q(&["qemu:dirty-bitmap:b", "qemu:dirty-bitmap:b"]), &c);
        assert_eq!(
            s,
            vec![Bitmap {
                id: FIRST_ID,
                snap: 2,
                name: "qemu:dirty-bitmap:b".into()
            }]
        );
    }

    #[test]
    fn cover_fills_gaps_and_merges() {
        assert_eq!(cover(&[], 100, 50, false), vec![(50, 0)]);
        assert_eq!(
            cover(&[(0, 120), (120, 10), (140, 100)], 100, 50, false),
            vec![(30, 1), (10, 0), (10, 1)]
        );
        assert_eq!(
            cover(&[(110, 10)], 100, 50, false),
            vec![(10, 0), (10, 1), (30, 0)]
        );
        assert_eq!(cover(&[(110, 10)], 100, 50, true), vec![(10, 0)]);
    }
}
