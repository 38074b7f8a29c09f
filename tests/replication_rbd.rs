//! Ceph interop without a cluster: our `--format rbd-diff` streams (a full one and
//! two incrementals) merged by Ceph's own `rbd merge-diff` must be accepted and
//! equal our full stream of the last snapshot; the merged diff and a chain of rbd
//! diffs received by a second daemon give the same snapshots. Skipped (with a
//! message) where `rbd` is not installed.
mod common;

use common::daemon::Fixture;
use exception_store::{
    stream::{
        rbd_diff::{Reader, Writer},
        Decoder, Record,
    },
    Dev,
};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::{path::Path, process::Command};
use ublk_snapd::{
    client,
    daemon::control::Limits,
    protocol::{ErrorCode, Op, Reply},
    Error,
};

const SIZE: u64 = 8 << 20;

fn have_rbd() -> bool {
    Command::new("rbd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn source() -> Fixture {
    let f = Fixture::start(SIZE, 48 << 20, Limits::default());
    let mut rng = SmallRng::seed_from_u64(3);
    for i in 1..=3 {
        for _ in 0..if i == 1 { 200 } else { 10 } {
            let off = rng.gen_range(0..SIZE / 4096) * 4096;
            let len = (rng.gen_range(1..64u64) * 4096).min(SIZE - off);
            if rng.gen_bool(0.2) {
                f.service()
                    .store()
                    .write_zeroes(Dev::Origin(0), off, len)
                    .unwrap();
            } else {
                let d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                f.service().store().write(Dev::Origin(0), off, &d).unwrap();
            }
        }
        let r = client::request(
            &f.socket,
            Op::Create {
                name: format!("s{i}"),
                from: None,
                freeze: false,
            },
        );
        assert!(matches!(r, Ok(Reply::Created(_))), "{r:?}");
    }
    f
}

fn rbd_send(f: &Fixture, b: &str, from: Option<&str>, path: &Path) {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, from);
    let op = Op::Send {
        name: b.into(),
        from: from.map(Into::into),
        resume: None,
    };
    client::stream::send_records(&f.socket, op, &mut |e| w.event(e), &mut |_| {}).unwrap();
    std::fs::write(path, out).unwrap();
}

fn merge_diff(a: &Path, b: &Path, out: &Path) {
    let o = Command::new("rbd")
        .args(["merge-diff", "--no-progress"])
        .args([a, b, out])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rbd merge-diff: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Apply records to a zero image.
fn apply(img: &mut [u8], r: Record) {
    match r {
        Record::Data { offset, data } => {
            img[offset as usize..offset as usize + data.len()].copy_from_slice(&data)
        }
        Record::Zero { offset, len } => img[offset as usize..(offset + len) as usize].fill(0),
    }
}

fn read_snap(f: &Fixture, name: &str) -> Vec<u8> {
    let s = f.service().store();
    let id = s.lock().lookup(name).unwrap();
    let mut b = vec![0u8; SIZE as usize];
    s.read(Dev::Snap(id), 0, &mut b).unwrap();
    b
}

#[test]
fn merge_diff_of_our_chain_equals_our_full_send() {
    if !have_rbd() {
        eprintln!("skipped: no `rbd` (apt-get install ceph-common)");
        return;
    }
    let src = source();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    rbd_send(&src, "s1", None, &p("d1"));
    rbd_send(&src, "s2", Some("s1"), &p("d12"));
    rbd_send(&src, "s3", Some("s2"), &p("d23"));
    merge_diff(&p("d1"), &p("d12"), &p("m2"));
    merge_diff(&p("m2"), &p("d23"), &p("m3"));
    // The merged diff (Ceph's bytes), applied to zeros.
    let merged = std::fs::read(p("m3")).unwrap();
    let mut rd = Reader::new(&merged[..]).unwrap();
    assert_eq!(rd.meta().to, "s3");
    assert_eq!(rd.meta().from, None);
    assert_eq!(rd.meta().size, SIZE);
    let mut from_ceph = vec![0u8; SIZE as usize];
    while let Some(r) = rd.next_record().unwrap() {
        apply(&mut from_ceph, r);
    }
    // Our full stream of s3, applied to zeros.
    let mut ours = Vec::new();
    let op = Op::Send {
        name: "s3".into(),
        from: None,
        resume: None,
    };
    client::stream::send(&src.socket, op, &mut ours, &mut |_| {}).unwrap();
    let mut dec = Decoder::new(&ours[..]).unwrap();
    let mut from_ours = vec![0u8; SIZE as usize];
    while let Some(r) = dec.next_record().unwrap() {
        apply(&mut from_ours, r);
    }
    assert!(
        from_ceph == from_ours,
        "merge-diff result differs from our full send"
    );
    assert!(from_ours == read_snap(&src, "s3"));

    // A second daemon receives the merged diff, then (another one) the chain.
    let dst = Fixture::start(SIZE, 48 << 20, Limits::default());
    let recv = |f: &Fixture, path: &Path| {
        let b = std::fs::read(path).unwrap();
        client::stream::receive(&f.socket, None, false, true, &mut &b[..], &mut |_| {})
    };
    recv(&dst, &p("m3")).unwrap();
    assert!(read_snap(&dst, "s3") == read_snap(&src, "s3"));
    let chain = Fixture::start(SIZE, 48 << 20, Limits::default());
    // Out of turn: s2's incremental needs s1 here.
    assert!(matches!(
        recv(&chain, &p("d12")),
        Err(Error::Remote {
            code: ErrorCode::NoSuchSnapshot,
            ..
        })
    ));
    for d in ["d1", "d12", "d23"] {
        recv(&chain, &p(d)).unwrap();
    }
    for s in ["s1", "s2", "s3"] {
        assert!(read_snap(&chain, s) == read_snap(&src, s), "{s}");
    }
    // A truncated rbd diff is refused and rolled back: no snapshot, origin unchanged.
    let fresh = Fixture::start(SIZE, 48 << 20, Limits::default());
    let mut cut = std::fs::read(p("d1")).unwrap();
    cut.truncate(cut.len() / 2);
    std::fs::write(p("cut"), &cut).unwrap();
    let e = recv(&fresh, &p("cut")).unwrap_err();
    assert!(e.to_string().contains("rbd diff"), "{e}");
    assert!(fresh.service().store().lock().snapshots().is_empty());
    let mut origin = vec![1u8; SIZE as usize];
    fresh
        .service()
        .store()
        .read(Dev::Origin(0), 0, &mut origin)
        .unwrap();
    assert!(origin.iter().all(|&x| x == 0), "the origin was rolled back");
}
