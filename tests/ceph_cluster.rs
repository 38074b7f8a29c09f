//! Ceph interop against a real cluster: our `snapctl send --format rbd-diff` (a full
//! stream, then incrementals) piped into Ceph's `rbd import-diff`, and `rbd export`
//! of each imported snapshot equal to ours; the reverse, `rbd export-diff` (full and
//! `--from-snap`) piped into `snapctl receive --format rbd-diff`, of the image we
//! filled and of one Ceph wrote itself (`rbd import`, `rbd bench`), each received
//! snapshot equal to `rbd export` of Ceph's.
//!
//! Needs the throw-away cluster `tests/ceph/run.sh` starts (it sets `CEPH_CONF`,
//! `CEPH_POOL` and `SNAPCTL`, the built `snapctl`), hence ignored by `cargo test`;
//! run it as `bash tests/ceph/run.sh`. The daemons are in-process (no ublk): the
//! real `snapctl` binary talks to their control sockets.
mod common;

use common::daemon::Fixture;
use exception_store::Dev;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::{
    io::Write,
    process::{Command, Stdio},
    time::Instant,
};
use ublk_snapd::{
    client,
    daemon::control::Limits,
    protocol::{Op, Reply},
};

const SIZE: u64 = 24 << 20;
const STORE: u64 = 128 << 20;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} unset: run `bash tests/ceph/run.sh`"))
}

/// `rbd ARGS...` under a time bound, with the cluster's configuration.
fn rbd(args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["120", "rbd"]).args(args);
    if args.first() != Some(&"bench") {
        c.arg("--no-progress");
    }
    c
}

fn snapctl(socket: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.arg("120")
        .arg(env("SNAPCTL"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("RUST_LOG");
    c
}

/// Run a command to the end; panic with its stderr when it fails.
fn run(mut c: Command) -> Vec<u8> {
    let t = Instant::now();
    let o = c.output().unwrap();
    eprintln!("  {:5.2} s {}", t.elapsed().as_secs_f64(), show(&c));
    assert!(
        o.status.success(),
        "{c:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// `a | b`, both to the end; panic with both stderrs when either fails. Returns
/// both stderrs, then `b`'s stdout.
fn pipe(mut a: Command, mut b: Command) -> String {
    let t = Instant::now();
    let mut pa = a
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = pa.stdout.take().unwrap();
    let pb = b
        .stdin(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    b.stdin(Stdio::null()); // close our copy of the read end
    let ob = pb.wait_with_output().unwrap();
    let oa = pa.wait_with_output().unwrap();
    let (ea, eb) = (
        String::from_utf8_lossy(&oa.stderr),
        String::from_utf8_lossy(&ob.stderr),
    );
    assert!(
        oa.status.success() && ob.status.success(),
        "{a:?} ({}): {ea}\n| {b:?} ({}): {eb}",
        oa.status,
        ob.status
    );
    eprintln!(
        "  {:5.2} s {} | {}",
        t.elapsed().as_secs_f64(),
        show(&a),
        show(&b)
    );
    format!("{ea}{eb}{}", String::from_utf8_lossy(&ob.stdout))
}

/// A command line as a user would type it (without the time bound).
fn show(c: &Command) -> String {
    let mut v: Vec<String> = c
        .get_args()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(p) = v.first_mut() {
        if let Some(n) = p.rsplit('/').next() {
            *p = n.to_owned();
        }
    }
    v.join(" ")
}

fn sha256(b: &[u8]) -> String {
    let mut p = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(b).unwrap();
    let o = p.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn read_snap(f: &Fixture, name: &str) -> Vec<u8> {
    let s = f.service().store();
    let id = s.lock().lookup(name).unwrap();
    let mut b = vec![0u8; SIZE as usize];
    s.read(Dev::Snap(id), 0, &mut b).unwrap();
    b
}

fn create(f: &Fixture, name: &str) {
    let r = client::request(
        &f.socket,
        Op::Create {
            name: name.into(),
            from: None,
            freeze: false,
        },
    );
    assert!(matches!(r, Ok(Reply::Created(_))), "{r:?}");
}

/// Random writes and zeroed ranges on the origin, a snapshot after each round.
fn source(names: &[&str]) -> Fixture {
    let f = Fixture::start(SIZE, STORE, Limits::default());
    let mut rng = SmallRng::seed_from_u64(12);
    for (i, name) in names.iter().enumerate() {
        for _ in 0..if i == 0 { 150 } else { 12 } {
            let off = rng.gen_range(0..SIZE / 4096) * 4096;
            let len = (rng.gen_range(1..96u64) * 4096).min(SIZE - off);
            if i > 0 && rng.gen_bool(0.25) {
                f.service()
                    .store()
                    .write_zeroes(Dev::Origin(0), off, len)
                    .unwrap();
            } else {
                let d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                f.service().store().write(Dev::Origin(0), off, &d).unwrap();
            }
        }
        create(&f, name);
    }
    f
}

fn export(image_snap: &str) -> Vec<u8> {
    let b = run(rbd(&["export", image_snap, "-"]));
    assert_eq!(b.len() as u64, SIZE, "rbd export {image_snap}: size");
    b
}

/// `rbd export-diff [--from-snap A] IMG@B - | snapctl receive --format rbd-diff` into
/// `dst`, for each step of `chain`; each received snapshot equals `rbd export IMG@B`.
fn receive_chain(dst: &Fixture, image: &str, chain: &[&str]) {
    let mut prev: Option<&str> = None;
    for &b in chain {
        let spec = format!("{image}@{b}");
        let mut args = vec!["export-diff"];
        if let Some(a) = prev {
            args.extend(["--from-snap", a]);
        }
        args.extend([spec.as_str(), "-"]);
        let log = pipe(
            rbd(&args),
            snapctl(
                &dst.socket,
                &["receive", "--progress", "--format", "rbd-diff"],
            ),
        );
        // A full diff tells its size: the final line's total.
        let line = log
            .lines()
            .rfind(|l| l.starts_with("received "))
            .unwrap_or("");
        if prev.is_none() {
            assert!(line.contains(" of 24.0 MiB ("), "{line:?}");
        }
        eprintln!("  {line}");
        let want = export(&spec);
        let got = read_snap(dst, b);
        assert!(
            got == want,
            "{spec}: received {} != rbd export {}",
            sha256(&got),
            sha256(&want)
        );
        eprintln!(
            "rbd export-diff {spec} | snapctl receive: sha256 {}",
            sha256(&got)
        );
        prev = Some(b);
    }
}

#[test]
#[ignore = "needs a Ceph cluster: bash tests/ceph/run.sh"]
fn rbd_import_diff_and_export_diff_against_a_cluster() {
    let pool = env("CEPH_POOL");
    env("CEPH_CONF");
    let names = ["s1", "s2", "s3", "s4"];
    let src = source(&names);
    let image = format!("{pool}/img");
    run(rbd(&[
        "create",
        "--size",
        &format!("{}K", SIZE >> 10),
        &image,
    ]));

    // Ours into Ceph: a full stream, then incrementals.
    let mut prev: Option<&str> = None;
    for &b in &names {
        let mut args = vec!["send", "--progress", "--format", "rbd-diff"];
        if let Some(a) = prev {
            args.extend(["--from", a]);
        }
        args.push(b);
        let log = pipe(
            snapctl(&src.socket, &args),
            rbd(&["import-diff", "-", &image]),
        );
        // The final line: a full send covers the device, an incremental its diff.
        let line = log.lines().find(|l| l.starts_with("sent ")).unwrap_or("");
        assert!(line.contains(" (100%), "), "{line:?}");
        if prev.is_none() {
            assert!(line.contains("covered 24.0 MiB of 24.0 MiB"), "{line:?}");
        }
        eprintln!("  {line}");
        let got = export(&format!("{image}@{b}"));
        let want = read_snap(&src, b);
        assert!(
            got == want,
            "{image}@{b}: rbd export {} != ours {}",
            sha256(&got),
            sha256(&want)
        );
        eprintln!(
            "snapctl send {b} | rbd import-diff: sha256 {}",
            sha256(&got)
        );
        prev = Some(b);
    }
    // import-diff leaves the image itself at the last snapshot.
    assert!(export(&image) == read_snap(&src, "s4"));
    // An incremental whose base the image does not have is refused by Ceph.
    let t = Instant::now();
    let o = pipe_status(
        snapctl(
            &src.socket,
            &["send", "--format", "rbd-diff", "--from", "s1", "s2"],
        ),
        rbd(&["import-diff", "-", &format!("{pool}/other")]),
    );
    assert!(!o, "rbd import-diff into a missing image succeeded");
    eprintln!(
        "  {:5.2} s rbd import-diff into a missing image: refused",
        t.elapsed().as_secs_f64()
    );

    // Ceph into ours: the chain back out of the image we filled.
    let dst = Fixture::start(SIZE, STORE, Limits::default());
    receive_chain(&dst, &image, &names);

    // Ceph into ours: an image Ceph wrote itself.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("native.img");
    let mut rng = SmallRng::seed_from_u64(13);
    let mut content = vec![0u8; SIZE as usize];
    for _ in 0..40 {
        let off = rng.gen_range(0..SIZE / 4096) as usize * 4096;
        let len = (rng.gen_range(1..128usize) * 4096).min(SIZE as usize - off);
        rng.fill(&mut content[off..off + len]);
    }
    std::fs::write(&file, &content).unwrap();
    let native = format!("{pool}/native");
    run(rbd(&["import", file.to_str().unwrap(), &native]));
    run(rbd(&["snap", "create", &format!("{native}@n1")]));
    for (snap, pattern, size) in [("n2", "rand", "4K"), ("n3", "seq", "64K")] {
        run(rbd(&[
            "bench",
            "--io-type",
            "write",
            "--io-pattern",
            pattern,
            "--io-size",
            size,
            "--io-total",
            "2M",
            &native,
        ]));
        run(rbd(&["snap", "create", &format!("{native}@{snap}")]));
    }
    assert!(export(&format!("{native}@n1")) == content);
    let dst2 = Fixture::start(SIZE, STORE, Limits::default());
    receive_chain(&dst2, &native, &["n1", "n2", "n3"]);
    // A full export-diff of the last one into a fresh daemon gives the same.
    let dst3 = Fixture::start(SIZE, STORE, Limits::default());
    receive_chain(&dst3, &native, &["n3"]);
}

/// `a | b`; whether both succeeded.
fn pipe_status(mut a: Command, mut b: Command) -> bool {
    let mut pa = a
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = pa.stdout.take().unwrap();
    let mut pb = b
        .stdin(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // `b` holds the pipe's read end until told otherwise: close it here, so that
    // `a` sees EPIPE when `b` stops reading.
    b.stdin(Stdio::null());
    let sb = pb.wait().unwrap();
    let sa = pa.wait().unwrap();
    sa.success() && sb.success()
}
