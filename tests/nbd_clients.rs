//! The NBD export with clients nobody here wrote (Debian's `qemu-utils` and
//! `libnbd-bin`): `qemu-img info/map/compare/convert`, `nbdinfo --map` for
//! `base:allocation` and `qemu:allocation-depth`, `nbdcopy` with several
//! connections writing and reading. The daemon's service and NBD server run in
//! process on temporary files (no kernel needed); the tools connect to its Unix
//! socket. A missing tool fails the test (`.ci/run` installs them).
mod common;

use common::{
    nbd::{self, Setup},
    pattern,
};
use exception_store::Dev;
use std::{path::Path, process::Command};
use ublk_snapd::service::Service;

const CHUNK: u64 = common::daemon::CHUNK;
const LEN: u64 = 16 << 20;

fn setup() -> Setup {
    nbd::setup(LEN, 64 << 20)
}

fn uri(sock: &Path, export: &str) -> String {
    format!("nbd+unix:///{export}?socket={}", sock.display())
}

/// Run a tool; panics with its output unless it exits 0.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} (apt-get install qemu-utils libnbd-bin): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// s1 (older) and s2 of an origin with data in its first 8 chunks; s1 then reads
/// chunk 1 as its own copy-out, chunk 2 as s2's, chunk 3 its own write, chunk 4 a
/// hole, the rest from the origin.
fn layered(svc: &Service) -> Dev {
    let st = svc.store();
    for c in 0..8 {
        st.write(Dev::Origin(0), c * CHUNK, &pattern(c + 100, CHUNK as usize))
            .unwrap();
    }
    svc.create("s1", None, false).unwrap();
    st.write(Dev::Origin(0), CHUNK, &[1; 4096]).unwrap();
    svc.create("s2", None, false).unwrap();
    st.write(Dev::Origin(0), 2 * CHUNK, &[2; 4096]).unwrap();
    let s1 = Dev::Snap(st.lock().lookup("s1").unwrap());
    st.write(s1, 3 * CHUNK, &[3; 4096]).unwrap();
    st.discard(s1, 4 * CHUNK, CHUNK).unwrap();
    s1
}

fn image_of(svc: &Service, dev: Dev, path: &Path) {
    let mut img = vec![0u8; LEN as usize];
    svc.store().read(dev, 0, &mut img).unwrap();
    std::fs::write(path, img).unwrap();
}

#[test]
fn qemu_img_info_compare_convert_and_map() {
    let s = setup();
    let svc = s.fix.service();
    let s1 = layered(svc);
    svc.export("s1", false, None).unwrap();
    let u = uri(&s.sock, "s1");
    let info = run("qemu-img", &["info", "--output=json", &u]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], LEN);
    let dir = tempfile::tempdir().unwrap();
    let want = dir.path().join("want.raw");
    image_of(svc, s1, &want);
    run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            want.to_str().unwrap(),
            &u,
        ],
    );
    let conv = dir.path().join("conv.raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &u,
            conv.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(&conv).unwrap() == std::fs::read(&want).unwrap());
    // the map: qemu reads base:allocation (zero) and qemu:allocation-depth (present,
    // depth)
    let map = run("qemu-img", &["map", "--output=json", "-f", "raw", &u]);
    let map: Vec<serde_json::Value> = serde_json::from_str(&map).unwrap();
    let at = |off: u64| {
        map.iter()
            .find(|m| {
                let (o, l) = (m["start"].as_u64().unwrap(), m["length"].as_u64().unwrap());
                o <= off && off < o + l
            })
            .unwrap_or_else(|| panic!("no map entry at {off}: {map:?}"))
            .clone()
    };
    assert_eq!(at(4 * CHUNK)["zero"], true, "the hole: {map:?}");
    assert_eq!(at(4 * CHUNK)["data"], false);
    for c in [0, 1, 2, 3, 5] {
        assert_eq!(at(c * CHUNK)["zero"], false, "chunk {c}: {map:?}");
        assert_eq!(at(c * CHUNK)["data"], true, "chunk {c}: {map:?}");
    }
    let covered: u64 = map.iter().map(|m| m["length"].as_u64().unwrap()).sum();
    assert_eq!(covered, LEN);
}

/// `nbdinfo --map` lines: offset, length, value, description.
fn nbdinfo_map(u: &str, ctx: &str) -> Vec<(u64, u64, u32)> {
    let out = run("nbdinfo", &[&format!("--map={ctx}"), u]);
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

fn per_chunk(map: &[(u64, u64, u32)], chunks: u64) -> Vec<u32> {
    (0..chunks)
        .map(|c| {
            map.iter()
                .find(|(o, l, _)| *o <= c * CHUNK && c * CHUNK < o + l)
                .map_or(u32::MAX, |e| e.2)
        })
        .collect()
}

#[test]
fn nbdinfo_lists_contexts_and_maps_allocation_depth_owner() {
    let s = setup();
    let svc = s.fix.service();
    layered(svc);
    svc.export("s1", false, None).unwrap();
    let u = uri(&s.sock, "s1");
    svc.export("s2", false, Some("second")).unwrap();
    let list = run("nbdinfo", &["--list", "--json", &uri(&s.sock, "")]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let listed: Vec<&str> = list["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["export-name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["s1", "second"]);
    let info = run("nbdinfo", &["--json", &u]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let e = &info["exports"][0];
    assert_eq!(e["export-size"], LEN);
    assert_eq!(e["is_read_only"], true);
    assert_eq!(e["can_multi_conn"], true);
    assert_eq!(e["block_size_preferred"], CHUNK);
    let names: Vec<&str> = e["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "base:allocation",
            "qemu:allocation-depth",
            "ublk-snap:owner"
        ]
    );
    let alloc = nbdinfo_map(&u, "base:allocation");
    assert_eq!(per_chunk(&alloc, 8), [0, 0, 0, 0, 3, 0, 0, 0]);
    let depth = nbdinfo_map(&u, "qemu:allocation-depth");
    assert_eq!(per_chunk(&depth, 8), [3, 1, 2, 1, 1, 3, 3, 3]);
    let owner = nbdinfo_map(&u, "ublk-snap:owner");
    let o = per_chunk(&owner, 8);
    assert_eq!((o[0], o[5]), (0, 0));
    assert!(o[1] != 0 && o[1] == o[3] && o[1] == o[4] && o[2] != 0 && o[2] != o[1]);
    // (nbdinfo merges equal neighbours itself; the common boundaries on the wire
    // are checked in tests/nbd_export.rs)
    for m in [&alloc, &depth, &owner] {
        assert_eq!(m.iter().map(|e| e.1).sum::<u64>(), LEN);
    }
    // the origin export: one layer, all data at depth 1
    svc.export("origin", false, None).unwrap();
    let d = nbdinfo_map(&uri(&s.sock, "origin"), "qemu:allocation-depth");
    assert_eq!(d, [(0, LEN, 1)]);
}

/// nbdcopy writes a file into a writable snapshot with 4 connections, then copies
/// it back out with 4; the store's snapshot, the copy and the file agree; the
/// origin and the other snapshot are untouched.
#[test]
fn nbdcopy_several_connections_both_ways() {
    let s = setup();
    let svc = s.fix.service();
    let s1 = layered(svc);
    let mut origin_before = vec![0u8; LEN as usize];
    svc.store()
        .read(Dev::Origin(0), 0, &mut origin_before)
        .unwrap();
    let s2 = Dev::Snap(svc.store().lock().lookup("s2").unwrap());
    let mut s2_before = vec![0u8; LEN as usize];
    svc.store().read(s2, 0, &mut s2_before).unwrap();
    svc.export("s1", true, Some("s1-rw")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let mut data = pattern(77, LEN as usize);
    data[(LEN / 2) as usize..].fill(0); // a zero half: nbdcopy zeroes or trims it
    std::fs::write(&src, &data).unwrap();
    let u = uri(&s.sock, "s1-rw");
    run(
        "nbdcopy",
        &[
            "--connections=4",
            "--requests=16",
            src.to_str().unwrap(),
            &u,
        ],
    );
    let mut got = vec![0u8; LEN as usize];
    svc.store().read(s1, 0, &mut got).unwrap();
    assert!(got == data, "the snapshot holds what nbdcopy wrote");
    let back = dir.path().join("back.raw");
    run("nbdcopy", &["--connections=4", &u, back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data);
    let mut now = vec![0u8; LEN as usize];
    svc.store().read(Dev::Origin(0), 0, &mut now).unwrap();
    assert!(now == origin_before, "the origin is untouched");
    svc.store().read(s2, 0, &mut now).unwrap();
    assert!(now == s2_before, "s2 is untouched");
    // qemu-img compare of the export against the file
    run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            src.to_str().unwrap(),
            &u,
        ],
    );
}
