//! The reference model with origin growth: random operations (writes, write-zeroes
//! and discards at any offset inside each device's own size, snapshots of the origin
//! and of snapshots, deletes, merges, background steps, reopens) mixed with
//! `grow_origin` by any number of sectors, so that snapshots of many sizes, most of
//! them not whole chunks, share the store. Every device must read what the model
//! (one byte vector per device, of that device's size) says after every step; a
//! merge of a snapshot whose size differs from the origin's is refused and changes
//! nothing; `check` is clean at the end and after a reopen.
mod common;

use common::*;
use exception_store::{Dev, Error, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// `at` and `len` are fractions (of 2^16) of the picked device's size.
    Write {
        dev: usize,
        at: u32,
        len: u32,
        seed: u64,
    },
    Zero {
        dev: usize,
        at: u32,
        len: u32,
    },
    Discard {
        dev: usize,
        at: u32,
        len: u32,
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
    /// Grow the origin by this many sectors.
    Grow {
        sectors: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let frac = 0u32..1 << 16;
    prop_oneof![
        8 => (any::<usize>(), frac.clone(), 1u32..1 << 14, any::<u64>())
            .prop_map(|(dev, at, len, seed)| Op::Write { dev, at, len, seed }),
        1 => (any::<usize>(), frac.clone(), 1u32..1 << 14)
            .prop_map(|(dev, at, len)| Op::Zero { dev, at, len }),
        1 => (any::<usize>(), frac, 1u32..1 << 15)
            .prop_map(|(dev, at, len)| Op::Discard { dev, at, len }),
        2 => Just(Op::SnapOrigin),
        1 => any::<usize>().prop_map(|dev| Op::SnapOf { dev }),
        1 => any::<usize>().prop_map(|dev| Op::Delete { dev }),
        1 => any::<usize>().prop_map(|dev| Op::Merge { dev }),
        2 => (1usize..4).prop_map(|n| Op::Bg { n }),
        2 => (1u64..24).prop_map(|sectors| Op::Grow { sectors }),
        1 => Just(Op::Reopen),
    ]
}

struct Run {
    h: Harness,
    s: Store,
    m: Model,
    next: u64,
    max_len: u64,
}

impl Run {
    /// A byte range inside `d` from fractions of its size.
    fn range(&self, d: Dev, at: u32, len: u32) -> (u64, u64) {
        let size = self.m.devs[&d].len() as u64;
        let off = (size * u64::from(at)) >> 16;
        let len = ((size * u64::from(len)) >> 16).clamp(1, size - off);
        (off, len)
    }

    fn apply(&mut self, op: &Op) {
        let cs = self.s.chunk_size();
        match *op {
            Op::Write { dev, at, len, seed } => {
                let d = self.m.pick(dev, false).expect("origin");
                let (off, len) = self.range(d, at, len);
                let data = pattern(seed, len as usize);
                self.s.write(d, off, &data).unwrap();
                self.m.write(d, off, &data);
            }
            Op::Zero { dev, at, len } => {
                let d = self.m.pick(dev, false).expect("origin");
                let (off, len) = self.range(d, at, len);
                self.s.write_zeroes(d, off, len).unwrap();
                self.m.zero(d, off, len);
            }
            Op::Discard { dev, at, len } => {
                if let Some(d) = self.m.pick(dev, true) {
                    let (off, len) = self.range(d, at, len);
                    self.s.discard(d, off, len).unwrap();
                    self.m.discard_snapshot(d, off, len, cs);
                }
            }
            Op::SnapOrigin | Op::SnapOf { .. } => {
                let parent = match *op {
                    Op::SnapOf { dev } => self.m.pick(dev, true),
                    _ => None,
                };
                self.next += 1;
                let pid = parent.map(|d| match d {
                    Dev::Snap(id) => id,
                    Dev::Origin(_) => unreachable!(),
                });
                let id = self
                    .s
                    .create_snapshot(&format!("s{}", self.next), pid, self.next)
                    .unwrap();
                let c = self.m.devs[&parent.unwrap_or(Dev::Origin(0))].clone();
                assert_eq!(self.s.dev_size(Dev::Snap(id)).unwrap(), c.len() as u64);
                self.m.devs.insert(Dev::Snap(id), c);
            }
            Op::Delete { dev } => {
                if let Some(d @ Dev::Snap(id)) = self.m.pick(dev, true) {
                    self.s.delete_snapshot(id).unwrap();
                    self.m.devs.remove(&d);
                }
            }
            Op::Merge { dev } => {
                if let Some(d @ Dev::Snap(id)) = self.m.pick(dev, true) {
                    let same = self.m.devs[&d].len() == self.m.devs[&Dev::Origin(0)].len();
                    match self.s.merge_snapshot(id) {
                        Ok(_) => {
                            assert!(same, "a snapshot of another size merged");
                            let c = self.m.devs.remove(&d).unwrap();
                            self.m.devs.insert(Dev::Origin(0), c);
                        }
                        Err(Error::Busy(_)) => {}
                        Err(Error::Invalid(e)) => assert!(!same, "refused: {e}"),
                        Err(e) => panic!("merge: {e}"),
                    }
                }
            }
            Op::Bg { n } => {
                self.s.background_step(n).unwrap();
            }
            Op::Grow { sectors } => {
                let new_len = self.s.size() + sectors * 512;
                if new_len <= self.max_len {
                    self.h.origin.extend(new_len);
                    match self.s.grow_origin(0, new_len) {
                        Ok(g) => assert_eq!(g.new_len, new_len),
                        Err(Error::Busy(_)) => return, // a merge runs
                        Err(e) => panic!("grow_origin: {e}"),
                    }
                    let o = self.m.devs.get_mut(&Dev::Origin(0)).unwrap();
                    o.resize(new_len as usize, 0);
                }
            }
            Op::Reopen => flush_reopen_check(&self.h, &mut self.s),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn growing_origin_matches_model(
        cs_shift in 12u32..14,
        start_sectors in 8u64..40,
        ops in prop::collection::vec(op(), 400..600),
    ) {
        let cs = 1u32 << cs_shift;
        let size = start_sectors * 512;
        let (h, s) = Harness::new(size, 32 << 20, cs, &[3, 1, 4, 1, 5, 9, 2, 6]);
        let mut o = vec![0u8; size as usize];
        blockdev::BlockDevice::read_at(&*h.origin, &mut o, 0).unwrap();
        let mut r = Run { h, s, m: Model::new(o), next: 0, max_len: 12 * cs as u64 };
        for (i, op) in ops.iter().enumerate() {
            r.apply(op);
            assert_matches(&mut r.s, &r.m, &format!("step {i} ({op:?})"));
        }
        drain_and_check(&r.h, &mut r.s, &r.m);
    }
}
