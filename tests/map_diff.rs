//! `Store::map` and `Store::diff` against a reference model, driven by random
//! operation sequences (writes, write-zeroes, discards, snapshots of the origin and of
//! snapshots, deletes, merges, background steps, reopens).
//!
//! The model keeps every device's contents and its *lineage*: the device it was taken
//! of, when, and a log of the chunks written to it. At checkpoints, for every pair of
//! live devices `(a, b)`:
//! - `diff(a, b)` lists every chunk where the two read differently (listed ⊇
//!   differing), and only chunks written, in either lineage, since the point where the
//!   two lineages part (listed ⊆ written since the common ancestor);
//! - the map of every device, read back piece by piece from the raw origin and store
//!   devices (never through `Store::read`), equals its contents, and its depths name
//!   a layer.
mod common;

use blockdev::BlockDevice;
use common::*;
use exception_store::{map::Owner, Dev, Store};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
enum Op {
    Write {
        dev: usize,
        chunk: u64,
        n: u64,
        seed: u64,
    },
    Zero {
        dev: usize,
        chunk: u64,
        n: u64,
    },
    Discard {
        dev: usize,
        chunk: u64,
        n: u64,
    },
    SnapOrigin,
    SnapOf {
        dev: usize,
    },
    Delete {
        dev: usize,
    },
    Merge {
        dev: usize,
    },
    Bg,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (any::<usize>(), 0u64..9, 1u64..4, any::<u64>())
            .prop_map(|(dev, chunk, n, seed)| Op::Write { dev, chunk, n, seed }),
        1 => (any::<usize>(), 0u64..9, 1u64..3).prop_map(|(dev, chunk, n)| Op::Zero { dev, chunk, n }),
        1 => (any::<usize>(), 0u64..9, 1u64..3).prop_map(|(dev, chunk, n)| Op::Discard { dev, chunk, n }),
        3 => Just(Op::SnapOrigin),
        2 => any::<usize>().prop_map(|dev| Op::SnapOf { dev }),
        2 => any::<usize>().prop_map(|dev| Op::Delete { dev }),
        1 => any::<usize>().prop_map(|dev| Op::Merge { dev }),
        2 => Just(Op::Bg),
        1 => Just(Op::Reopen),
    ]
}

/// One device's lineage: taken of `parent` at a time, and what was written to it when.
#[derive(Debug, Clone, Default)]
struct Lineage {
    parent: Option<(Dev, u64)>,
    log: Vec<(u64, BTreeSet<u64>)>,
}

struct Run {
    h: Harness,
    s: Store,
    m: Model,
    lineage: BTreeMap<Dev, Lineage>,
    now: u64,
    cs: u64,
    size: u64,
}

impl Run {
    fn new(cs: u64, size: u64) -> Run {
        let (h, s) = Harness::new(size, 16 << 20, cs as u32, &[3, 1, 4, 1, 5, 9, 2, 6]);
        let mut origin = vec![0u8; size as usize];
        h.origin.read_at(&mut origin, 0).unwrap();
        let mut lineage = BTreeMap::new();
        lineage.insert(Dev::Origin(0), Lineage::default());
        Run {
            h,
            s,
            m: Model::new(origin),
            lineage,
            now: 0,
            cs,
            size,
        }
    }

    fn devs(&self) -> Vec<Dev> {
        self.m.devs.keys().copied().collect()
    }

    fn snaps(&self) -> Vec<Dev> {
        self.devs()
            .into_iter()
            .filter(|d| *d != Dev::Origin(0))
            .collect()
    }

    /// Byte range of `n` chunks from `chunk`, cut at the device end (None: past it).
    fn range(&self, chunk: u64, n: u64) -> Option<(u64, u64)> {
        let off = chunk * self.cs;
        (off < self.size).then(|| (off, (n * self.cs).min(self.size - off)))
    }

    fn log(&mut self, d: Dev, chunks: impl IntoIterator<Item = u64>) {
        let set: BTreeSet<u64> = chunks.into_iter().collect();
        let now = self.now;
        self.lineage.get_mut(&d).unwrap().log.push((now, set));
    }

    fn apply(&mut self, op: &Op) {
        self.now += 1;
        let cs = self.cs;
        match *op {
            Op::Write {
                dev,
                chunk,
                n,
                seed,
            } => {
                let d = self.devs()[dev % self.m.devs.len()];
                if let Some((off, len)) = self.range(chunk, n) {
                    let data = pattern(seed, len as usize);
                    self.s.write(d, off, &data).unwrap();
                    self.m.write(d, off, &data);
                    self.log(d, off / cs..(off + len).div_ceil(cs));
                }
            }
            Op::Zero { dev, chunk, n } => {
                let d = self.devs()[dev % self.m.devs.len()];
                if let Some((off, len)) = self.range(chunk, n) {
                    self.s.write_zeroes(d, off, len).unwrap();
                    self.m.zero(d, off, len);
                    self.log(d, off / cs..(off + len).div_ceil(cs));
                }
            }
            Op::Discard { dev, chunk, n } => {
                let snaps = self.snaps();
                if snaps.is_empty() {
                    return;
                }
                let d = snaps[dev % snaps.len()];
                if let Some((off, len)) = self.range(chunk, n) {
                    self.s.discard(d, off, len).unwrap();
                    self.m.discard_snapshot(d, off, len, cs);
                    self.log(d, off / cs..(off + len).div_ceil(cs));
                }
            }
            Op::SnapOrigin | Op::SnapOf { .. } => {
                let parent = match *op {
                    Op::SnapOf { dev } => {
                        let snaps = self.snaps();
                        if snaps.is_empty() {
                            return;
                        }
                        snaps[dev % snaps.len()]
                    }
                    _ => Dev::Origin(0),
                };
                let pid = match parent {
                    Dev::Snap(id) => Some(id),
                    Dev::Origin(_) => None,
                };
                let id = self
                    .s
                    .create_snapshot(&format!("s{}", self.now), pid, self.now)
                    .unwrap();
                let content = self.m.devs[&parent].clone();
                self.m.devs.insert(Dev::Snap(id), content);
                self.lineage.insert(
                    Dev::Snap(id),
                    Lineage {
                        parent: Some((parent, self.now)),
                        log: Vec::new(),
                    },
                );
            }
            Op::Delete { dev } => {
                let snaps = self.snaps();
                if let Some(&d @ Dev::Snap(id)) = snaps.get(dev % snaps.len().max(1)) {
                    self.s.delete_snapshot(id).unwrap();
                    self.m.devs.remove(&d);
                }
            }
            Op::Merge { dev } => {
                let snaps = self.snaps();
                if let Some(&d @ Dev::Snap(id)) = snaps.get(dev % snaps.len().max(1)) {
                    match self.s.merge_snapshot(id) {
                        Ok(_) => {
                            let c = self.m.devs.remove(&d).unwrap();
                            self.m.devs.insert(Dev::Origin(0), c);
                            // the origin's contents jump: every chunk counts as written
                            let all = 0..self.size.div_ceil(cs);
                            self.log(Dev::Origin(0), all);
                        }
                        Err(exception_store::Error::Busy(_)) => {}
                        Err(e) => panic!("merge: {e}"),
                    }
                }
            }
            Op::Bg => {
                self.s.background_step(3).unwrap();
            }
            Op::Reopen => {
                self.s.flush().unwrap();
                self.s = self.h.reopen();
            }
        }
    }

    /// `d`'s lineage as segments (device, from, to) from the root down.
    fn chain(&self, d: Dev) -> Vec<(Dev, u64, u64)> {
        match self.lineage[&d].parent {
            None => vec![(d, 0, u64::MAX)],
            Some((p, at)) => {
                let mut c = self.chain(p);
                if let Some(last) = c.last_mut() {
                    last.2 = at;
                }
                c.push((d, at, u64::MAX));
                c
            }
        }
    }

    fn written(&self, seg: (Dev, u64, u64), out: &mut BTreeSet<u64>) {
        for (t, set) in &self.lineage[&seg.0].log {
            if *t > seg.1 && *t <= seg.2 {
                out.extend(set);
            }
        }
    }

    /// Chunks written in either lineage since they parted.
    fn written_since_common(&self, a: Dev, b: Dev) -> BTreeSet<u64> {
        let (ca, cb) = (self.chain(a), self.chain(b));
        let mut i = 0;
        while i < ca.len() && i < cb.len() && ca[i] == cb[i] {
            i += 1;
        }
        let mut out = BTreeSet::new();
        let mut rest_a = &ca[i..];
        let mut rest_b = &cb[i..];
        if let (Some(x), Some(y)) = (rest_a.first(), rest_b.first()) {
            if x.0 == y.0 {
                // the same device, left at different times: its writes in between
                let (lo, hi) = (x.2.min(y.2), x.2.max(y.2));
                self.written((x.0, lo, hi), &mut out);
                rest_a = &rest_a[1..];
                rest_b = &rest_b[1..];
            }
        }
        for seg in rest_a.iter().chain(rest_b) {
            self.written(*seg, &mut out);
        }
        out
    }

    fn chunks_of(&self, runs: &[(u64, u64)]) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for &(off, len) in runs {
            assert!(len > 0 && off + len <= self.size, "run {off}+{len}");
            out.extend(off / self.cs..(off + len).div_ceil(self.cs));
        }
        out
    }

    fn check(&mut self, ctx: &str) {
        let devs = self.devs();
        for &a in &devs {
            for &b in &devs {
                let runs = self.s.diff(a, b, 0, self.size).unwrap();
                for w in runs.windows(2) {
                    assert!(w[0].0 + w[0].1 < w[1].0, "{ctx}: runs touch: {runs:?}");
                }
                let listed = self.chunks_of(&runs);
                let (ma, mb) = (&self.m.devs[&a], &self.m.devs[&b]);
                for c in 0..self.size.div_ceil(self.cs) {
                    let r = (c * self.cs) as usize..(((c + 1) * self.cs).min(self.size)) as usize;
                    assert!(
                        ma[r.clone()] == mb[r] || listed.contains(&c),
                        "{ctx}: diff({a:?}, {b:?}) misses chunk {c}: {runs:?}"
                    );
                }
                let written = self.written_since_common(a, b);
                assert!(
                    listed.is_subset(&written),
                    "{ctx}: diff({a:?}, {b:?}) lists {listed:?}, written since parting {written:?}"
                );
            }
            self.check_map(a, 0, self.size, ctx);
            let off = (self.now * 977) % self.size;
            let len = ((self.now * 1931) % (self.size - off)).max(1);
            self.check_map(a, off, len, ctx);
        }
    }

    fn check_map(&mut self, d: Dev, off: u64, len: u64, ctx: &str) {
        let map = self.s.map(d, off, len).unwrap();
        let layers = self.s.layers(d).unwrap();
        let mut pos = off;
        let mut got = Vec::new();
        for e in &map {
            assert_eq!(e.offset, pos, "{ctx}: map of {d:?} has a gap: {map:?}");
            assert!(e.len > 0);
            assert!(
                e.depth >= 1 && e.depth as usize <= layers.len(),
                "{ctx}: {e:?}"
            );
            let mut buf = vec![0u8; e.len as usize];
            match e.owner {
                Owner::Origin => {
                    assert!(d == Dev::Origin(0) || e.depth as usize == layers.len());
                    self.h.origin.read_at(&mut buf, e.offset).unwrap();
                }
                Owner::Chunk { chunk, .. } => {
                    // (the origin reads store chunks only during a merge)
                    assert!(
                        d == Dev::Origin(0) || (e.depth as usize) < layers.len(),
                        "{ctx}: {e:?}"
                    );
                    let at = chunk.0 * self.cs + e.offset % self.cs;
                    self.h.dev.read_at(&mut buf, at).unwrap();
                }
                Owner::Hole { .. } => {}
            }
            got.extend_from_slice(&buf);
            pos += e.len;
        }
        assert_eq!(pos, off + len, "{ctx}: map of {d:?} ends early");
        let want = &self.m.devs[&d][off as usize..(off + len) as usize];
        if got != want {
            let i = got.iter().zip(want).position(|(x, y)| x != y).unwrap_or(0);
            panic!(
                "{ctx}: map of {d:?} reads back wrong at byte {}: {map:?}",
                off + i as u64
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 300, ..ProptestConfig::default() })]

    #[test]
    fn map_and_diff_match_the_model(
        big_chunks in any::<bool>(),
        ops in prop::collection::vec(op(), 150..400),
    ) {
        let cs = if big_chunks { 8192 } else { 4096 };
        let mut r = Run::new(cs, 8 * cs + 1536);
        for (i, op) in ops.iter().enumerate() {
            r.apply(op);
            if i % 7 == 0 {
                r.check(&format!("step {i} ({op:?})"));
            }
        }
        r.check("end");
        r.s.run_background(64).unwrap();
        r.check("after the background work");
    }
}
