//! Stalls of other I/O while a long operation runs (issue 20): the latency of 4 KiB
//! reads of a snapshot, and of settled 4 KiB origin writes elsewhere, while one
//! thread zeroes 1 GiB of the origin (a WRITE_ZEROES through ublk, NBD or a
//! received zero record: `SharedStore::write_zeroes`, which takes the store lock per
//! 16 MiB step and writes the zeros without it). Prints p50/p99/max of each, and the
//! same reads with nothing else running as the baseline.
//!
//! `cargo bench --bench stall`; `STALL_GIB=N` zeroes N GiB (default 1),
//! `UBLK_SNAP_BENCH_DIR=DIR` for the files (default: a tempdir).
use blockdev::FileDevice;
use exception_store::{Dev, SharedStore, Store, StoreOptions};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

#[path = "common/latency.rs"]
mod latency;
use latency::report;

/// Latencies (ms) of `op` run over and over until `stop`, or `n` times.
fn sample(stop: &AtomicBool, n: Option<usize>, mut op: impl FnMut(u64)) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) && n.is_none_or(|n| out.len() < n) {
        let t = Instant::now();
        op(i);
        out.push(t.elapsed().as_secs_f64() * 1e3);
        i += 1;
    }
    out
}

fn main() {
    let gib: u64 = std::env::var("STALL_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let len = gib << 30;
    let dir = match std::env::var("UBLK_SNAP_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("tempdir");
    let origin =
        Arc::new(FileDevice::create(&dir.path().join("origin"), len + (64 << 20)).expect("origin"));
    let dev =
        Arc::new(FileDevice::create(&dir.path().join("store"), len + (256 << 20)).expect("store"));
    let opts = StoreOptions::default();
    let s = Arc::new(SharedStore::new(
        Store::format(origin, dev, 64 << 10, opts).expect("format"),
    ));
    // a snapshot with data of its own to read, and settled origin chunks past the
    // zeroed range to write
    let snap = s.create_snapshot("a", None, 0).expect("snapshot");
    s.write(Dev::Snap(snap), 0, &vec![5u8; 64 << 20])
        .expect("snapshot data");
    s.write(Dev::Origin(0), len, &vec![6u8; 64 << 20])
        .expect("origin data");
    s.write(Dev::Origin(0), len, &vec![7u8; 64 << 20])
        .expect("settle");
    s.commit().expect("commit");
    let blocks = (64u64 << 20) / 4096;
    let read = |i: u64| {
        let mut b = [0u8; 4096];
        s.read(Dev::Snap(snap), (i * 7919 % blocks) * 4096, &mut b)
            .expect("read");
    };
    let idle = AtomicBool::new(false);
    let mut base = sample(&idle, Some(20_000), read);
    report("snapshot 4 KiB reads, idle", &mut base);

    let stop = Arc::new(AtomicBool::new(false));
    let zeroer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            s.write_zeroes(Dev::Origin(0), 0, len)
                .expect("write_zeroes");
            stop.store(true, Ordering::SeqCst);
            t.elapsed()
        })
    };
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            sample(&stop, None, |i| {
                let at = len + (i * 7919 % blocks) * 4096;
                s.write(Dev::Origin(0), at, &[8u8; 4096]).expect("write");
            })
        })
    };
    let mut reads = sample(&stop, None, read);
    let took = zeroer.join().expect("zeroer");
    let mut writes = writer.join().expect("writer");
    println!(
        "WRITE_ZEROES of {gib} GiB of the origin: {:.2} s",
        took.as_secs_f64()
    );
    report("snapshot 4 KiB reads during it", &mut reads);
    report("settled origin 4 KiB writes during it", &mut writes);
}
