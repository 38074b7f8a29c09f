//! The group snapshot's fence (issue 21): the latency of `create_group` over N
//! origins (default 4) with writes in flight on each, and the longest stall it puts
//! on those writes. N writer threads (one per origin) write 4 KiB at random chunks
//! of their origin, over and over; one thread takes a group snapshot of all N every
//! 100 ms. Prints p50/p99/max of the creates and of the writes, and the writes with
//! no create running as the baseline, and each create's write stall (the longest
//! write in flight during it) as p50/p99/max over the creates. A create flushes its origins (what it captures must be
//! durable first), so its time follows the writes since the last flush: the first,
//! after the 3 s baseline, is reported apart.
//!
//! `cargo bench --bench group`; `GROUP_ORIGINS=N` origins (default 4; issue 21's
//! target is 16), `GROUP_ROUNDS=N` creates (default 50), `UBLK_SNAP_BENCH_DIR=DIR`
//! for the files (default: a tempdir).
use blockdev::FileDevice;
use exception_store::{Dev, SharedStore, Store, StoreOptions};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const ORIGIN: u64 = 256 << 20;
const CHUNK: u32 = 64 << 10;

#[path = "common/latency.rs"]
mod latency;
use latency::report;

/// One timed operation: when it started and ended, ms since the bench's `t0`.
#[derive(Clone, Copy)]
struct Span {
    start: f64,
    end: f64,
}

impl Span {
    fn ms(&self) -> f64 {
        self.end - self.start
    }
}

/// Run one writer per origin of `ks` until `stop`; their writes.
fn writers(
    shared: &Arc<SharedStore>,
    ks: &[u32],
    stop: &Arc<AtomicBool>,
    t0: Instant,
) -> Vec<Span> {
    let handles: Vec<_> = ks
        .iter()
        .map(|&k| {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ k as u64;
                let data = vec![k as u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = (x % (ORIGIN / 4096)) * 4096;
                    let start = since(t0);
                    shared.write(Dev::Origin(k), off, &data).expect("write");
                    out.push(Span {
                        start,
                        end: since(t0),
                    });
                }
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer"))
        .collect()
}

/// Milliseconds since `t0`.
fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// Each create's write stall: the longest write in flight during it (started
/// before the create ended, ended after it started), ms; 0 when none was.
fn stalls(creates: &[Span], writes: &[Span]) -> Vec<f64> {
    creates
        .iter()
        .map(|c| {
            writes
                .iter()
                .filter(|w| w.start < c.end && w.end > c.start)
                .map(Span::ms)
                .fold(0.0, f64::max)
        })
        .collect()
}

/// The number in environment variable `name`, or `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = env_or("GROUP_ROUNDS", 50);
    let nr_origins = env_or("GROUP_ORIGINS", 4).max(1) as u32;
    let dir = match std::env::var("UBLK_SNAP_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("tempdir");
    let file = |name: &str, len: u64| {
        Arc::new(FileDevice::create(&dir.path().join(name), len).expect("file"))
    };
    let mut s = Store::format(
        file("o0", ORIGIN),
        // sparse; room for every origin copied out twice (tmpfs runs copy fast)
        file("store", (2 * ORIGIN * u64::from(nr_origins)).max(8 << 30)),
        CHUNK,
        StoreOptions::default(),
    )
    .expect("format");
    for k in 1..nr_origins {
        s.add_origin(&format!("o{k}"), file(&format!("o{k}"), ORIGIN), "", 0)
            .expect("add");
    }
    let shared = Arc::new(SharedStore::new(s));
    let ks: Vec<u32> = (0..nr_origins).collect();
    let t0 = Instant::now();
    // baseline: the writers alone (after one group, so that writes copy out as below)
    shared.create_group("g0", &ks, 0).expect("group");
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut alone: Vec<f64> = writers(&shared, &ks, &stop, t0)
        .iter()
        .map(Span::ms)
        .collect();
    timer.join().expect("timer");
    // with a group create every 100 ms
    let stop = Arc::new(AtomicBool::new(false));
    let creator = {
        let (shared, stop, ks) = (shared.clone(), stop.clone(), ks.clone());
        std::thread::spawn(move || {
            let mut out = Vec::new();
            for n in 1..=rounds {
                let start = since(t0);
                shared
                    .create_group(&format!("g{n}"), &ks, n as u64)
                    .expect("group");
                out.push(Span {
                    start,
                    end: since(t0),
                });
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, Ordering::SeqCst);
            out
        })
    };
    let during_spans = writers(&shared, &ks, &stop, t0);
    let create_spans = creator.join().expect("creator");
    let mut stall = stalls(&create_spans, &during_spans);
    let mut during: Vec<f64> = during_spans.iter().map(Span::ms).collect();
    let mut creates: Vec<f64> = create_spans.iter().map(Span::ms).collect();
    let slowest = creates
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i + 1);
    println!(
        "{nr_origins} origins of {} MiB, chunk {} KiB, 4 KiB writes at random offsets, one writer each",
        ORIGIN >> 20,
        CHUNK >> 10
    );
    report("writes alone", &mut alone);
    report("writes with a group create every 100 ms", &mut during);
    // the first create flushes the origins' writes of the 3 s baseline (page cache)
    let mut stall_after_first = stall[1.min(stall.len())..].to_vec();
    report(
        "write stall per create (its longest write in flight)",
        &mut stall,
    );
    report(
        "write stall per create, the first left out",
        &mut stall_after_first,
    );
    let mut after_first = creates[1.min(creates.len())..].to_vec();
    println!("the slowest create is number {slowest} of {rounds}");
    report(
        &format!("group create ({nr_origins} members, one commit)"),
        &mut creates,
    );
    report(
        "group create, the first (after 3 s of writes) left out",
        &mut after_first,
    );
}
