//! `NBD_CMD_BLOCK_STATUS` from the store's map
//! ([`SharedStore::map`](exception_store::SharedStore::map)): one run list, then one
//! descriptor list per selected context, so that every context reports the same
//! extent boundaries.
//!
//! Runs of the map that agree in the values of every *selected* context are merged
//! (a client that asked for `base:allocation` alone gets one extent for a whole
//! range of data, whoever owns it); the runs cover the request exactly (the map is computed over
//! the request's range only, from the element index, never from data). With
//! `NBD_CMD_FLAG_REQ_ONE` only the first run is sent. At most [`MAX_EXTENTS`]
//! descriptors go in one reply; the client asks again for the rest.
use super::{consts::*, meta::Context};
use exception_store::map::{MapExtent, Owner};

/// Most descriptors in one reply chunk.
pub const MAX_EXTENTS: usize = 64 * 1024;

/// One run, with every context's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Bytes.
    pub len: u32,
    /// Reads zeros because of a hole or discard.
    pub hole: bool,
    /// `qemu:allocation-depth`.
    pub depth: u32,
    /// `ublk-snap:owner`.
    pub owner: u32,
}

impl Run {
    /// The run's value in context `c`.
    pub fn value(&self, c: Context) -> u32 {
        match c {
            Context::Allocation if self.hole => STATE_HOLE | STATE_ZERO,
            Context::Allocation => 0,
            Context::Depth => self.depth,
            Context::Owner => self.owner,
        }
    }
}

/// The runs of `map` (which covers a request of at most `u32::MAX` bytes), merged
/// where `contexts` see no difference, at most one with `req_one`, at most
/// [`MAX_EXTENTS`].
pub fn runs(map: &[MapExtent], contexts: &[Context], req_one: bool) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let limit = if req_one { 1 } else { MAX_EXTENTS };
    for m in map {
        let hole = matches!(m.owner, Owner::Hole { .. });
        let owner = m.owner.label().0;
        // a map over a request never has a run longer than the request
        let len = u32::try_from(m.len).unwrap_or(u32::MAX);
        let run = Run {
            len,
            hole,
            depth: m.depth,
            owner,
        };
        if let Some(p) = out.last_mut() {
            if contexts.iter().all(|c| p.value(*c) == run.value(*c)) {
                p.len = p.len.saturating_add(len);
                continue;
            }
        }
        if out.len() == limit {
            break;
        }
        out.push(run);
    }
    out
}

/// Append the runs of `map` (the next window of a request) to `out`, merged with
/// its last run where `contexts` see no difference (the windows' seams vanish).
pub fn extend_runs(out: &mut Vec<Run>, map: &[MapExtent], contexts: &[Context]) {
    for r in runs(map, contexts, false) {
        if let Some(p) = out.last_mut() {
            if contexts.iter().all(|c| p.value(*c) == r.value(*c)) {
                p.len = p.len.saturating_add(r.len);
                continue;
            }
        }
        out.push(r);
    }
}

/// The descriptors of `runs` in context `c`.
pub fn descriptors(runs: &[Run], c: Context) -> Vec<(u32, u32)> {
    runs.iter().map(|r| (r.len, r.value(c))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::ids::{ChunkNr, Label};

    fn ext(offset: u64, len: u64, owner: Owner, depth: u32) -> MapExtent {
        MapExtent {
            offset,
            len,
            owner,
            depth,
        }
    }

    #[test]
    fn merges_equal_runs_and_keeps_boundaries_common() {
        let map = [
            ext(
                0,
                4096,
                Owner::Chunk {
                    label: Label(2),
                    chunk: ChunkNr(10),
                },
                1,
            ),
            ext(
                4096,
                4096,
                Owner::Chunk {
                    label: Label(2),
                    chunk: ChunkNr(50),
                },
                1,
            ),
            ext(8192, 4096, Owner::Hole { label: Label(2) }, 1),
            ext(12288, 8192, Owner::Origin, 3),
        ];
        let r = runs(&map, &crate::nbd::meta::ALL, false);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].len, 8192);
        assert_eq!(
            descriptors(&r, Context::Allocation),
            vec![(8192, 0), (4096, STATE_HOLE | STATE_ZERO), (8192, 0)]
        );
        assert_eq!(
            descriptors(&r, Context::Depth),
            vec![(8192, 1), (4096, 1), (8192, 3)]
        );
        assert_eq!(
            descriptors(&r, Context::Owner),
            vec![(8192, 2), (4096, 2), (8192, 0)]
        );
        assert_eq!(runs(&map, &crate::nbd::meta::ALL, true).len(), 1);
        // base:allocation alone: data, hole, data
        let a = runs(&map, &[Context::Allocation], false);
        assert_eq!(
            descriptors(&a, Context::Allocation),
            vec![(8192, 0), (4096, STATE_HOLE | STATE_ZERO), (8192, 0)]
        );
        let d = runs(&map, &[Context::Depth], false);
        assert_eq!(descriptors(&d, Context::Depth), vec![(12288, 1), (8192, 3)]);
    }
}
