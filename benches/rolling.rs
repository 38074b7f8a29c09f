//! Rolling snapshots at scale (issue 4): a snapshot every 5 minutes of simulated time
//! up to 10,000 live ones, origin writes between them, pruning running, all on files
//! through `SharedStore`. First the one-snapshot case: origin 4 KiB write latency
//! with a single snapshot (the baseline of the "p99 within 2x" target). Then, per
//! block of 1,000 snapshots: snapshot create latency (p50/p99/max), origin 4 KiB
//! write latency (p50/p99, first writes after the snapshot included, and p99 as a
//! ratio to the one-snapshot case), the time to list every snapshot, and the
//! process's resident memory; then the cost of pruning and of deleting one old
//! snapshot of the full store.
//!
//! `cargo bench --bench rolling`; `ROLLING_SNAPSHOTS=N` (default 10000),
//! `ROLLING_WRITES=N` origin writes per interval (default 4),
//! `UBLK_SNAP_BENCH_DIR=DIR` for the files (default: a tempdir).
use blockdev::FileDevice;
use exception_store::{retention, Dev, SharedStore, Store, StoreOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{sync::Arc, time::Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0)
}

fn main() {
    let n = env("ROLLING_SNAPSHOTS", 10_000);
    let writes = env("ROLLING_WRITES", 4);
    let dir = match std::env::var("UBLK_SNAP_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("temp dir");
    let origin_len = 1u64 << 30;
    let cs = 64 * 1024u64;
    let (op, sp) = (dir.path().join("origin"), dir.path().join("store"));
    let origin = FileDevice::create(&op, origin_len).expect("origin");
    let dev = FileDevice::create(&sp, 4 << 30).expect("store");
    let cache_mib = 64;
    let opts = StoreOptions {
        cache_bytes: cache_mib << 20,
        ..StoreOptions::default()
    };
    let store = Store::format(Arc::new(origin), Arc::new(dev), cs as u32, opts).expect("format");
    let sh = SharedStore::new(store);
    let mut rng = StdRng::seed_from_u64(7);
    let data = vec![0x5au8; 4096];
    // The one-snapshot case: the same writes (each a copy-out) with one snapshot, as
    // many as a block of 1,000 snapshots has (a p99 of fewer samples reads lower).
    let base = sh.create_snapshot("one", None, 1).expect("create");
    let mut ws: Vec<f64> = (0..1000 * writes)
        .map(|_| {
            let off = rng.gen_range(0..origin_len / 4096) * 4096;
            let t = Instant::now();
            sh.write(Dev::Origin(0), off, &data).expect("write");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let baseline_p99 = pct(&mut ws, 0.99);
    println!(
        "one snapshot: origin 4K write p50 {:.3} ms, p99 {baseline_p99:.3} ms ({} writes)",
        pct(&mut ws, 0.5),
        ws.len()
    );
    sh.delete_snapshot(base).expect("delete");
    while sh.background_step(64).expect("pass") {}
    sh.commit().expect("commit");
    ws.clear();
    let policy = retention::Policy {
        last: n as usize,
        ..Default::default()
    };
    println!("rolling: {n} snapshots every 5 min (simulated), {writes} origin 4K writes between, 1 GiB origin, 64 KiB chunks, cache {cache_mib} MiB");
    println!(
        "{:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "snaps",
        "create p50",
        "create p99",
        "create max",
        "write p50",
        "write p99",
        "p99/one",
        "list",
        "RSS MiB"
    );
    let mut creates = Vec::new();
    let t0 = 1_800_000_000u64;
    let total = n + n / 20; // run past N so that pruning deletes
    let mut pruned = 0;
    let mut prune_time = 0.0;
    for i in 0..total {
        let t = Instant::now();
        sh.create_snapshot(&format!("auto-{i:06}"), None, t0 + i * 300)
            .expect("create");
        creates.push(t.elapsed().as_secs_f64() * 1e3);
        for _ in 0..writes {
            let off = rng.gen_range(0..origin_len / 4096) * 4096;
            let t = Instant::now();
            sh.write(Dev::Origin(0), off, &data).expect("write");
            ws.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // prune as cron would, every 12 snapshots (an hour)
        if i % 12 == 11 {
            let t = Instant::now();
            let snaps = sh.lock().snapshots();
            for id in retention::victims(&snaps, &policy) {
                sh.delete_snapshot(id).expect("prune");
                pruned += 1;
            }
            while sh.background_step(64).expect("pass") {}
            sh.commit().expect("commit");
            prune_time += t.elapsed().as_secs_f64();
        }
        let block = if i < 1000 { 100 } else { 1000 };
        if (i + 1) % block == 0 || i + 1 == total {
            let t = Instant::now();
            let list = sh.lock().snapshots();
            let rendered: usize = list
                .iter()
                .map(|s| format!("{} {} {}\n", s.name, s.created, s.hold).len())
                .sum();
            let list_ms = t.elapsed().as_secs_f64() * 1e3;
            let w99 = pct(&mut ws, 0.99);
            println!(
                "{:>7} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.3}ms {:>8.3}ms {:>7.2}x {:>8.1}ms {:>8.1}",
                list.len(),
                pct(&mut creates, 0.5),
                pct(&mut creates, 0.99),
                pct(&mut creates, 1.0),
                pct(&mut ws, 0.5),
                w99,
                w99 / baseline_p99,
                list_ms,
                rss_mib()
            );
            let _ = rendered;
            creates.clear();
            ws.clear();
        }
    }
    println!("pruned {pruned} snapshots in {prune_time:.2} s total (deletes + passes)");
    // deleting one old snapshot of the full store
    let old = sh.lock().snapshots()[0].id;
    let t = Instant::now();
    sh.delete_snapshot(old).expect("delete");
    let mut steps = 0;
    while sh.background_step(1).expect("pass") {
        steps += 1;
    }
    sh.commit().expect("commit");
    let st = sh.lock().status();
    println!(
        "delete one old snapshot: {:.1} ms, {steps} pass steps (addresses visited); store: {} chunks used of {}, {} versions",
        t.elapsed().as_secs_f64() * 1e3,
        st.nr_used,
        st.nr_chunks,
        st.nr_versions
    );
}
