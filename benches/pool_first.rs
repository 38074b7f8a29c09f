//! First writes after a snapshot (issue 21): 4 origins in one pool against 4
//! separate stores, in-process (no ublk, no kernel queues). Each of 4 threads writes
//! 4 KiB into every 64 KiB chunk of its own origin once, in a shuffled order, as
//! the ublk queues do it: a batch of `origin_write_start`s, one `wait_durable` for
//! the batch's newest transaction, then the `origin_write_finish`es; so every
//! write copies its chunk out. Pool: one `SharedStore` of 4 origins after a group
//! snapshot; separate: 4 `SharedStore`s of one origin, each after a snapshot. Runs
//! the two alternately and prints each run's time, writes per second and the number
//! of commits, and the ratio pool / separate.
//!
//! What it shows (docs/benchmarks-pool.md): where a pool's first writes wait that 4
//! stores do not (the store lock held through a commit's flushes, and the one store
//! file's inode lock that every copy-out's `copy_file_range` takes).
//!
//! `cargo bench --bench pool_first`; `POOL_FIRST_BATCH` writes per batch (32, a
//! queue's depth), `POOL_FIRST_ROUNDS` runs of each (3), `UBLK_SNAP_BENCH_DIR` where
//! the files go (default: a tempdir; `/dev/shm` for tmpfs as in the VM guest).
use blockdev::FileDevice;
use exception_store::{SharedStore, Started, Store, StoreOptions};
use std::{path::Path, sync::Arc, time::Instant};

/// Each origin's size: 2048 chunks.
const ORIGIN: u64 = 128 << 20;
const CHUNK: u32 = 64 << 10;
const STORE: u64 = 1 << 30;
const ORIGINS: u32 = 4;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn file(dir: &Path, name: &str, len: u64) -> Arc<FileDevice> {
    Arc::new(FileDevice::create(&dir.join(name), len).expect("create a file"))
}

/// Write 4 KiB into every chunk of origin `k` of `s` once, `batch` at a time.
fn writer(s: &SharedStore, k: u32, seed: u64, batch: usize) {
    let mut order: Vec<u64> = (0..ORIGIN / u64::from(CHUNK)).collect();
    let mut x = seed;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let data = vec![7u8; 4096];
    for run in order.chunks(batch.max(1)) {
        let mut newest = None;
        let mut waiting = Vec::new();
        for &c in run {
            let off = c * u64::from(CHUNK);
            match s.origin_write_start(k, off, &data).expect("write start") {
                Started::Wait(t) => {
                    newest = newest.max(Some(t));
                    waiting.push(off);
                }
                Started::Written => {}
                Started::Busy => panic!("no snapshot is being taken"),
            }
        }
        if let Some(t) = newest {
            s.wait_durable(t).expect("commit");
        }
        for off in waiting {
            s.origin_write_finish(k, off, &data).expect("write finish");
        }
    }
}

/// One run: the stores (each with its origin ids), set up; returns seconds and
/// commits.
fn run(stores: Vec<(Arc<SharedStore>, u32)>, batch: usize) -> (f64, u64) {
    let mut distinct: Vec<Arc<SharedStore>> = Vec::new();
    for (s, _) in &stores {
        if !distinct.iter().any(|d| Arc::ptr_eq(d, s)) {
            distinct.push(s.clone());
        }
    }
    let txn = |d: &[Arc<SharedStore>]| d.iter().map(|s| s.lock().txn_id().0).sum::<u64>();
    let before = txn(&distinct);
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for (i, (s, k)) in stores.iter().enumerate() {
            sc.spawn(move || writer(s, *k, 0x9e37_79b9_7f4a_7c15 + i as u64, batch));
        }
    });
    (t0.elapsed().as_secs_f64(), txn(&distinct) - before)
}

fn pool(dir: &Path) -> Vec<(Arc<SharedStore>, u32)> {
    let mut s = Store::format(
        file(dir, "o0", ORIGIN),
        file(dir, "store", STORE),
        CHUNK,
        StoreOptions::default(),
    )
    .expect("format");
    for k in 1..ORIGINS {
        s.add_origin(&format!("o{k}"), file(dir, &format!("o{k}"), ORIGIN), "", 0)
            .expect("add an origin");
    }
    let s = Arc::new(SharedStore::new(s));
    let ks: Vec<u32> = (0..ORIGINS).collect();
    s.create_group("g", &ks, 0).expect("group");
    ks.into_iter().map(|k| (s.clone(), k)).collect()
}

fn separate(dir: &Path) -> Vec<(Arc<SharedStore>, u32)> {
    (0..ORIGINS)
        .map(|i| {
            let s = Store::format(
                file(dir, &format!("o{i}"), ORIGIN),
                file(dir, &format!("store{i}"), STORE),
                CHUNK,
                StoreOptions::default(),
            )
            .expect("format");
            let s = Arc::new(SharedStore::new(s));
            s.create_snapshot("s", None, 0).expect("snapshot");
            (s, 0)
        })
        .collect()
}

fn main() {
    let batch = env_or("POOL_FIRST_BATCH", 32);
    let rounds = env_or("POOL_FIRST_ROUNDS", 3);
    let writes = u64::from(ORIGINS) * ORIGIN / u64::from(CHUNK);
    println!(
        "{ORIGINS} origins of {} MiB, chunk {} KiB: {writes} first writes of 4 KiB, {batch} per batch",
        ORIGIN >> 20,
        CHUNK >> 10
    );
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let mut secs = [0.0; 2];
        // alternate which goes first
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let dir = match std::env::var("UBLK_SNAP_BENCH_DIR") {
                Ok(d) => tempfile::tempdir_in(d),
                Err(_) => tempfile::tempdir(),
            }
            .expect("tempdir");
            let (name, stores) = if which == 0 {
                ("pool", pool(dir.path()))
            } else {
                ("separate", separate(dir.path()))
            };
            let (t, commits) = run(stores, batch);
            secs[which] = t;
            println!(
                "round {r} {name:>8}: {t:.3} s, {:.0} writes/s, {commits} commits",
                writes as f64 / t
            );
        }
        ratios.push(secs[1] / secs[0]);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "pool / separate (writes/s): {}; median {:.2}",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" "),
        ratios[ratios.len() / 2]
    );
}
