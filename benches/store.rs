//! In-process benchmarks of the exception store on file backends (`harness = false`,
//! like redb's benchmarks): fixed, seeded workloads, each timed for several rounds
//! and reported as the median, next to raw `pread`/`pwrite` on the same files in the
//! same run. See `benches/README.md` for what each row means.
//!
//! Run: `cargo bench --bench store` (everything), `cargo bench --bench store -- main`
//! (64 KiB chunks, 0/1/16/256 snapshots), `-- sweep` (chunk sizes 4 KiB..1 MiB) or
//! `-- steady` (steady-state origin writes only, CPU path, 0/1/16/256 snapshots).
//!
//! Environment:
//! - `UBLK_SNAP_BENCH_DIR`: directory for the origin and store files (default: a
//!   temporary directory under `$TMPDIR`).
//! - `UBLK_SNAP_BENCH_ORIGIN_MIB`: origin size in MiB (default 256).
//! - `UBLK_SNAP_BENCH_ROUNDS`: rounds per case (default 5).
//! - `UBLK_SNAP_BENCH_SNAPS`: snapshot counts of the `steady` case (default `0,1,16,256`).
use blockdev::{ids::SnapId, BlockDevice, FileDevice};
use exception_store::{Dev, SharedStore, Store, StoreOptions};
use rand::{rngs::SmallRng, seq::SliceRandom, Rng, SeedableRng};
use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// Origin write size of the random workload.
const SMALL: u64 = 4 * KIB;
/// Origin write size of the sequential workload.
const LARGE: u64 = MIB;
/// Random 4 KiB writes per batch (fewer when the random region has fewer chunks).
const MAX_RANDOM_BATCH: usize = 256;
/// Random first writes (8 threads, untimed) of the metadata measurement.
const META_WRITES: usize = 2048;
/// Threads of the concurrent copy-out batch (the ublk queues, group commit).
const THREADS: usize = 8;
/// Sequential bytes written per batch.
const SEQ_BYTES: u64 = 32 * MIB;
/// Random 4 KiB reads per batch.
const READS: usize = 2048;

struct Env {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    origin_len: u64,
    rounds: usize,
}

impl Env {
    fn from_env() -> Env {
        let (dir, tmp) = match std::env::var_os("UBLK_SNAP_BENCH_DIR") {
            Some(d) => (PathBuf::from(d), None),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                (t.path().to_owned(), Some(t))
            }
        };
        let mib = std::env::var("UBLK_SNAP_BENCH_ORIGIN_MIB")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(256);
        let rounds = std::env::var("UBLK_SNAP_BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(5)
            .max(1);
        Env {
            dir,
            _tmp: tmp,
            origin_len: mib * MIB,
            rounds,
        }
    }
    fn origin_path(&self) -> PathBuf {
        self.dir.join("ublk-snap-bench-origin.img")
    }
    fn store_path(&self) -> PathBuf {
        self.dir.join("ublk-snap-bench-store.img")
    }
}

/// Samples of one row: seconds per round for the store and for the raw baseline.
struct Row {
    name: String,
    chunk: u64,
    snaps: usize,
    ops: usize,
    bytes_per_op: u64,
    store: Vec<f64>,
    raw: Vec<f64>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    /// Extra per-chunk-size facts (metadata bytes etc.), printed after the table.
    notes: Vec<String>,
}

impl Table {
    #[allow(clippy::too_many_arguments)]
    fn rec(
        &mut self,
        name: &str,
        chunk: u64,
        snaps: usize,
        ops: usize,
        bytes_per_op: u64,
        store: Duration,
        raw: Option<Duration>,
    ) {
        let i = match self
            .rows
            .iter()
            .position(|r| r.name == name && r.chunk == chunk && r.snaps == snaps)
        {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    name: name.to_owned(),
                    chunk,
                    snaps,
                    ops,
                    bytes_per_op,
                    store: Vec::new(),
                    raw: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        let r = &mut self.rows[i];
        r.store.push(store.as_secs_f64());
        if let Some(raw) = raw {
            r.raw.push(raw.as_secs_f64());
        }
    }

    fn print(&self, from: usize) {
        for r in &self.rows[from..] {
            let s = median(&r.store) / r.ops as f64;
            let mibs = |t: f64| {
                if r.bytes_per_op == 0 {
                    "-".to_string()
                } else {
                    format!("{:.1}", r.bytes_per_op as f64 / t / MIB as f64)
                }
            };
            let (raw_us, raw_mibs, ratio) = if r.raw.is_empty() {
                ("-".to_string(), "-".to_string(), "-".to_string())
            } else {
                let w = median(&r.raw) / r.ops as f64;
                (format!("{:.1}", w * 1e6), mibs(w), format!("{:.2}", s / w))
            };
            println!(
                "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
                r.name,
                human(r.chunk),
                r.snaps,
                r.ops,
                s * 1e6,
                mibs(s),
                raw_us,
                raw_mibs,
                ratio
            );
        }
    }
}

fn header() {
    println!(
        "| case | chunk | snaps | ops/round | store µs/op | store MiB/s | raw µs/op | raw MiB/s | store/raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn human(b: u64) -> String {
    if b >= MIB && b / MIB * MIB == b {
        format!("{}M", b / MIB)
    } else {
        format!("{}K", b / KIB)
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// Raw access to the same files, bypassing the store.
struct Raw {
    origin: File,
}

impl Raw {
    fn write(&self, offsets: &[u64], len: u64, buf: &[u8]) -> Duration {
        time(|| {
            for &o in offsets {
                self.origin.write_all_at(&buf[..len as usize], o).unwrap();
            }
            self.origin.sync_data().unwrap();
        })
        .0
    }
    fn read(&self, offsets: &[u64], len: u64, buf: &mut [u8]) -> Duration {
        time(|| {
            for &o in offsets {
                self.origin
                    .read_exact_at(&mut buf[..len as usize], o)
                    .unwrap();
            }
        })
        .0
    }
    /// One 4 KiB write made durable: the smallest durable metadata update.
    fn sync_write(&self, off: u64, buf: &[u8]) -> Duration {
        time(|| {
            self.origin
                .write_all_at(&buf[..SMALL as usize], off)
                .unwrap();
            self.origin.sync_data().unwrap();
        })
        .0
    }
}

/// Create and fill the origin once (non-zero data so that copy-outs read real bytes).
fn make_origin(env: &Env) {
    let p = env.origin_path();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.set_len(env.origin_len).unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut buf = vec![0u8; MIB as usize];
    rng.fill(&mut buf[..]);
    for i in 0..env.origin_len / MIB {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all_at(&buf, i * MIB).unwrap();
    }
    f.sync_all().unwrap();
}

fn open_store(env: &Env, chunk: u64) -> (SharedStore, Raw) {
    let origin: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(&env.origin_path()).unwrap());
    let dev: Arc<dyn BlockDevice> =
        Arc::new(FileDevice::create(&env.store_path(), 4 * env.origin_len + 64 * MIB).unwrap());
    let s = Store::format(origin, dev, chunk as u32, StoreOptions::default()).unwrap();
    let raw = Raw {
        origin: OpenOptions::new()
            .read(true)
            .write(true)
            .open(env.origin_path())
            .unwrap(),
    };
    (SharedStore::new(s), raw)
}

/// `n` distinct chunks of `[0, region)`, a random 4 KiB-aligned offset in each.
fn random_offsets(rng: &mut SmallRng, chunk: u64, region: u64, n: usize) -> Vec<u64> {
    let mut chunks: Vec<u64> = (0..region / chunk).collect();
    chunks.shuffle(rng);
    chunks.truncate(n);
    chunks
        .into_iter()
        .map(|c| c * chunk + rng.gen_range(0..chunk / SMALL) * SMALL)
        .collect()
}

/// A new random 4 KiB offset inside the chunk of each offset.
fn same_chunks(rng: &mut SmallRng, chunk: u64, offs: &[u64]) -> Vec<u64> {
    offs.iter()
        .map(|o| o / chunk * chunk + rng.gen_range(0..chunk / SMALL) * SMALL)
        .collect()
}

fn store_write(s: &SharedStore, offsets: &[u64], len: u64, buf: &[u8]) -> Duration {
    time(|| {
        for &o in offsets {
            s.write(Dev::Origin(0), o, &buf[..len as usize]).unwrap();
        }
        flush(s);
    })
    .0
}

fn store_write_threads(s: &SharedStore, offsets: &[u64], buf: &[u8]) -> Duration {
    time(|| {
        std::thread::scope(|sc| {
            for part in offsets.chunks(offsets.len().div_ceil(THREADS)) {
                sc.spawn(move || {
                    for &o in part {
                        s.write(Dev::Origin(0), o, &buf[..SMALL as usize]).unwrap();
                    }
                });
            }
        });
        flush(s);
    })
    .0
}

fn store_read(s: &SharedStore, dev: Dev, offsets: &[u64], len: u64, buf: &mut [u8]) -> Duration {
    time(|| {
        for &o in offsets {
            s.read(dev, o, &mut buf[..len as usize]).unwrap();
        }
    })
    .0
}

/// A FLUSH of origin and store, through the store lock.
///
/// `SharedStore::flush` is not used: when nothing changed since the last commit,
/// `Store::commit` returns the last committed transaction, which is below the open one
/// that `SharedStore::commit` waits for, so `wait_durable` loops on fdatasync forever
/// (seen at 33bf158). `Store::flush` does the same work (origin fdatasync, commit).
fn flush(s: &SharedStore) {
    s.lock().flush().unwrap();
}

/// Metadata and data in use at one moment.
struct Meta {
    blocks: u64,
    meta_chunks: u64,
    data_chunks: u64,
}

impl Meta {
    fn now(s: &SharedStore) -> Meta {
        let mut st = s.lock();
        let blocks = st.metadata_blocks().unwrap().len() as u64;
        let u = st.status();
        Meta {
            blocks,
            meta_chunks: u.nr_meta_chunks,
            data_chunks: u.nr_used - u.nr_meta_chunks,
        }
    }
    /// Since `before`: (node bytes referenced, metadata-chunk bytes allocated, data
    /// chunks added), the first two per data chunk added.
    fn per_chunk(&self, before: &Meta, chunk: u64) -> (f64, f64, u64) {
        let d = self.data_chunks.saturating_sub(before.data_chunks).max(1);
        let b = self.blocks as f64 - before.blocks as f64;
        let m = self.meta_chunks as f64 - before.meta_chunks as f64;
        (b * 4096.0 / d as f64, m * chunk as f64 / d as f64, d)
    }
}

/// One scenario: a fresh store with `chunk`-byte chunks, `snaps - 1` older snapshots
/// (each followed by a 1 MiB origin write, so that addresses carry several elements),
/// then `rounds` rounds of: create a snapshot, random 4 KiB first writes (copy-out,
/// one thread and `THREADS` threads), steady-state 4 KiB writes to the same chunks,
/// sequential 1 MiB first writes and steady writes, snapshot reads, delete of the
/// round's snapshot and its background pass. With `snaps == 0` no snapshot at all.
fn scenario(env: &Env, t: &mut Table, chunk: u64, snaps: usize) {
    let (s, raw) = open_store(env, chunk);
    let mut rng = SmallRng::seed_from_u64(chunk ^ (snaps as u64) << 32);
    let mut buf = vec![0u8; LARGE as usize];
    rng.fill(&mut buf[..]);
    let half = env.origin_len / 2;
    let mut older: Vec<SnapId> = Vec::new();
    let (setup, ()) = time(|| {
        for i in 1..snaps {
            older.push(
                s.create_snapshot(&format!("old{i}"), None, i as u64)
                    .unwrap(),
            );
            let o = rng.gen_range(0..env.origin_len / LARGE) * LARGE;
            s.write(Dev::Origin(0), o, &buf).unwrap();
        }
        flush(&s);
    });
    if snaps > 1 {
        eprintln!(
            "  chunk {} snaps {snaps}: setup of {} older snapshots took {:.2}s",
            human(chunk),
            snaps - 1,
            setup.as_secs_f64()
        );
    }
    // Random writes go to the first half of the origin, sequential ones to the second.
    let region_chunks = (half / chunk) as usize;
    let nrand = MAX_RANDOM_BATCH.min(region_chunks / 4).max(1);
    let mut meta_seq = Vec::new();
    let mut meta_rand = None;
    for round in 0..env.rounds {
        let snap = if snaps > 0 {
            let (d, id) = time(|| {
                s.create_snapshot(&format!("round{round}"), None, 1000 + round as u64)
                    .unwrap()
            });
            let rawd = raw.sync_write(env.origin_len - SMALL, &buf);
            t.rec("snapshot create", chunk, snaps, 1, 0, d, Some(rawd));
            Some(id)
        } else {
            None
        };
        let first = if snaps > 0 { "first write" } else { "write" };
        // Two disjoint sets of chunks: one for a single writer, one for THREADS.
        let both = random_offsets(&mut rng, chunk, half, 2 * nrand);
        let (one, many) = both.split_at(nrand);
        let d = store_write(&s, one, SMALL, &buf);
        let r = raw.write(one, SMALL, &buf);
        t.rec(
            &format!("4K random {first}"),
            chunk,
            snaps,
            nrand,
            SMALL,
            d,
            Some(r),
        );
        let d = store_write_threads(&s, many, &buf);
        let r = raw.write(many, SMALL, &buf);
        t.rec(
            &format!("4K random {first}, {THREADS} threads"),
            chunk,
            snaps,
            nrand,
            SMALL,
            d,
            Some(r),
        );
        let again = same_chunks(&mut rng, chunk, one);
        let d = store_write(&s, &again, SMALL, &buf);
        let r = raw.write(&again, SMALL, &buf);
        t.rec("4K random steady", chunk, snaps, nrand, SMALL, d, Some(r));

        let seq_bytes = SEQ_BYTES.min(half / 2);
        let nseq = (seq_bytes / LARGE) as usize;
        let start = half + rng.gen_range(0..=(half - seq_bytes) / LARGE) * LARGE;
        let seq: Vec<u64> = (0..nseq as u64).map(|i| start + i * LARGE).collect();
        let m0 = Meta::now(&s);
        let d = store_write(&s, &seq, LARGE, &buf);
        if snaps > 0 {
            meta_seq.push(Meta::now(&s).per_chunk(&m0, chunk));
        }
        let r = raw.write(&seq, LARGE, &buf);
        t.rec(
            &format!("1M seq {first}"),
            chunk,
            snaps,
            nseq,
            LARGE,
            d,
            Some(r),
        );
        let d = store_write(&s, &seq, LARGE, &buf);
        let r = raw.write(&seq, LARGE, &buf);
        t.rec("1M seq steady", chunk, snaps, nseq, LARGE, d, Some(r));

        let dev = snap.map(Dev::Snap).unwrap_or(Dev::Origin(0));
        let what = if snaps > 0 { "snapshot" } else { "origin" };
        let reads: Vec<u64> = (0..READS)
            .map(|_| rng.gen_range(0..half / SMALL) * SMALL)
            .collect();
        let mut rbuf = vec![0u8; LARGE as usize];
        let d = store_read(&s, dev, &reads, SMALL, &mut rbuf);
        let r = raw.read(&reads, SMALL, &mut rbuf);
        t.rec(
            &format!("4K random read, {what}"),
            chunk,
            snaps,
            READS,
            SMALL,
            d,
            Some(r),
        );
        let d = store_read(&s, dev, &seq, LARGE, &mut rbuf);
        let r = raw.read(&seq, LARGE, &mut rbuf);
        t.rec(
            &format!("1M seq read, {what}"),
            chunk,
            snaps,
            nseq,
            LARGE,
            d,
            Some(r),
        );

        if snaps > 0 && round == 0 {
            // Metadata cost of scattered copy-outs (one element, no extent, per chunk).
            let n = META_WRITES.min((env.origin_len / chunk / 4) as usize);
            let offs = random_offsets(&mut rng, chunk, env.origin_len, n);
            let m0 = Meta::now(&s);
            store_write_threads(&s, &offs, &buf);
            meta_rand = Some(Meta::now(&s).per_chunk(&m0, chunk));
        }

        let rawd = (0..16)
            .map(|i| raw.sync_write(env.origin_len - (i + 1) * SMALL, &buf))
            .sum::<Duration>()
            / 16;
        t.rec(
            "ref: 4K pwrite+fdatasync",
            chunk,
            snaps,
            1,
            SMALL,
            rawd,
            None,
        );
        if let Some(id) = snap {
            let (d, _) = time(|| s.delete_snapshot(id).unwrap());
            t.rec("snapshot delete", chunk, snaps, 1, 0, d, Some(rawd));
            let (d, _) = time(|| s.lock().run_background(256).unwrap());
            t.rec("background pass after delete", chunk, snaps, 1, 0, d, None);
        }
    }
    if snaps > 0 {
        let (rb, ra, rn) = meta_rand.unwrap_or((0.0, 0.0, 0));
        let seq = |i: usize| median(&meta_seq.iter().map(|m| [m.0, m.1][i]).collect::<Vec<_>>());
        t.notes.push(format!(
            "| {} | {snaps} | {rb:.0} ({rn} chunks) | {ra:.0} | {:.0} | {:.0} | {:.2} |",
            human(chunk),
            seq(0),
            seq(1),
            rb * (MIB * 1024 / chunk) as f64 / MIB as f64,
        ));
    }
    let st = s.lock().status();
    eprintln!(
        "  chunk {} snaps {snaps}: done; {} of {} chunks used ({} metadata), cache {} nodes, {} hits {} misses",
        human(chunk),
        st.nr_used,
        st.nr_chunks,
        st.nr_meta_chunks,
        st.cache_nodes,
        st.cache_hits,
        st.cache_misses
    );
}

/// Steady-state origin writes (every chunk already copied out for every snapshot):
/// the cost of `origin_prepare` deciding "nothing to copy", per request. A fresh
/// store with `snaps` snapshots (each followed by a 1 MiB origin write, so some
/// addresses carry several elements), then an untimed 1 MiB pass over the whole
/// origin and a flush. Timed: `READS` 4 KiB writes at random offsets, and one 1 MiB
/// sequential pass over the whole origin, through `SharedStore::write`; the flush
/// after each batch is not timed (it writes nothing to the store), so the rows are
/// the per-request CPU path plus the buffered `pwrite`, beside the same `pwrite`s raw.
fn steady(env: &Env, t: &mut Table, chunk: u64, snaps: usize) {
    let (s, raw) = open_store(env, chunk);
    let mut rng = SmallRng::seed_from_u64(7 ^ (snaps as u64) << 32);
    let mut buf = vec![0u8; LARGE as usize];
    rng.fill(&mut buf[..]);
    let seq: Vec<u64> = (0..env.origin_len / LARGE).map(|i| i * LARGE).collect();
    for i in 0..snaps {
        s.create_snapshot(&format!("s{i}"), None, i as u64).unwrap();
        let o = rng.gen_range(0..env.origin_len / LARGE) * LARGE;
        s.write(Dev::Origin(0), o, &buf).unwrap();
    }
    for &o in &seq {
        s.write(Dev::Origin(0), o, &buf).unwrap();
    }
    flush(&s);
    steady_rounds(env, t, &s, &raw, &mut rng, &buf, &seq, chunk, snaps);
}

/// The timed part of [`steady`] (a function of its own, so that
/// `valgrind --tool=callgrind --toggle-collect='*steady_rounds*'` counts it alone).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn steady_rounds(
    env: &Env,
    t: &mut Table,
    s: &SharedStore,
    raw: &Raw,
    rng: &mut SmallRng,
    buf: &[u8],
    seq: &[u64],
    chunk: u64,
    snaps: usize,
) {
    for _ in 0..env.rounds {
        let offs: Vec<u64> = (0..READS)
            .map(|_| rng.gen_range(0..env.origin_len / SMALL) * SMALL)
            .collect();
        let d = time(|| {
            for &o in &offs {
                s.write(Dev::Origin(0), o, &buf[..SMALL as usize]).unwrap();
            }
        })
        .0;
        flush(s);
        let r = time(|| {
            for &o in &offs {
                raw.origin.write_all_at(&buf[..SMALL as usize], o).unwrap();
            }
        })
        .0;
        raw.origin.sync_data().unwrap();
        t.rec(
            "steady 4K random write",
            chunk,
            snaps,
            READS,
            SMALL,
            d,
            Some(r),
        );
        let d = time(|| {
            for &o in seq {
                s.write(Dev::Origin(0), o, buf).unwrap();
            }
        })
        .0;
        flush(s);
        let r = time(|| {
            for &o in seq {
                raw.origin.write_all_at(buf, o).unwrap();
            }
        })
        .0;
        raw.origin.sync_data().unwrap();
        t.rec(
            "steady 1M seq write",
            chunk,
            snaps,
            seq.len(),
            LARGE,
            d,
            Some(r),
        );
        // The store's part alone: the lock and `origin_prepare`, no data written.
        let d = time(|| {
            for &o in &offs {
                assert!(s.lock().origin_prepare(0, o, SMALL).unwrap().is_none());
            }
        })
        .0;
        t.rec("steady prepare only, 4K", chunk, snaps, READS, 0, d, None);
        let d = time(|| {
            for &o in seq {
                assert!(s.lock().origin_prepare(0, o, LARGE).unwrap().is_none());
            }
        })
        .0;
        t.rec(
            "steady prepare only, 1M",
            chunk,
            snaps,
            seq.len(),
            0,
            d,
            None,
        );
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let env = Env::from_env();
    eprintln!(
        "store benchmark: files in {}, origin {} MiB, {} rounds per case",
        env.dir.display(),
        env.origin_len / MIB,
        env.rounds
    );
    std::fs::create_dir_all(&env.dir).unwrap();
    make_origin(&env);
    let mut t = Table::default();
    let total = Instant::now();
    header();
    if want("main") {
        for snaps in [0, 1, 16, 256] {
            let from = t.rows.len();
            scenario(&env, &mut t, 64 * KIB, snaps);
            t.print(from);
        }
    }
    if want("steady") {
        let from = t.rows.len();
        let counts: Vec<usize> = std::env::var("UBLK_SNAP_BENCH_SNAPS")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![0, 1, 16, 256]);
        for snaps in counts {
            steady(&env, &mut t, 64 * KIB, snaps);
        }
        t.print(from);
        // Each row against the same row with no snapshot (the VM target: >= 0.9x).
        for r in &t.rows[from..] {
            if let Some(base) = t.rows[from..]
                .iter()
                .find(|b| b.name == r.name && b.snaps == 0)
            {
                println!(
                    "{} at {} snapshots: {:.2}x the no-snapshot throughput",
                    r.name,
                    r.snaps,
                    median(&base.store) / median(&r.store)
                );
            }
        }
    }
    if want("sweep") {
        for chunk in [4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB] {
            if chunk == 64 * KIB && want("main") {
                continue; // measured above
            }
            let from = t.rows.len();
            scenario(&env, &mut t, chunk, 1);
            t.print(from);
        }
    }
    println!();
    println!(
        "| chunk | snaps | random copy-out: node bytes / chunk | metadata-chunk bytes / chunk | \
         1M seq copy-out: node bytes / chunk | metadata-chunk bytes / chunk | \
         node MiB per GiB copied at random |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in &t.notes {
        println!("{n}");
    }
    remove(&env.origin_path());
    remove(&env.store_path());
    eprintln!("total {:.1}s", total.elapsed().as_secs_f64());
}

fn remove(p: &Path) {
    let _ = std::fs::remove_file(p);
}
