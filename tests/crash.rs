//! Power loss at random points of random workloads.
//!
//! Each round runs random operations (origin and snapshot writes of any sector-aligned
//! size and offset,
//! write-zeroes, discards, snapshot create, delete and merge, background steps (delete
//! passes and merge batches), store growth (`grow_store` after the device was
//! extended), origin growth (`grow_origin` after the origin was extended: a snapshot
//! keeps its size, later I/O is bounded per device), flushes) on
//! fault-injecting devices, cuts the power after a random number of device writes
//! (store or origin), takes what the media would hold (unflushed writes dropped,
//! kept, or torn at sector granularity), reopens, and checks the contract of the
//! design note: every sector of every device reads either what it held at the last
//! flush or a value written to it since; snapshots created or deleted before the cut
//! are there or gone; `check` finds no error, and after the background work drains,
//! nothing at all.
//!
//! `CRASH_ROUNDS=N` sets the number of crash points (default 60; the soak in the README
//! uses 10000). `CRASH_SEED=S` replays one round.
mod common;

use blockdev::{BlockDevice, CrashMode, FaultyDevice};
use common::*;
use exception_store::{Dev, Store};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

const SECTOR: usize = 512;

fn h(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// Per device and sector: the values it may read after a crash.
#[derive(Default)]
struct Allowed {
    map: BTreeMap<Dev, Vec<BTreeSet<u32>>>,
}

impl Allowed {
    fn collapse(&mut self, m: &Model, only_snapshots: bool) {
        for (d, v) in &m.devs {
            if only_snapshots && *d == Dev::Origin(0) && self.map.contains_key(d) {
                continue;
            }
            self.map.insert(
                *d,
                v.chunks(SECTOR).map(|s| BTreeSet::from([h(s)])).collect(),
            );
        }
        self.map.retain(|d, _| m.devs.contains_key(d));
    }
    fn add(&mut self, m: &Model, d: Dev, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let v = &m.devs[&d];
        let sets = self.map.get_mut(&d).expect("tracked");
        let (first, last) = (off as usize / SECTOR, (off + len - 1) as usize / SECTOR);
        for s in first..=last {
            let end = ((s + 1) * SECTOR).min(v.len());
            sets[s].insert(h(&v[s * SECTOR..end]));
        }
    }
}

struct Round {
    rng: StdRng,
    origin: Arc<FaultyDevice>,
    dev: Arc<FaultyDevice>,
    s: Store,
    m: Model,
    allowed: Allowed,
    names: BTreeMap<Dev, String>,
    next: u64,
    /// The origin's size at format (growth stops at twice it).
    first_len: u64,
    /// Origin growths that returned (for the summary line).
    grown: u64,
}

enum Pending {
    None,
    Create { name: String, parent: Dev },
    Delete { id: Dev },
    Merge { id: Dev },
    GrowOrigin { old_len: u64 },
}

impl Round {
    fn new(seed: u64) -> Round {
        let mut rng = StdRng::seed_from_u64(seed);
        let cs = if rng.gen_bool(0.5) { 4096 } else { 8192 };
        let size = 6 * cs as u64 + if rng.gen_bool(0.5) { 1024 } else { 0 };
        let origin = Arc::new(FaultyDevice::from_vec(pattern(seed, size as usize)));
        let dev = Arc::new(FaultyDevice::new(8 << 20));
        let s = Store::format(origin.clone(), dev.clone(), cs, opts()).unwrap();
        let mut o = vec![0u8; size as usize];
        origin.read_at(&mut o, 0).unwrap();
        let m = Model::new(o);
        let mut allowed = Allowed::default();
        allowed.collapse(&m, false);
        Round {
            rng,
            origin,
            dev,
            s,
            m,
            allowed,
            names: BTreeMap::new(),
            next: 0,
            first_len: size,
            grown: 0,
        }
    }

    /// The model's origin becomes `len` bytes: new bytes read zeros (the device was
    /// extended with zeros and nothing was written past the old size), and so may
    /// its new sectors after a crash.
    fn set_origin_len(&mut self, len: u64) {
        let o = self.m.devs.get_mut(&Dev::Origin(0)).expect("origin");
        o.resize(len as usize, 0);
        let zero = h(&[0u8; SECTOR]);
        let sets = self
            .allowed
            .map
            .get_mut(&Dev::Origin(0))
            .expect("origin tracked");
        sets.resize_with(len as usize / SECTOR, || BTreeSet::from([zero]));
    }

    fn pick(&mut self, snap_only: bool) -> Option<Dev> {
        let devs: Vec<Dev> = self
            .m
            .devs
            .keys()
            .copied()
            .filter(|d| !snap_only || *d != Dev::Origin(0))
            .collect();
        (!devs.is_empty()).then(|| devs[self.rng.gen_range(0..devs.len())])
    }

    /// A sector-aligned range inside `d` (its own size), like every I/O the kernel
    /// sends: a crash keeps or loses each write per sector, and sub-sector writes
    /// would make mixes no disk produces.
    fn range_in(&mut self, d: Dev) -> (u64, u64) {
        let size = self.m.devs[&d].len() as u64;
        let cs = self.s.chunk_size();
        let s512 = SECTOR as u64;
        let off = self.rng.gen_range(0..size / s512) * s512;
        let len = (self.rng.gen_range(1..=(2 * cs / s512)) * s512).min(size - off);
        (off, len)
    }

    /// One random operation; `Err` when the power is out.
    fn step(&mut self, pending: &mut Pending) -> Result<(), exception_store::Error> {
        let cs = self.s.chunk_size();
        let k = self.rng.gen_range(0..100);
        match k {
            0..=54 => {
                let d = self.pick(false).unwrap_or(Dev::Origin(0));
                let (off, len) = self.range_in(d);
                let data = pattern(self.rng.gen(), len as usize);
                let mut after = self.m.clone();
                after.write(d, off, &data);
                // may land partly even if the call fails
                let r = self.s.write(d, off, &data);
                self.m = after;
                self.allowed.add(&self.m, d, off, len);
                r?;
            }
            55..=59 => {
                let d = self.pick(false).unwrap_or(Dev::Origin(0));
                let (off, len) = self.range_in(d);
                self.m.zero(d, off, len);
                self.allowed.add(&self.m, d, off, len);
                self.s.write_zeroes(d, off, len)?;
            }
            60..=63 => {
                if let Some(d) = self.pick(true) {
                    let (off, len) = self.range_in(d);
                    self.m.discard_snapshot(d, off, len, cs);
                    self.allowed.add(&self.m, d, off, len);
                    self.s.discard(d, off, len)?;
                }
            }
            64..=73 => {
                if self.m.devs.len() < 12 {
                    let parent = if self.rng.gen_bool(0.3) {
                        self.pick(true).unwrap_or(Dev::Origin(0))
                    } else {
                        Dev::Origin(0)
                    };
                    self.next += 1;
                    let name = format!("c{}", self.next);
                    *pending = Pending::Create {
                        name: name.clone(),
                        parent,
                    };
                    let pid = match parent {
                        Dev::Snap(id) => Some(id),
                        Dev::Origin(_) => None,
                    };
                    let id = self.s.create_snapshot(&name, pid, self.next)?;
                    *pending = Pending::None;
                    let c = self.m.devs[&parent].clone();
                    self.m.devs.insert(Dev::Snap(id), c);
                    self.names.insert(Dev::Snap(id), name);
                    self.allowed.collapse(&self.m, false);
                }
            }
            74..=77 => {
                if let Some(d @ Dev::Snap(id)) = self.pick(true) {
                    *pending = Pending::Delete { id: d };
                    self.s.delete_snapshot(id)?;
                    *pending = Pending::None;
                    self.m.devs.remove(&d);
                    self.names.remove(&d);
                    self.allowed.collapse(&self.m, true);
                }
            }
            78..=79 => {
                if let Some(d @ Dev::Snap(id)) = self.pick(true) {
                    *pending = Pending::Merge { id: d };
                    match self.s.merge_snapshot(id) {
                        Ok(_) => {
                            *pending = Pending::None;
                            let c = self.m.devs.remove(&d).unwrap();
                            self.m.devs.insert(Dev::Origin(0), c);
                            self.names.remove(&d);
                            self.allowed.map.remove(&Dev::Origin(0));
                            self.allowed.collapse(&self.m, false);
                        }
                        // busy, or a snapshot smaller than the grown origin
                        Err(
                            exception_store::Error::Busy(_) | exception_store::Error::Invalid(_),
                        ) => *pending = Pending::None,
                        Err(e) => return Err(e),
                    }
                }
            }
            80..=91 => {
                self.s.background_step(self.rng.gen_range(1..4))?;
            }
            92 => {
                // the origin extended by a few sectors (up to twice its first size),
                // then grow_origin: snapshots keep their size; a cut may lose it
                let old_len = self.s.size();
                let new_len = old_len + self.rng.gen_range(1..=(3 * cs / 512)) * 512;
                if new_len <= 2 * self.first_len {
                    self.origin.extend(new_len);
                    *pending = Pending::GrowOrigin { old_len };
                    self.s.grow_origin(0, new_len)?;
                    self.grown += 1;
                    *pending = Pending::None;
                    self.set_origin_len(new_len);
                }
            }
            93 => {
                // the store file extended by 64 chunks, then grow-store: reads change
                // nowhere; a cut may lose the growth (the next one takes it)
                let len = self.dev.len();
                self.dev.extend(len + 64 * cs);
                self.s.grow_store(self.rng.gen_bool(0.5))?;
            }
            _ => {
                self.s.flush()?;
                self.allowed.collapse(&self.m, false);
            }
        }
        Ok(())
    }

    /// Run until a power cut, then crash, reopen and verify.
    fn crash_once(&mut self, round: u64) {
        let cut = self.rng.gen_range(0..120);
        if self.rng.gen_bool(0.75) {
            self.dev.plan().lock().power_cut_in = Some(cut);
        } else {
            self.origin.plan().lock().power_cut_in = Some(cut);
        }
        let mut pending = Pending::None;
        let mut ops = 0;
        loop {
            ops += 1;
            assert!(ops < 100_000, "the power cut never came");
            if self.step(&mut pending).is_err() {
                break;
            }
        }
        let mode = [
            CrashMode::DropAll,
            CrashMode::KeepAll,
            CrashMode::RandomWrites,
            CrashMode::TornSectors,
        ][self.rng.gen_range(0..4)];
        let seed = self.rng.gen();
        self.dev = Arc::new(self.dev.crash(mode, seed));
        self.origin = Arc::new(self.origin.crash(mode, seed ^ 1));
        let mut s = Store::open(self.origin.clone(), self.dev.clone(), opts())
            .unwrap_or_else(|e| panic!("round {round}: reopen after crash ({mode:?}): {e}"));
        // An operation cut in the middle may or may not have happened.
        match std::mem::replace(&mut pending, Pending::None) {
            Pending::Create { name, parent } => {
                if let Some(id) = s.lookup(&name) {
                    let c = self.m.devs[&parent].clone();
                    self.m.devs.insert(Dev::Snap(id), c);
                    self.names.insert(Dev::Snap(id), name);
                    self.allowed.collapse(&self.m, false);
                }
            }
            Pending::Delete { id } => {
                let name = &self.names[&id];
                if s.lookup(name).is_none() {
                    self.m.devs.remove(&id);
                    self.names.remove(&id);
                    self.allowed.map.remove(&id);
                }
            }
            Pending::Merge { id } => {
                let name = &self.names[&id];
                if s.lookup(name).is_none() {
                    let c = self.m.devs.remove(&id).unwrap();
                    self.m.devs.insert(Dev::Origin(0), c);
                    self.names.remove(&id);
                    let sets = self.allowed.map.remove(&id).unwrap();
                    self.allowed.map.insert(Dev::Origin(0), sets);
                }
            }
            Pending::GrowOrigin { old_len } => {
                if s.size() == old_len {
                    self.set_origin_len(old_len);
                } else {
                    self.set_origin_len(s.size());
                }
            }
            Pending::None => {}
        }
        let live: BTreeSet<Dev> = s
            .snapshots()
            .iter()
            .map(|i| Dev::Snap(i.id))
            .chain([Dev::Origin(0)])
            .collect();
        let want: BTreeSet<Dev> = self.m.devs.keys().copied().collect();
        assert_eq!(live, want, "round {round}: devices after the crash");
        for (d, sets) in &self.allowed.map {
            let got = read_all(&mut s, *d);
            for (i, sec) in got.chunks(SECTOR).enumerate() {
                assert!(
                    sets[i].contains(&h(sec)),
                    "round {round} ({mode:?}): {d:?} sector {i} reads a value never written there since the last flush"
                );
            }
            self.m.devs.insert(*d, got);
        }
        let rep = s.check().unwrap();
        assert!(
            rep.errors.is_empty(),
            "round {round}: check after crash: {:?}",
            rep.errors
        );
        self.allowed.collapse(&self.m, false);
        self.s = s;
    }
}

#[test]
fn power_loss_at_random_points() {
    let rounds: u64 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let only: Option<u64> = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok());
    let per_store = 6;
    let mut done = 0;
    let mut grown = 0;
    let mut seed = 0;
    while done < rounds {
        if only.is_some_and(|o| o != seed) {
            seed += 1;
            continue;
        }
        let mut r = Round::new(seed);
        for i in 0..per_store.min(rounds - done) {
            r.crash_once(seed * 1000 + i);
            done += 1;
        }
        grown += r.grown;
        r.s.run_background(16).unwrap();
        assert_matches(&mut r.s, &r.m, "after the last crash and drain");
        let rep = r.s.check().unwrap();
        assert!(rep.is_clean(), "seed {seed}: {rep:?}");
        seed += 1;
        if only.is_some() {
            break;
        }
    }
    eprintln!("{done} crash points survived ({grown} origin growths among the operations)");
}
