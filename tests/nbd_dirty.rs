//! Dirty bitmaps (`qemu:dirty-bitmap:A`) with the tools of QEMU's incremental
//! backups: `nbdinfo --list`/`--map`, `qemu-img map` with `x-dirty-bitmap`, and an
//! incremental backup through TLS (a full copy of A with `nbdcopy`, then the dirty
//! ranges of B read with `nbdsh`) that must equal B byte for byte. The bitmaps must
//! say what `Store::diff` (`snapctl diff A B`) says. In process, no kernel.
mod common;

use common::{nbd, pattern, tls::Pki};
use exception_store::Dev;
use std::process::Command;
use ublk_snapd::nbd::{Security, Tls};

const CHUNK: u64 = common::daemon::CHUNK;
const LEN: u64 = 16 << 20;

fn run(cmd: &str, args: &[&str]) -> String {
    // nbdsh runs `python3 -m nbd`: Debian's python3, which has python3-libnbd,
    // before any other on PATH
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    let out = Command::new(cmd)
        .args(args)
        .env("PATH", path)
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

/// The dirty runs of `nbdinfo --map=CTX` (value 1), merged.
fn dirty_of_map(out: &str) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = Vec::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (o, n, s): (u64, u64, u32) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        );
        if s & 1 == 0 {
            continue;
        }
        match v.last_mut() {
            Some(p) if p.0 + p.1 == o => p.1 += n,
            _ => v.push((o, n)),
        }
    }
    v
}

fn merged(runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = Vec::new();
    for (o, n) in runs {
        match v.last_mut() {
            Some(p) if p.0 + p.1 == o => p.1 += n,
            _ => v.push((o, n)),
        }
    }
    v
}

#[test]
fn dirty_bitmaps_with_nbdinfo_qemu_img_and_an_incremental_backup_over_tls() {
    let pki = Pki::new();
    let tls = Tls::load(&pki.server_files(false, &[])).unwrap();
    let sec = Security {
        tls: Some(tls),
        insecure_tcp: false,
    };
    let (s, port) = nbd::setup_with(LEN, 64 << 20, sec, true, Default::default());
    let svc = s.fix.service();
    let st = svc.store();
    st.write(Dev::Origin(0), 0, &pattern(1, LEN as usize))
        .unwrap();
    svc.create("A", None, false).unwrap();
    // between A and B: chunk 2 (part), 5, 9 and 10, and a trim of chunk 13
    st.write(Dev::Origin(0), 2 * CHUNK + 512, &[7; 4096])
        .unwrap();
    st.write(Dev::Origin(0), 5 * CHUNK, &pattern(2, CHUNK as usize))
        .unwrap();
    st.write(Dev::Origin(0), 9 * CHUNK, &pattern(3, 2 * CHUNK as usize))
        .unwrap();
    st.write_zeroes(Dev::Origin(0), 13 * CHUNK, CHUNK).unwrap();
    svc.create("B", None, false).unwrap();
    // after B: only the origin changes
    st.write(Dev::Origin(0), 20 * CHUNK, &[8; 4096]).unwrap();
    let lk = st.lock();
    let (a, b) = (lk.lookup("A").unwrap(), lk.lookup("B").unwrap());
    drop(lk);
    let (a, b) = (Dev::Snap(a), Dev::Snap(b));
    let want = merged(st.diff(a, b, 0, LEN).unwrap());
    assert_eq!(
        want,
        [
            (2 * CHUNK, CHUNK),
            (5 * CHUNK, CHUNK),
            (9 * CHUNK, 2 * CHUNK),
            (13 * CHUNK, CHUNK)
        ]
    );
    svc.export("A", false, None).unwrap();
    svc.export("B", false, None).unwrap();
    svc.export("origin", false, Some("o")).unwrap();
    let unix = |e: &str| format!("nbd+unix:///{e}?socket={}", s.sock.display());

    // listed: B against A (not B itself), the origin against both; A against none
    let ctx = |e: &str| {
        let j: serde_json::Value =
            serde_json::from_str(&run("nbdinfo", &["--json", &unix(e)])).unwrap();
        j["exports"][0]["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .filter(|c| c.starts_with("qemu:dirty-bitmap:"))
            .collect::<Vec<_>>()
    };
    assert_eq!(ctx("B"), ["qemu:dirty-bitmap:A"]);
    assert_eq!(ctx("o"), ["qemu:dirty-bitmap:A", "qemu:dirty-bitmap:B"]);
    assert!(ctx("A").is_empty());
    // the prefix query lists them too (nbdsh: list_meta_context with a query)
    let listed = run(
        "nbdsh",
        &[
            "-c",
            &format!(
                "h.set_opt_mode(True)\nh.connect_uri('{}')\n\
                 h.add_meta_context('qemu:dirty-bitmap:')\n\
                 h.opt_list_meta_context(lambda n: print(n) or 0)",
                unix("o")
            ),
        ],
    );
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, ["qemu:dirty-bitmap:A", "qemu:dirty-bitmap:B"]);

    // nbdinfo --map: the diff exactly
    let map = run("nbdinfo", &["--map=qemu:dirty-bitmap:A", &unix("B")]);
    eprintln!("nbdinfo --map=qemu:dirty-bitmap:A:\n{map}");
    assert_eq!(dirty_of_map(&map), want, "{map}");
    let om = run("nbdinfo", &["--map=qemu:dirty-bitmap:B", &unix("o")]);
    assert_eq!(dirty_of_map(&om), [(20 * CHUNK, CHUNK)], "{om}");

    // qemu-img map with x-dirty-bitmap: dirty ranges read as "data": false
    let img = format!(
        "driver=nbd,server.type=unix,server.path={},export=B,\
         x-dirty-bitmap=qemu:dirty-bitmap:A",
        s.sock.display()
    );
    let qm = run("qemu-img", &["map", "--output=json", "--image-opts", &img]);
    let qm: Vec<serde_json::Value> = serde_json::from_str(&qm).unwrap();
    let qdirty = merged(
        qm.iter()
            .filter(|m| m["data"] == false)
            .map(|m| (m["start"].as_u64().unwrap(), m["length"].as_u64().unwrap()))
            .collect(),
    );
    assert_eq!(qdirty, want, "{qm:?}");

    // an incremental backup over TLS: A in full, then B's dirty ranges
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.raw");
    let certs = pki.path("good");
    let nbds = |e: &str| {
        format!(
            "nbds://127.0.0.1:{port}/{e}?tls-certificates={}",
            certs.display()
        )
    };
    run("nbdcopy", &[&nbds("A"), backup.to_str().unwrap()]);
    let script = format!(
        "h.set_uri_allow_local_file(True)\n\
         h.add_meta_context('qemu:dirty-bitmap:A')\n\
         h.connect_uri('{uri}')\n\
         assert h.get_tls_negotiated()\n\
         size = h.get_size()\n\
         runs = []\n\
         pos = [0]\n\
         def cb(ctx, off, ents, err):\n\
         \x20   if ctx != 'qemu:dirty-bitmap:A': return 0\n\
         \x20   o = off\n\
         \x20   for i in range(0, len(ents), 2):\n\
         \x20       if ents[i + 1] & 1: runs.append((o, ents[i]))\n\
         \x20       o += ents[i]\n\
         \x20   pos[0] = o\n\
         \x20   return 0\n\
         while pos[0] < size:\n\
         \x20   h.block_status(min(size - pos[0], 1 << 30), pos[0], cb)\n\
         f = open('{out}', 'r+b')\n\
         for (o, n) in runs:\n\
         \x20   f.seek(o)\n\
         \x20   f.write(h.pread(n, o))\n\
         f.close()\n\
         print(sum(n for (o, n) in runs))\n",
        uri = nbds("B"),
        out = backup.display()
    );
    let copied: u64 = run("nbdsh", &["-c", &script]).trim().parse().unwrap();
    assert_eq!(copied, want.iter().map(|r| r.1).sum::<u64>());
    let mut b_data = vec![0u8; LEN as usize];
    st.read(b, 0, &mut b_data).unwrap();
    assert!(
        std::fs::read(&backup).unwrap() == b_data,
        "A + dirty(B) == B"
    );
}
