//! The cost of `diff` and `map` (issues 12 and 14): a store with 10,000 rolling
//! snapshots (4 origin 4 KiB writes between them, each a copy-out), built for several
//! origin sizes, then:
//! - `diff` of two neighbouring snapshots (the delta an incremental send carries),
//!   over many random pairs: p50, p99, max; and of the oldest against the newest;
//! - `map` of the oldest snapshot over the whole device (what an NBD block-status
//!   walk of the export asks), and over one 64 MiB request at a random place.
//!
//! Nothing reads data, so the origin is a sparse file of the given size: the cost
//! must follow the elements involved, not the device size.
//!
//! `cargo bench --bench diff`; `DIFF_SNAPSHOTS=N` (default 10000), `DIFF_SIZES_GIB`
//! (comma-separated, default `1,64,1024`), `UBLK_SNAP_BENCH_DIR=DIR` for the files
//! (default /dev/shm when it exists, else a tempdir).
use blockdev::FileDevice;
use exception_store::{Dev, SharedStore, SnapInfo, Store, StoreOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{sync::Arc, time::Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let n: u64 = std::env::var("DIFF_SNAPSHOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sizes: Vec<u64> = std::env::var("DIFF_SIZES_GIB")
        .unwrap_or_else(|_| "1,64,1024".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let base = std::env::var("UBLK_SNAP_BENCH_DIR").unwrap_or_else(|_| {
        if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir().display().to_string()
        }
    });
    let cs = 64 * 1024u64;
    println!("diff/map: {n} rolling snapshots, 4 origin 4K writes between, 64 KiB chunks, files in {base}");
    println!(
        "{:>9} {:>12} {:>12} {:>12} {:>14} {:>14} {:>14} {:>10}",
        "origin",
        "diff p50",
        "diff p99",
        "diff max",
        "diff old-new",
        "map whole",
        "map 64 MiB",
        "extents"
    );
    for gib in sizes {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let origin_len = gib << 30;
        let (op, sp) = (dir.path().join("origin"), dir.path().join("store"));
        let origin = FileDevice::create(&op, origin_len).expect("origin");
        let dev = FileDevice::create(&sp, 4 << 30).expect("store");
        let store = Store::format(
            Arc::new(origin),
            Arc::new(dev),
            cs as u32,
            StoreOptions::default(),
        )
        .expect("format");
        let sh = SharedStore::new(store);
        let mut rng = StdRng::seed_from_u64(11);
        let data = vec![0x5au8; 4096];
        for i in 0..n {
            sh.create_snapshot(&format!("auto-{i:06}"), None, i)
                .expect("create");
            for _ in 0..4 {
                let off = rng.gen_range(0..origin_len / 4096) * 4096;
                sh.write(Dev::Origin, off, &data).expect("write");
            }
        }
        let snaps: Vec<SnapInfo> = sh.lock().snapshots();
        let size = sh.size();
        let mut d = Vec::new();
        for _ in 0..200 {
            let i = rng.gen_range(0..snaps.len() - 1);
            let (a, b) = (Dev::Snap(snaps[i].id), Dev::Snap(snaps[i + 1].id));
            let t = Instant::now();
            let runs = sh.diff(a, b, 0, size).expect("diff");
            d.push(ms(t));
            assert!(runs.len() <= 4, "neighbours differ by their 4 writes");
        }
        let (old, new) = (Dev::Snap(snaps[0].id), Dev::Snap(snaps[snaps.len() - 1].id));
        let t = Instant::now();
        let all = sh.diff(old, new, 0, size).expect("diff");
        let old_new = ms(t);
        let t = Instant::now();
        let m = sh.map(old, 0, size).expect("map");
        let whole = ms(t);
        let off = rng.gen_range(0..(size - (64 << 20)) / cs) * cs;
        let t = Instant::now();
        sh.map(old, off, 64 << 20).expect("map");
        let window = ms(t);
        println!(
            "{:>6}GiB {:>10.3}ms {:>10.3}ms {:>10.3}ms {:>12.2}ms {:>12.2}ms {:>12.3}ms {:>10}",
            gib,
            pct(&mut d, 0.5),
            pct(&mut d, 0.99),
            pct(&mut d, 1.0),
            old_new,
            whole,
            window,
            m.len()
        );
        let _ = all;
    }
}
