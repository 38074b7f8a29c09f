//! The store against the reference model of the design note (§1): random sequences of
//! writes (any offset and length), write-zeroes, discards, snapshots of the origin and
//! of snapshots, deletes with the background pass left half done, merges into the
//! origin interleaved with all of these, flushes and reopens.
//! After every step every live device must read exactly what the model says, and at
//! the end (and at every reopen) `check` must find nothing.
mod common;

use common::*;
use exception_store::{Dev, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write {
        dev: usize,
        off: u64,
        len: u64,
        seed: u64,
    },
    Zero {
        dev: usize,
        off: u64,
        len: u64,
    },
    Discard {
        dev: usize,
        off: u64,
        len: u64,
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
    Bg {
        n: usize,
    },
    Flush,
    Reopen,
}

fn op(size: u64, cs: u64, snap_weight: u32) -> impl Strategy<Value = Op> {
    let range = (0..size, 1..cs * 3, any::<bool>()).prop_map(move |(off, len, align)| {
        let off = if align { off / cs * cs } else { off };
        let len = if align { len.div_ceil(cs) * cs } else { len };
        (off, len.min(size - off).max(1))
    });
    prop_oneof![
        8 => (any::<usize>(), range.clone(), any::<u64>())
            .prop_map(|(dev, (off, len), seed)| Op::Write { dev, off, len, seed }),
        1 => (any::<usize>(), range.clone()).prop_map(|(dev, (off, len))| Op::Zero { dev, off, len }),
        1 => (any::<usize>(), range).prop_map(|(dev, (off, len))| Op::Discard { dev, off, len }),
        snap_weight => Just(Op::SnapOrigin),
        snap_weight => any::<usize>().prop_map(|dev| Op::SnapOf { dev }),
        2 => any::<usize>().prop_map(|dev| Op::Delete { dev }),
        1 => any::<usize>().prop_map(|dev| Op::Merge { dev }),
        3 => (1usize..4).prop_map(|n| Op::Bg { n }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

struct Run {
    h: Harness,
    s: Store,
    m: Model,
    next_name: u64,
}

impl Run {
    fn new(cs: u32, size: u64) -> Run {
        let (h, s) = Harness::new(size, 64 << 20, cs, &[1, 2, 3, 5, 8, 13, 21]);
        let m = Model::new(read_all_fresh(&h));
        Run {
            h,
            s,
            m,
            next_name: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        let cs = self.s.chunk_size();
        match *op {
            Op::Write {
                dev,
                off,
                len,
                seed,
            } => {
                let d = self.m.pick(dev, false).expect("origin");
                let data = pattern(seed, len as usize);
                self.s.write(d, off, &data).unwrap();
                self.m.write(d, off, &data);
            }
            Op::Zero { dev, off, len } => {
                let d = self.m.pick(dev, false).expect("origin");
                self.s.write_zeroes(d, off, len).unwrap();
                self.m.zero(d, off, len);
            }
            Op::Discard { dev, off, len } => {
                // Origin discards make the range unspecified; the model covers snapshots.
                if let Some(d) = self.m.pick(dev, true) {
                    self.s.discard(d, off, len).unwrap();
                    self.m.discard_snapshot(d, off, len, cs);
                }
            }
            Op::SnapOrigin | Op::SnapOf { .. } => {
                let parent = match *op {
                    Op::SnapOf { dev } => self.m.pick(dev, true),
                    _ => None,
                };
                self.next_name += 1;
                let name = format!("s{}", self.next_name);
                let pid = parent.map(|d| match d {
                    Dev::Snap(id) => id,
                    Dev::Origin(_) => unreachable!(),
                });
                let id = self.s.create_snapshot(&name, pid, self.next_name).unwrap();
                let content = self.m.devs[&parent.unwrap_or(Dev::Origin(0))].clone();
                self.m.devs.insert(Dev::Snap(id), content);
            }
            Op::Delete { dev } => {
                if let Some(Dev::Snap(id)) = self.m.pick(dev, true) {
                    self.s.delete_snapshot(id).unwrap();
                    self.m.devs.remove(&Dev::Snap(id));
                }
            }
            Op::Merge { dev } => {
                if let Some(Dev::Snap(id)) = self.m.pick(dev, true) {
                    match self.s.merge_snapshot(id) {
                        Ok(_) => {
                            let c = self.m.devs.remove(&Dev::Snap(id)).unwrap();
                            self.m.devs.insert(Dev::Origin(0), c);
                        }
                        Err(exception_store::Error::Busy(_)) => {}
                        Err(e) => panic!("merge: {e}"),
                    }
                }
            }
            Op::Bg { n } => {
                self.s.background_step(n).unwrap();
            }
            Op::Flush => {
                self.s.flush().unwrap();
            }
            Op::Reopen => flush_reopen_check(&self.h, &mut self.s),
        }
    }

    fn finish(&mut self) {
        drain_and_check(&self.h, &mut self.s, &self.m);
    }
}

fn read_all_fresh(h: &Harness) -> Vec<u8> {
    let mut v = vec![0u8; blockdev::BlockDevice::len(&*h.origin) as usize];
    blockdev::BlockDevice::read_at(&*h.origin, &mut v, 0).unwrap();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, max_shrink_iters: 200, ..ProptestConfig::default() })]

    /// Thousands of mixed operations; every device checked after every step.
    #[test]
    fn store_matches_model(
        cs_shift in 12u32..14,
        ops in prop::collection::vec(op(8 * 8192 + 1536, 8192, 2), 3000..3500),
    ) {
        let cs = 1u32 << cs_shift;
        let size = 8 * cs as u64 + 1536;
        let mut r = Run::new(cs, size);
        for (i, op) in ops.iter().enumerate() {
            // offsets were generated for the larger chunk size; fold them into range
            let op = fold(op, size);
            r.apply(&op);
            assert_matches(&mut r.s, &r.m, &format!("step {i} ({op:?})"));
        }
        r.finish();
    }

    /// Snapshot-heavy: a few hundred live snapshots, snapshots of snapshots.
    #[test]
    fn many_snapshots_match_model(
        ops in prop::collection::vec(op(4 * 4096, 4096, 12), 3000..3500),
    ) {
        let mut r = Run::new(4096, 4 * 4096);
        for (i, op) in ops.iter().enumerate() {
            r.apply(op);
            assert_matches(&mut r.s, &r.m, &format!("step {i} ({op:?})"));
        }
        assert!(r.m.devs.len() > 100, "only {} live devices", r.m.devs.len());
        r.finish();
    }
}

fn fold(op: &Op, size: u64) -> Op {
    let f = |off: u64, len: u64| {
        let off = off % size;
        (off, len.min(size - off).max(1))
    };
    match op.clone() {
        Op::Write {
            dev,
            off,
            len,
            seed,
        } => {
            let (off, len) = f(off, len);
            Op::Write {
                dev,
                off,
                len,
                seed,
            }
        }
        Op::Zero { dev, off, len } => {
            let (off, len) = f(off, len);
            Op::Zero { dev, off, len }
        }
        Op::Discard { dev, off, len } => {
            let (off, len) = f(off, len);
            Op::Discard { dev, off, len }
        }
        other => other,
    }
}
