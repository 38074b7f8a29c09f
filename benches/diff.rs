//! The cost of `diff` and `map` (issues 12 and 14): a store with 10,000 rolling
//! snapshots (4 origin 4 KiB writes between them, each a copy-out), built for several
//! origin sizes, then:
//! - `diff` of two neighbouring snapshots (the delta an incremental send carries),
//!   over many random pairs: p50, p99, max; and of the oldest against the newest;
//! - `map` of the oldest snapshot over the whole device (what an NBD block-status
//!   walk of the export asks), and over one 64 MiB request at a random place.
//!
//! - block status through the NBD server (`ublk_snapd::nbd`, on a Unix socket) with
//!   real clients: `nbdsh` (libnbd) times 200 `NBD_CMD_BLOCK_STATUS` requests of
//!   64 MiB at random places with `base:allocation` and `qemu:allocation-depth`
//!   (p50, p99), and `nbdinfo --map` walks the whole export in each context (the
//!   walk's wall time, process start included). Skipped, with a note, where
//!   `nbdsh`/`nbdinfo` are not installed (`apt-get install libnbd-bin python3-libnbd`).
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
use std::{path::Path, process::Command, sync::Arc, time::Instant};
use ublk_snapd::nbd::{Export, Exports, Listener, Server};

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
    let mut nbd_rows = Vec::new();
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
        let sh = Arc::new(SharedStore::new(store));
        let mut rng = StdRng::seed_from_u64(11);
        let data = vec![0x5au8; 4096];
        for i in 0..n {
            sh.create_snapshot(&format!("auto-{i:06}"), None, i)
                .expect("create");
            for _ in 0..4 {
                let off = rng.gen_range(0..origin_len / 4096) * 4096;
                sh.write(Dev::Origin(0), off, &data).expect("write");
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
        nbd_phase(&sh, old, dir.path(), &mut nbd_rows, gib);
    }
    println!();
    println!("block status through the NBD server (oldest snapshot exported):");
    println!(
        "{:>9} {:>14} {:>14} {:>16} {:>16}",
        "origin", "64 MiB p50", "64 MiB p99", "nbdinfo --map", "--map=depth"
    );
    for r in nbd_rows {
        println!("{r}");
    }
}

/// The python run by `nbdsh`: 200 block-status requests of 64 MiB at random
/// chunk-aligned places, both contexts, and their latencies' p50 and p99 in ms.
const NBDSH_TIMING: &str = r#"
import random, time
random.seed(7)
size = h.get_size()
seen = []
def cb(meta, off, ents, err):
    seen.append(len(ents))
    return 0
lat = []
for i in range(200):
    off = random.randrange(0, (size - (64 << 20)) // 65536) * 65536
    t = time.perf_counter()
    h.block_status(64 << 20, off, cb)
    lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
assert len(seen) >= 400, "a reply per context"
print("%.3f %.3f" % (lat[100], lat[197]))
"#;

/// `tool` with the system's interpreter first on `PATH`: Debian's `nbdsh` is a
/// python script for `/usr/bin/python3` (python3-libnbd), which another `python3`
/// earlier on `PATH` (pyenv, a venv) cannot import.
fn nbd_tool(tool: &str) -> Command {
    let mut c = Command::new(tool);
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("/usr/bin:{path}"));
    c
}

/// Export `dev` of `sh` over a Unix socket in `dir` and time block status with real
/// clients; one table row in `rows` (or a note why not).
fn nbd_phase(sh: &Arc<SharedStore>, dev: Dev, dir: &Path, rows: &mut Vec<String>, gib: u64) {
    let have = |tool: &str| {
        nbd_tool(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("nbdsh") || !have("nbdinfo") {
        rows.push(format!(
            "{gib:>6}GiB skipped: nbdsh and nbdinfo not installed (libnbd-bin, python3-libnbd)"
        ));
        return;
    }
    let sock = dir.join("nbd.sock");
    let exports = Exports::new();
    exports.insert(Export {
        name: "old".into(),
        dev,
        snapshot: Some("oldest".into()),
        writable: false,
    });
    let server = Server::start(
        sh.clone(),
        exports,
        vec![Listener::unix(&sock).expect("nbd socket")],
        ublk_snapd::nbd::Security::default(),
    )
    .expect("nbd server");
    let uri = format!("nbd+unix:///old?socket={}", sock.display());
    let out = nbd_tool("nbdsh")
        .args(["-c", "h.add_meta_context('base:allocation')"])
        .args(["-c", "h.add_meta_context('qemu:allocation-depth')"])
        .args(["-c", &format!("h.connect_uri({uri:?})")])
        .args(["-c", NBDSH_TIMING])
        .output()
        .expect("nbdsh");
    let timing = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "nbdsh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let walk = |ctx: &str| {
        let t = Instant::now();
        let o = Command::new("nbdinfo")
            .arg(format!("--map={ctx}"))
            .arg(&uri)
            .output()
            .expect("nbdinfo");
        assert!(o.status.success(), "nbdinfo --map={ctx} failed");
        let lines = String::from_utf8_lossy(&o.stdout).lines().count();
        (ms(t), lines)
    };
    let (alloc, alloc_lines) = walk("base:allocation");
    let (depth, depth_lines) = walk("qemu:allocation-depth");
    server.stop();
    let mut t = timing.split_whitespace();
    rows.push(format!(
        "{:>6}GiB {:>12}ms {:>12}ms {:>10.1}ms ({alloc_lines} ext) {:>8.1}ms ({depth_lines} ext)",
        gib,
        t.next().unwrap_or("?"),
        t.next().unwrap_or("?"),
        alloc,
        depth
    ));
}
