//! Power loss at random points of random workloads, on a store of one origin and on a
//! pool of two or three.
//!
//! Each round runs random operations (writes of any sector-aligned size and offset,
//! write-zeroes and discards, on every origin and every snapshot; snapshot create of
//! each origin and of snapshots, group creates across origins, deletes of snapshots
//! and of whole groups, merges of snapshots and of whole groups, background steps
//! (delete passes and merge batches), store growth (`grow_store` after the device was
//! extended), origin growth (`grow_origin` after an origin was extended: a snapshot
//! keeps its size, later I/O is bounded per device), flushes) on fault-injecting
//! devices, cuts the power of every device at once (the store and all origins) after
//! a random number of device writes and flushes, takes what the media would hold (unflushed
//! writes dropped, kept, or torn at sector granularity), reopens (every origin's
//! device attached), and checks the contract of the design note: every sector of
//! every device reads either what it held at the last flush or a value written to it
//! since; snapshots created or deleted before the cut are there or gone; a group is
//! there with all its members or none, as its create, delete or merge left it; `check`
//! finds no error, and after the background work drains, nothing at all. An operation
//! that fails while the power is on fails the test.
//!
//! What counts as flushed follows the store's commits: a flush makes every device
//! durable; a snapshot or group create flushes the origins it captures (and the
//! store); any other commit (a delete, a merge) the store only, so the other origins'
//! unflushed writes stay undecided.
//!
//! `CRASH_ROUNDS=N` sets the number of crash points of each test (default 60 for one
//! origin, 600 for the pool; the soak in the README uses 10000). `CRASH_SEED=S`
//! replays one seed (its rounds) of each.
mod common;

use blockdev::{BlockDevice, CrashMode, FaultyDevice};
use common::{power::*, *};
use exception_store::{Dev, Error, OriginId, Store};
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
    /// After a commit: every snapshot holds what the model says, and so do the
    /// origins of `flushed` (and any origin not tracked yet); the other origins keep
    /// what they may read.
    fn collapse(&mut self, m: &Model, flushed: &[OriginId]) {
        for (d, v) in &m.devs {
            if let Dev::Origin(k) = d {
                if !flushed.contains(k) && self.map.contains_key(d) {
                    continue;
                }
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

/// Counts of the operations that returned, for the summary line.
#[derive(Default, Debug)]
struct Stats {
    grown: u64,
    groups: u64,
    group_deletes: u64,
    group_merges: u64,
    origin_discards: u64,
    /// Power cuts inside a group create, and of those, the ones whose group was
    /// there after the reopen.
    cuts_in_group_create: u64,
    groups_kept: u64,
    /// Power cuts inside a delete or merge of a whole group.
    cuts_in_group_delete_or_merge: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.grown += o.grown;
        self.groups += o.groups;
        self.group_deletes += o.group_deletes;
        self.group_merges += o.group_merges;
        self.origin_discards += o.origin_discards;
        self.cuts_in_group_create += o.cuts_in_group_create;
        self.groups_kept += o.groups_kept;
        self.cuts_in_group_delete_or_merge += o.cuts_in_group_delete_or_merge;
    }
}

struct Round {
    rng: StdRng,
    power: Arc<Power>,
    /// The store device and the origins' (by id), under `power`.
    dev: Arc<FaultyDevice>,
    origins: Vec<Arc<FaultyDevice>>,
    s: Store,
    m: Model,
    allowed: Allowed,
    /// Each live snapshot: its origin and name.
    snaps: BTreeMap<Dev, (OriginId, String)>,
    /// Each group with a live member: its members still live.
    groups: BTreeMap<u32, BTreeSet<Dev>>,
    next: u64,
    /// Each origin's size at format (growth stops at twice it).
    first_len: Vec<u64>,
    stats: Stats,
}

/// The operation a power cut may have cut in the middle.
enum Pending {
    None,
    Create {
        name: String,
        parent: Dev,
        k: OriginId,
    },
    Group {
        name: String,
        ks: Vec<OriginId>,
    },
    Delete {
        ids: Vec<Dev>,
    },
    Merge {
        ids: Vec<Dev>,
    },
    GrowOrigin {
        k: OriginId,
    },
}

fn all(n: usize) -> Vec<OriginId> {
    (0..n as OriginId).collect()
}

impl Round {
    fn new(seed: u64, nr_origins: usize) -> Round {
        let mut rng = StdRng::seed_from_u64(seed);
        let cs = if rng.gen_bool(0.5) { 4096 } else { 8192 };
        let power = Arc::new(Power::default());
        let first_len: Vec<u64> = (0..nr_origins)
            .map(|_| 6 * cs as u64 + if rng.gen_bool(0.5) { 1024 } else { 0 })
            .collect();
        // every origin its own bytes: an I/O that lands on the wrong one shows
        let origins: Vec<Arc<FaultyDevice>> = first_len
            .iter()
            .enumerate()
            .map(|(k, &len)| {
                let fill = seed.wrapping_add((k as u64) << 32);
                Arc::new(FaultyDevice::from_vec(pattern(fill, len as usize)))
            })
            .collect();
        let dev = Arc::new(FaultyDevice::new(8 << 20));
        let mut s = Store::format(
            powered(&origins[0], &power),
            powered(&dev, &power),
            cs,
            opts(),
        )
        .unwrap();
        for (k, o) in origins.iter().enumerate().skip(1) {
            let got = s
                .add_origin(
                    &format!("o{k}"),
                    powered(o, &power),
                    &format!("/dev/o{k}"),
                    0,
                )
                .unwrap();
            assert_eq!(got, k as OriginId);
        }
        let mut m = Model::default();
        for (k, o) in origins.iter().enumerate() {
            let mut v = vec![0u8; o.len() as usize];
            o.read_at(&mut v, 0).unwrap();
            m.devs.insert(Dev::Origin(k as OriginId), v);
        }
        let mut allowed = Allowed::default();
        allowed.collapse(&m, &all(nr_origins));
        Round {
            rng,
            power,
            dev,
            origins,
            s,
            m,
            allowed,
            snaps: BTreeMap::new(),
            groups: BTreeMap::new(),
            next: 0,
            first_len,
            stats: Stats::default(),
        }
    }

    fn nr_origins(&self) -> usize {
        self.origins.len()
    }

    /// The model's origin `k` becomes `len` bytes: new bytes read zeros (the device
    /// was extended with zeros and nothing was written past the old size), and so
    /// may its new sectors after a crash.
    fn set_origin_len(&mut self, k: OriginId, len: u64) {
        let o = self.m.devs.get_mut(&Dev::Origin(k)).expect("origin");
        o.resize(len as usize, 0);
        let zero = h(&[0u8; SECTOR]);
        let sets = self
            .allowed
            .map
            .get_mut(&Dev::Origin(k))
            .expect("origin tracked");
        sets.resize_with(len as usize / SECTOR, || BTreeSet::from([zero]));
    }

    fn pick(&mut self, snap_only: bool) -> Option<Dev> {
        let devs: Vec<Dev> = self
            .m
            .devs
            .keys()
            .copied()
            .filter(|d| !snap_only || matches!(d, Dev::Snap(_)))
            .collect();
        (!devs.is_empty()).then(|| devs[self.rng.gen_range(0..devs.len())])
    }

    fn pick_origin(&mut self) -> OriginId {
        self.rng.gen_range(0..self.nr_origins()) as OriginId
    }

    /// A snapshot to delete or merge: half the time, when the one picked is a
    /// group's, every live member of its group.
    fn pick_victims(&mut self) -> Option<Vec<Dev>> {
        let d = self.pick(true)?;
        if self.rng.gen_bool(0.5) {
            if let Some(g) = self.groups.values().find(|g| g.contains(&d)) {
                return Some(g.iter().copied().collect());
            }
        }
        Some(vec![d])
    }

    /// The origin of a snapshot or of an origin.
    fn origin_of(&self, d: Dev) -> OriginId {
        match d {
            Dev::Origin(k) => k,
            Dev::Snap(_) => self.snaps[&d].0,
        }
    }

    /// Snapshots `ids` are gone (deleted or merged).
    fn forget(&mut self, ids: &[Dev]) {
        for d in ids {
            self.snaps.remove(d);
            for g in self.groups.values_mut() {
                g.remove(d);
            }
        }
        self.groups.retain(|_, g| !g.is_empty());
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
    fn step(&mut self, pending: &mut Pending) -> Result<(), Error> {
        let cs = self.s.chunk_size();
        let op = self.rng.gen_range(0..100);
        match op {
            0..=54 => {
                let d = self.pick(false).expect("an origin");
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
                let d = self.pick(false).expect("an origin");
                let (off, len) = self.range_in(d);
                self.m.zero(d, off, len);
                self.allowed.add(&self.m, d, off, len);
                self.s.write_zeroes(d, off, len)?;
            }
            60..=63 => {
                let d = self.pick(false).expect("an origin");
                let (off, len) = self.range_in(d);
                match d {
                    // the origin's device zeroes the range (`Powered`)
                    Dev::Origin(_) => self.m.zero(d, off, len),
                    Dev::Snap(_) => self.m.discard_snapshot(d, off, len, cs),
                }
                self.allowed.add(&self.m, d, off, len);
                self.s.discard(d, off, len)?;
                if matches!(d, Dev::Origin(_)) {
                    self.stats.origin_discards += 1;
                }
            }
            64..=73 => {
                if self.snaps.len() < 10 {
                    if self.nr_origins() > 1 && self.rng.gen_bool(0.35) {
                        self.create_group(pending)?;
                    } else {
                        self.create_one(pending)?;
                    }
                }
            }
            74..=77 => {
                if let Some(ids) = self.pick_victims() {
                    *pending = Pending::Delete { ids: ids.clone() };
                    let sids: Vec<_> = ids.iter().map(snap_id).collect();
                    if let [one] = sids[..] {
                        self.s.delete_snapshot(one)?;
                    } else {
                        self.s.delete_snapshots(&sids)?;
                        self.stats.group_deletes += 1;
                    }
                    *pending = Pending::None;
                    for d in &ids {
                        self.m.devs.remove(d);
                    }
                    self.forget(&ids);
                    self.allowed.collapse(&self.m, &[]);
                }
            }
            78..=79 => {
                if let Some(ids) = self.pick_victims() {
                    *pending = Pending::Merge { ids: ids.clone() };
                    let sids: Vec<_> = ids.iter().map(snap_id).collect();
                    match self.s.merge_snapshots(&sids) {
                        Ok(_) => {
                            *pending = Pending::None;
                            if ids.len() > 1 {
                                self.stats.group_merges += 1;
                            }
                            for d in &ids {
                                let k = self.origin_of(*d);
                                let c = self.m.devs.remove(d).expect("live");
                                self.m.devs.insert(Dev::Origin(k), c);
                                self.allowed.map.remove(&Dev::Origin(k));
                            }
                            self.forget(&ids);
                            // the merged origins are untracked: they read the model
                            self.allowed.collapse(&self.m, &[]);
                        }
                        // a merge into one of the origins runs, or a snapshot is
                        // smaller than its grown origin: refused, nothing changed
                        Err(Error::Busy(_) | Error::Invalid(_)) => *pending = Pending::None,
                        Err(e) => return Err(e),
                    }
                }
            }
            80..=91 => {
                self.s.background_step(self.rng.gen_range(1..4))?;
            }
            92 => {
                // an origin extended by a few sectors (up to twice its first size),
                // then grow_origin: snapshots keep their size; a cut may lose it
                let k = self.pick_origin();
                let old_len = self.s.origin_size(k)?;
                let new_len = old_len + self.rng.gen_range(1..=(3 * cs / 512)) * 512;
                if new_len <= 2 * self.first_len[k as usize] {
                    self.origins[k as usize].extend(new_len);
                    *pending = Pending::GrowOrigin { k };
                    match self.s.grow_origin(k, new_len) {
                        Ok(_) => {
                            self.stats.grown += 1;
                            self.set_origin_len(k, new_len);
                        }
                        // a merge runs: refused, nothing changed
                        Err(Error::Busy(_)) => {}
                        Err(e) => return Err(e),
                    }
                    *pending = Pending::None;
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
                self.allowed.collapse(&self.m, &all(self.nr_origins()));
            }
        }
        Ok(())
    }

    /// A snapshot of an origin, or (less often) of a snapshot.
    fn create_one(&mut self, pending: &mut Pending) -> Result<(), Error> {
        let parent = match self.pick(true) {
            Some(p) if self.rng.gen_bool(0.3) => p,
            _ => Dev::Origin(self.pick_origin()),
        };
        let k = self.origin_of(parent);
        self.next += 1;
        let name = format!("c{}", self.next);
        *pending = Pending::Create {
            name: name.clone(),
            parent,
            k,
        };
        let id = match parent {
            Dev::Snap(p) => self.s.create_snapshot(&name, Some(p), self.next)?,
            Dev::Origin(k) => self.s.create_origin_snapshot(k, &name, self.next)?,
        };
        *pending = Pending::None;
        let c = self.m.devs[&parent].clone();
        self.m.devs.insert(Dev::Snap(id), c);
        self.snaps.insert(Dev::Snap(id), (k, name));
        self.allowed.collapse(&self.m, &[k]);
        Ok(())
    }

    /// A group snapshot of two or more origins (in any order).
    fn create_group(&mut self, pending: &mut Pending) -> Result<(), Error> {
        let mut ks: Vec<OriginId> = all(self.nr_origins())
            .into_iter()
            .filter(|_| self.rng.gen_bool(0.7))
            .collect();
        if ks.len() < 2 {
            ks = all(self.nr_origins());
        }
        if self.rng.gen_bool(0.5) {
            ks.reverse();
        }
        self.next += 1;
        let name = format!("g{}", self.next);
        *pending = Pending::Group {
            name: name.clone(),
            ks: ks.clone(),
        };
        let g = self.s.create_group(&name, &ks, self.next)?;
        *pending = Pending::None;
        assert_eq!(g.members.len(), ks.len(), "a member per origin");
        self.stats.groups += 1;
        self.add_group(g.id, &name, &g.members);
        self.allowed.collapse(&self.m, &ks);
        Ok(())
    }

    /// Group `id`'s members exist: each reads what its origin reads now.
    fn add_group(&mut self, id: u32, name: &str, members: &[(OriginId, blockdev::ids::SnapId)]) {
        for &(k, sid) in members {
            let c = self.m.devs[&Dev::Origin(k)].clone();
            self.m.devs.insert(Dev::Snap(sid), c);
            self.snaps.insert(Dev::Snap(sid), (k, name.to_owned()));
            self.groups.entry(id).or_default().insert(Dev::Snap(sid));
        }
    }

    /// A store on the crashed devices, every origin attached, on a fresh power supply.
    fn reopen(&mut self, mode: CrashMode, seed: u64) -> Result<Store, Error> {
        self.power = Arc::new(Power::default());
        self.dev = Arc::new(self.dev.crash(mode, seed));
        for (k, o) in self.origins.iter_mut().enumerate() {
            *o = Arc::new(o.crash(mode, seed ^ (1 + k as u64)));
        }
        let mut s = Store::open(
            powered(&self.origins[0], &self.power),
            powered(&self.dev, &self.power),
            opts(),
        )?;
        for (k, o) in self.origins.iter().enumerate().skip(1) {
            s.attach_origin(k as OriginId, powered(o, &self.power))?;
        }
        Ok(s)
    }

    /// Run until a power cut, then crash, reopen and verify.
    fn crash_once(&mut self, round: u64) {
        let cut = self.rng.gen_range(0..120);
        self.power.cut_after(cut);
        let mut pending = Pending::None;
        let mut ops = 0;
        loop {
            ops += 1;
            assert!(ops < 100_000, "the power cut never came");
            if let Err(e) = self.step(&mut pending) {
                assert!(
                    self.power.is_out(),
                    "round {round}: an operation failed with the power on: {e}"
                );
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
        let mut s = self
            .reopen(mode, seed)
            .unwrap_or_else(|e| panic!("round {round}: reopen after crash ({mode:?}): {e}"));
        // An operation cut in the middle may or may not have happened; a group's
        // operations happened to all its members or to none.
        match std::mem::replace(&mut pending, Pending::None) {
            Pending::Create { name, parent, k } => {
                if let Some(id) = s.lookup_in(k, &name) {
                    let c = self.m.devs[&parent].clone();
                    self.m.devs.insert(Dev::Snap(id), c);
                    self.snaps.insert(Dev::Snap(id), (k, name));
                    self.allowed.collapse(&self.m, &[k]);
                }
            }
            Pending::Group { name, ks } => {
                self.stats.cuts_in_group_create += 1;
                let found: Vec<_> = ks
                    .iter()
                    .filter_map(|&k| s.lookup_in(k, &name).map(|id| (k, id)))
                    .collect();
                assert!(
                    found.is_empty() || found.len() == ks.len(),
                    "round {round} ({mode:?}): group {name} of origins {ks:?} has members in {:?} only",
                    found.iter().map(|m| m.0).collect::<Vec<_>>()
                );
                if !found.is_empty() {
                    self.stats.groups_kept += 1;
                    let g = s
                        .group(&name)
                        .unwrap_or_else(|| panic!("round {round}: group {name} not listed"));
                    let mut want = found.clone();
                    want.sort_unstable();
                    assert_eq!(g.members, want, "round {round}: group {name}'s members");
                    self.add_group(g.id, &name, &g.members);
                    self.allowed.collapse(&self.m, &ks);
                }
            }
            Pending::Delete { ids } => {
                self.stats.cuts_in_group_delete_or_merge += u64::from(ids.len() > 1);
                let gone: Vec<Dev> = ids.iter().copied().filter(|d| !s.exists(*d)).collect();
                assert!(
                    gone.is_empty() || gone.len() == ids.len(),
                    "round {round} ({mode:?}): a delete of {ids:?} left {:?} only gone",
                    gone
                );
                for d in &gone {
                    self.m.devs.remove(d);
                    self.allowed.map.remove(d);
                }
                self.forget(&gone);
            }
            Pending::Merge { ids } => {
                self.stats.cuts_in_group_delete_or_merge += u64::from(ids.len() > 1);
                let gone: Vec<Dev> = ids.iter().copied().filter(|d| !s.exists(*d)).collect();
                assert!(
                    gone.is_empty() || gone.len() == ids.len(),
                    "round {round} ({mode:?}): a merge of {ids:?} left {:?} only merged",
                    gone
                );
                for d in &gone {
                    let k = self.origin_of(*d);
                    let c = self.m.devs.remove(d).expect("live");
                    self.m.devs.insert(Dev::Origin(k), c);
                    let sets = self.allowed.map.remove(d).expect("tracked");
                    self.allowed.map.insert(Dev::Origin(k), sets);
                }
                self.forget(&gone);
            }
            Pending::GrowOrigin { k } => {
                let len = s.origin_size(k).expect("origin");
                self.set_origin_len(k, len);
            }
            Pending::None => {}
        }
        let live: BTreeSet<Dev> = s
            .snapshots()
            .iter()
            .map(|i| Dev::Snap(i.id))
            .chain(s.origins().iter().map(|o| Dev::Origin(o.id)))
            .collect();
        let want: BTreeSet<Dev> = self.m.devs.keys().copied().collect();
        assert_eq!(live, want, "round {round}: devices after the crash");
        for (id, members) in &self.groups {
            let got: BTreeSet<Dev> = s
                .group_by_id(*id)
                .members
                .iter()
                .map(|m| Dev::Snap(m.1))
                .collect();
            assert_eq!(&got, members, "round {round}: the members of group {id}");
        }
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
        self.allowed.collapse(&self.m, &all(self.nr_origins()));
        self.s = s;
    }
}

fn snap_id(d: &Dev) -> blockdev::ids::SnapId {
    match d {
        Dev::Snap(id) => *id,
        Dev::Origin(_) => unreachable!("a snapshot"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Run `CRASH_ROUNDS` (or `default_rounds`) crash points, six per store, on stores
/// of `nr_origins(seed)` origins; returns the summary line.
fn run(default_rounds: u64, nr_origins: impl Fn(u64) -> usize) -> String {
    let rounds = env_u64("CRASH_ROUNDS").unwrap_or(default_rounds);
    let only = env_u64("CRASH_SEED");
    let per_store = 6;
    let mut done = 0;
    let mut stats = Stats::default();
    let mut seed = 0;
    while done < rounds {
        if only.is_some_and(|o| o != seed) {
            seed += 1;
            continue;
        }
        let mut r = Round::new(seed, nr_origins(seed));
        for i in 0..per_store.min(rounds - done) {
            r.crash_once(seed * 1000 + i);
            done += 1;
        }
        r.s.run_background(16).unwrap();
        assert_matches(&mut r.s, &r.m, "after the last crash and drain");
        let rep = r.s.check().unwrap();
        assert!(rep.is_clean(), "seed {seed}: {rep:?}");
        stats.add(&r.stats);
        seed += 1;
        if only.is_some() {
            break;
        }
    }
    format!("{done} crash points survived; {stats:?}")
}

#[test]
fn power_loss_at_random_points() {
    eprintln!("one origin: {}", run(60, |_| 1));
}

/// The same on a pool of two or three origins (by seed), with group creates,
/// deletes and merges among the operations.
#[test]
fn power_loss_in_a_pool() {
    eprintln!("pool: {}", run(600, |seed| 2 + (seed % 2) as usize));
}
