//! Power loss while a pool is written by several threads at once through
//! `SharedStore`, whose group commit flushes and writes its superblock without the
//! store lock (`store::commit`): the other threads' copy-outs, snapshot writes and
//! creates run into the next transaction meanwhile.
//!
//! Each round formats a pool of two origins (A and B) with a snapshot of each, then
//! runs four threads until the power of every device is cut at once after a random
//! number of device writes and flushes:
//! - A's writer: writes of any sector-aligned size to origin A, FLUSHes of A, and
//!   snapshot creates of A (each snapshot's contents are A's at that moment);
//! - B's writer: batches of writes to origin B split as a ublk queue does them
//!   (`origin_write_start`, one `wait_durable`, `origin_write_finish`), FLUSHes of B;
//! - a snapshot writer: writes into A's first snapshot, FLUSHes of it;
//! - a committer: group commits in a loop.
//!
//! Each device has one writer, so its writer knows what it may read after the
//! crash: per sector, the value at its last successful FLUSH (or snapshot create)
//! or any value written since. After the crash the store is reopened and checked:
//! every snapshot created reads exactly what its origin held when it was created
//! (a copy-out not yet durable while the origin was overwritten shows here), the
//! written devices read allowed values only, a create that returned is there, and
//! `check` finds nothing wrong.
//!
//! `CRASH_ROUNDS=N` sets the number of rounds (default 40); `CRASH_SEED=S` runs one.
mod common;

use blockdev::{CrashMode, FaultyDevice};
use common::{power::*, *};
use exception_store::{Dev, OriginId, SharedStore, Started, Store};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

const SECTOR: usize = 512;
const CS: u64 = 4096;
/// Each origin's size.
const LEN: u64 = 24 * CS;
/// Most operations a thread runs in a round (the cut comes long before).
const MAX_OPS: u64 = 5_000;

fn h(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// What one device may read after the crash, per sector, kept by its one writer.
#[derive(Clone)]
struct Tracked {
    now: Vec<u8>,
    allowed: Vec<BTreeSet<u32>>,
}

impl Tracked {
    fn new(v: Vec<u8>) -> Tracked {
        let allowed = v.chunks(SECTOR).map(|s| BTreeSet::from([h(s)])).collect();
        Tracked { now: v, allowed }
    }

    /// `data` is being written at `off`: from now on it may be there.
    fn write(&mut self, off: u64, data: &[u8]) {
        let off = off as usize;
        self.now[off..off + data.len()].copy_from_slice(data);
        for s in off / SECTOR..(off + data.len()).div_ceil(SECTOR) {
            self.allowed[s].insert(h(&self.now[s * SECTOR..(s + 1) * SECTOR]));
        }
    }

    /// A FLUSH returned: what the device holds now is durable.
    fn flushed(&mut self) {
        *self = Tracked::new(std::mem::take(&mut self.now));
    }

    fn check(&self, got: &[u8], what: &str) {
        assert_eq!(got.len(), self.now.len(), "{what}: size");
        for (i, sec) in got.chunks(SECTOR).enumerate() {
            assert!(
                self.allowed[i].contains(&h(sec)),
                "{what}: sector {i} reads a value not written there since its last flush"
            );
        }
    }
}

/// A random sector-aligned range of up to three chunks inside a device of `LEN`.
fn range(rng: &mut StdRng) -> (u64, usize) {
    let sectors = LEN / SECTOR as u64;
    let off = rng.gen_range(0..sectors);
    let n = rng.gen_range(1..=(3 * CS / SECTOR as u64).min(sectors - off));
    (off * SECTOR as u64, n as usize * SECTOR)
}

/// What A's writer leaves: origin A, the snapshots it created (name -> contents),
/// and a create the cut may have caught (name, contents).
struct AOut {
    a: Tracked,
    created: BTreeMap<String, Vec<u8>>,
    maybe: Option<(String, Vec<u8>)>,
}

fn a_writer(s: &SharedStore, mut a: Tracked, seed: u64) -> AOut {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = AOut {
        a: a.clone(),
        created: BTreeMap::new(),
        maybe: None,
    };
    for i in 0..MAX_OPS {
        match rng.gen_range(0..16) {
            0 => match s.flush(Dev::Origin(0)) {
                Ok(_) => a.flushed(),
                Err(_) => break,
            },
            1 => {
                let name = format!("a{i}");
                match s.create_origin_snapshot(0, &name, i) {
                    Ok(_) => {
                        out.created.insert(name, a.now.clone());
                        // a create flushes the origin it captures
                        a.flushed();
                    }
                    Err(_) => {
                        out.maybe = Some((name, a.now.clone()));
                        break;
                    }
                }
            }
            _ => {
                let (off, len) = range(&mut rng);
                let data = pattern(seed ^ (i << 20), len);
                a.write(off, &data);
                if s.write(Dev::Origin(0), off, &data).is_err() {
                    break;
                }
            }
        }
    }
    out.a = a;
    out
}

fn b_writer(s: &SharedStore, k: OriginId, mut b: Tracked, seed: u64) -> Tracked {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut i = 0u64;
    'run: while i < MAX_OPS {
        if rng.gen_range(0..8) == 0 {
            match s.flush(Dev::Origin(k)) {
                Ok(_) => b.flushed(),
                Err(_) => break,
            }
            i += 1;
            continue;
        }
        // a batch of writes to distinct chunks, as a queue starts them
        let mut chunks: Vec<u64> = (0..LEN / CS).collect();
        let n = rng.gen_range(1..=8);
        let mut waiting = Vec::new();
        let mut newest = None;
        for _ in 0..n {
            let c = chunks.swap_remove(rng.gen_range(0..chunks.len()));
            let data = pattern(seed ^ (i << 20), CS as usize);
            i += 1;
            let off = c * CS;
            match s.origin_write_start(k, off, &data) {
                Ok(Started::Written) => b.write(off, &data),
                Ok(Started::Wait(t)) => {
                    newest = newest.max(Some(t));
                    waiting.push((off, data));
                }
                Ok(Started::Busy) => {
                    b.write(off, &data);
                    if s.write(Dev::Origin(k), off, &data).is_err() {
                        waiting.iter().for_each(|_| s.origin_write_abandon(k));
                        break 'run;
                    }
                }
                Err(_) => {
                    waiting.iter().for_each(|_| s.origin_write_abandon(k));
                    break 'run;
                }
            }
        }
        let durable = newest.map_or(Ok(()), |t| s.wait_durable(t).map(drop));
        if durable.is_err() {
            waiting.iter().for_each(|_| s.origin_write_abandon(k));
            break;
        }
        for (off, data) in waiting {
            b.write(off, &data);
            if s.origin_write_finish(k, off, &data).is_err() {
                // the others of the batch still leave the gate
                continue;
            }
        }
    }
    b
}

fn snap_writer(s: &SharedStore, d: Dev, mut t: Tracked, seed: u64) -> Tracked {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..MAX_OPS {
        if rng.gen_range(0..8) == 0 {
            match s.flush(d) {
                Ok(_) => t.flushed(),
                Err(_) => break,
            }
            continue;
        }
        let (off, len) = range(&mut rng);
        let data = pattern(seed ^ (i << 20), len);
        t.write(off, &data);
        if s.write(d, off, &data).is_err() {
            break;
        }
    }
    t
}

/// One round; returns the number of snapshots A's writer created.
fn round(seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let power = Arc::new(Power::default());
    let origins: Vec<Arc<FaultyDevice>> = (0..2u64)
        .map(|k| {
            Arc::new(FaultyDevice::from_vec(pattern(
                seed ^ (k << 40),
                LEN as usize,
            )))
        })
        .collect();
    let dev = Arc::new(FaultyDevice::new(16 << 20));
    let mut store = Store::format(
        powered(&origins[0], &power),
        powered(&dev, &power),
        CS as u32,
        opts(),
    )
    .unwrap();
    let kb = store
        .add_origin("b", powered(&origins[1], &power), "/dev/b", 0)
        .unwrap();
    let sa = store.create_origin_snapshot(0, "sa", 0).unwrap();
    let sb = store.create_origin_snapshot(kb, "sb", 0).unwrap();
    let s = SharedStore::new(store);
    let initial = |k: usize| {
        let mut v = vec![0u8; LEN as usize];
        blockdev::BlockDevice::read_at(&*origins[k], &mut v, 0).unwrap();
        v
    };
    let (a0, b0) = (initial(0), initial(1));
    let cut = rng.gen_range(0..600);
    power.cut_after(cut);
    let seeds: [u64; 3] = rng.gen();
    let (a, b, sa_t) = std::thread::scope(|sc| {
        let committer = sc.spawn(|| {
            for _ in 0..MAX_OPS {
                if s.commit().is_err() {
                    break;
                }
                // (a commit with nothing to write still flushes: not in a tight loop)
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        let a = sc.spawn(|| a_writer(&s, Tracked::new(a0.clone()), seeds[0]));
        let b = sc.spawn(|| b_writer(&s, kb, Tracked::new(b0.clone()), seeds[1]));
        let t = sc.spawn(|| snap_writer(&s, Dev::Snap(sa), Tracked::new(a0.clone()), seeds[2]));
        let (a, b, t) = (a.join().unwrap(), b.join().unwrap(), t.join().unwrap());
        // a thread that ran out of operations before the cut: cut now
        power.cut_now();
        committer.join().unwrap();
        (a, b, t)
    });
    drop(s);
    let mode = [
        CrashMode::DropAll,
        CrashMode::KeepAll,
        CrashMode::RandomWrites,
        CrashMode::TornSectors,
    ][rng.gen_range(0..4)];
    let crash_seed: u64 = rng.gen();
    let what = format!("seed {seed} (cut {cut}, {mode:?})");
    let d2 = Arc::new(dev.crash(mode, crash_seed));
    let o2: Vec<Arc<FaultyDevice>> = origins
        .iter()
        .enumerate()
        .map(|(k, o)| Arc::new(o.crash(mode, crash_seed ^ (1 + k as u64))))
        .collect();
    let mut s =
        Store::open(o2[0].clone(), d2, opts()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    s.attach_origin(kb, o2[1].clone()).unwrap();
    a.a.check(
        &read_all(&mut s, Dev::Origin(0)),
        &format!("{what}: origin A"),
    );
    b.check(
        &read_all(&mut s, Dev::Origin(kb)),
        &format!("{what}: origin B"),
    );
    sa_t.check(
        &read_all(&mut s, Dev::Snap(sa)),
        &format!("{what}: snapshot of A written"),
    );
    assert!(
        read_all(&mut s, Dev::Snap(sb)) == b0,
        "{what}: B's snapshot reads what B held when it was created"
    );
    for (name, want) in &a.created {
        let id = s
            .lookup_in(0, name)
            .unwrap_or_else(|| panic!("{what}: snapshot {name} was created, it is gone"));
        assert!(
            &read_all(&mut s, Dev::Snap(id)) == want,
            "{what}: snapshot {name} reads what A held when it was created"
        );
    }
    if let Some((name, want)) = &a.maybe {
        if let Some(id) = s.lookup_in(0, name) {
            assert!(
                &read_all(&mut s, Dev::Snap(id)) == want,
                "{what}: snapshot {name} (its create cut) reads what A held"
            );
        }
    }
    let rep = s.check().unwrap();
    assert!(rep.errors.is_empty(), "{what}: check: {:?}", rep.errors);
    s.run_background(16).unwrap();
    let rep = s.check().unwrap();
    assert!(
        rep.is_clean(),
        "{what}: check after the background work: {rep:?}"
    );
    a.created.len()
}

#[test]
fn power_loss_while_threads_write_a_pool() {
    let env = |n: &str| std::env::var(n).ok().and_then(|v| v.parse::<u64>().ok());
    let rounds = env("CRASH_ROUNDS").unwrap_or(40);
    let seeds: Vec<u64> = match env("CRASH_SEED") {
        Some(s) => vec![s],
        None => (0..rounds).collect(),
    };
    let mut created = 0usize;
    for seed in seeds {
        created += round(seed);
    }
    eprintln!("{rounds} concurrent crash rounds survived; {created} snapshots created in them");
}
