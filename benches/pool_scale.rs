//! A big pool (issue 21): 64 origins and 10,000 snapshots across them in one store.
//! Measures what grows with the pool, not the data path: the time to build it (group
//! creates of every origin, a few origin writes between them so that the snapshots
//! differ), the store's open time, `list` in the store (`Store::snapshots`) and in
//! the daemon (a `Service` opened on the files, as `ublk-snapd` does but without ublk
//! devices, answering `list` on its control socket), and the resident memory of a
//! process that opened the pool, against the metadata cache setting.
//!
//! Each measurement of an open pool runs in a fresh process (this bench re-executes
//! itself), so that its `VmHWM` is that of opening and listing, not of building:
//!
//! - `store`: `Store::open` (and attaching the other 63 origins by their recorded
//!   paths), then `Store::snapshots` and `Store::origins`;
//! - `daemon`: `Service::open` (the daemon's start before its devices), the control
//!   server, then `list` requests through `ublk_snapd::client`, the reply decoded as
//!   snapctl does.
//!
//! `cargo bench --bench pool_scale`. Environment: `POOL_ORIGINS` (64),
//! `POOL_SNAPSHOTS` (10000), `POOL_CACHE_MIB` (the cache settings to measure, a
//! comma-separated list; default `64,8`: the daemon's default `--cache-mb` and a small
//! one), `POOL_LISTS` (list requests timed, 20), `UBLK_SNAP_BENCH_DIR` (where the
//! files go; default a tempdir).
use blockdev::FileDevice;
use exception_store::{Dev, SharedStore, Store, StoreOptions};
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Instant,
};
use ublk_snapd::{
    client::Client,
    daemon::control::{self, Limits},
    protocol::{Op, Reply},
    service::{Config, Service},
};

#[path = "common/latency.rs"]
mod latency;

/// Each origin's size (sparse files).
const ORIGIN: u64 = 64 << 20;
const CHUNK: u32 = 64 << 10;
/// Origin writes between two group creates (each on another origin): the copy-outs
/// that make consecutive snapshots differ.
const WRITES_PER_GROUP: usize = 8;
/// The child's role, and the directory it opens.
const ROLE_ENV: &str = "POOL_SCALE_ROLE";
const DIR_ENV: &str = "POOL_SCALE_DIR";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn origin_path(dir: &Path, k: u32) -> PathBuf {
    dir.join(format!("o{k}.img"))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// `VmRSS` and `VmHWM` of this process, MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn print_rss(what: &str) {
    let (now, peak) = rss();
    println!("  rss {what}: VmRSS {now:.1} MiB, VmHWM {peak:.1} MiB");
}

/// Build the pool in `dir`: origin 0 formatted, the others added with their paths,
/// then group creates of all of them until `nr_snaps` snapshots exist (the last group
/// takes the first origins only).
fn build(dir: &Path, nr_origins: u32, nr_snaps: usize) {
    let file = |path: &Path, len: u64| Arc::new(FileDevice::create(path, len).expect("file"));
    let t = Instant::now();
    let mut s = Store::format(
        file(&origin_path(dir, 0), ORIGIN),
        file(&dir.join("store.img"), 16 << 30),
        CHUNK,
        StoreOptions::default(),
    )
    .expect("format");
    for k in 1..nr_origins {
        let path = origin_path(dir, k);
        s.add_origin(
            &format!("o{k}"),
            file(&path, ORIGIN),
            path.to_str().expect("utf-8 path"),
            0,
        )
        .expect("add");
    }
    let shared = SharedStore::new(s);
    println!(
        "built {nr_origins} origins of {} MiB in {:.0} ms",
        ORIGIN >> 20,
        ms(t)
    );
    let t = Instant::now();
    let mut creates = Vec::new();
    let (mut made, mut x, mut n) = (0usize, 0x9e37_79b9_7f4a_7c15u64, 0u64);
    let data = vec![0x5au8; 4096];
    while made < nr_snaps {
        let members = (nr_snaps - made).min(nr_origins as usize) as u32;
        let ks: Vec<u32> = (0..members).collect();
        n += 1;
        let c = Instant::now();
        shared
            .create_group(&format!("g{n}"), &ks, n)
            .expect("group");
        creates.push(ms(c));
        made += members as usize;
        for _ in 0..WRITES_PER_GROUP {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % nr_origins as u64) as u32;
            let off = ((x >> 20) % (ORIGIN / 4096)) * 4096;
            shared.write(Dev::Origin(k), off, &data).expect("write");
        }
    }
    shared.commit_clean_shutdown().expect("close");
    println!(
        "built {made} snapshots in {n} group creates, {} origin writes between them, in {:.0} ms",
        n as usize * WRITES_PER_GROUP,
        ms(t)
    );
    latency::report("  group create while building", &mut creates);
}

/// Child `store`: open the pool's store and list it.
fn child_store(dir: &Path, cache_bytes: usize, lists: usize) {
    let open = |p: &Path| Arc::new(FileDevice::open(p).expect("open"));
    let t = Instant::now();
    let mut s = Store::open(
        open(&origin_path(dir, 0)),
        open(&dir.join("store.img")),
        StoreOptions {
            cache_bytes,
            ..StoreOptions::default()
        },
    )
    .expect("open store");
    let opened = ms(t);
    let t = Instant::now();
    for o in s.origins() {
        if o.id != 0 {
            s.attach_origin(o.id, open(Path::new(&o.path)))
                .expect("attach");
        }
    }
    println!(
        "  Store::open {opened:.1} ms, attaching {} origins {:.1} ms",
        s.origins().len() - 1,
        ms(t)
    );
    print_rss("after open");
    let mut times = Vec::new();
    let mut nr = 0;
    for _ in 0..lists {
        let t = Instant::now();
        nr = s.snapshots().len() + s.origins().len();
        times.push(ms(t));
    }
    latency::report(
        &format!("  Store::snapshots + origins ({nr} entries)"),
        &mut times,
    );
    print_rss("after the lists");
}

/// Child `daemon`: open the pool as the daemon does, serve its control socket, and
/// time `list` through the client.
fn child_daemon(dir: &Path, cache_bytes: usize, lists: usize) {
    let t = Instant::now();
    let service = Arc::new(
        Service::open(Config {
            origin: origin_path(dir, 0),
            store: dir.join("store.img"),
            cache_bytes,
            state_dir: None,
            ..Config::default()
        })
        .expect("open service"),
    );
    println!(
        "  Service::open (daemon start before its devices) {:.1} ms",
        ms(t)
    );
    print_rss("after open");
    let socket = dir.join("ctl.sock");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = {
        let (s, socket) = (service.clone(), socket.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let sock = control::bind(&socket).expect("bind");
                ready_tx.send(()).expect("ready");
                let handler: control::Handler = Arc::new(move |op| s.handle(op));
                control::serve_with(sock, handler, None, Limits::default(), async {
                    let _ = stop_rx.await;
                })
                .await;
            });
        })
    };
    ready_rx.recv().expect("server");
    let mut client = Client::connect(&socket).expect("connect");
    let (mut times, mut in_service) = (Vec::new(), Vec::new());
    let mut nr = 0;
    for _ in 0..lists {
        let t = Instant::now();
        match client.call(Op::List).expect("list") {
            Reply::List(l) => nr = l.snapshots.len(),
            other => panic!("list answered {other:?}"),
        }
        times.push(ms(t));
        let t = Instant::now();
        std::hint::black_box(service.list());
        in_service.push(ms(t));
    }
    latency::report(
        &format!("  list over the control socket ({nr} snapshots)"),
        &mut times,
    );
    latency::report(
        "  Service::list alone (no socket, no JSON)",
        &mut in_service,
    );
    print_rss("after the lists");
    let _ = stop_tx.send(());
    server.join().expect("server thread");
    let t = Instant::now();
    service.shutdown().expect("shutdown");
    println!("  Service::shutdown {:.1} ms", ms(t));
}

fn main() {
    let lists = env_or("POOL_LISTS", 20);
    if let (Ok(role), Ok(dir)) = (std::env::var(ROLE_ENV), std::env::var(DIR_ENV)) {
        let cache_bytes = env_or("POOL_SCALE_CACHE", 64 << 20);
        match role.as_str() {
            "store" => child_store(Path::new(&dir), cache_bytes, lists),
            "daemon" => child_daemon(Path::new(&dir), cache_bytes, lists),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let nr_origins = env_or("POOL_ORIGINS", 64).max(1) as u32;
    let nr_snaps = env_or("POOL_SNAPSHOTS", 10_000);
    let caches: Vec<usize> = std::env::var("POOL_CACHE_MIB")
        .unwrap_or_else(|_| "64,8".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let dir = match std::env::var("UBLK_SNAP_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("tempdir");
    build(dir.path(), nr_origins, nr_snaps);
    let store_len = std::fs::metadata(dir.path().join("store.img"))
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .unwrap_or(0);
    println!(
        "store file: {:.1} MiB allocated",
        store_len as f64 / 1048576.0
    );
    let exe = std::env::current_exe().expect("current exe");
    for cache_mib in caches {
        for role in ["store", "daemon"] {
            println!("{role}, cache {cache_mib} MiB (fresh process):");
            let status = Command::new(&exe)
                .env(ROLE_ENV, role)
                .env(DIR_ENV, dir.path())
                .env("POOL_SCALE_CACHE", (cache_mib << 20).to_string())
                .env("POOL_LISTS", lists.to_string())
                .status()
                .expect("child");
            assert!(status.success(), "{role} child: {status}");
        }
    }
}
