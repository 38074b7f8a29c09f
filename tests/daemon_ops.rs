//! merge, hold/release, prune, check and dump through the control server, against a
//! real store on temporary files, with the background worker running. Needs no
//! kernel (data goes through the shared store, not a ublk device).
mod common;

use common::daemon::{remote_code, Fixture, CHUNK};
use exception_store::Dev;
use std::{
    path::Path,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};
use ublk_snapd::{
    client::request,
    daemon::control::Limits,
    daemon::worker::Worker,
    offline,
    protocol::{ErrorCode, Op, PrunePolicy, Reply},
    service::progress::Progress,
    service::Service,
    Error,
};

const ORIGIN_LEN: u64 = 8 << 20;

fn start() -> Fixture {
    Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default())
}

fn create(s: &Path, name: &str) -> u32 {
    match request(
        s,
        Op::Create {
            name: name.into(),
            from: None,
            freeze: false,
        },
    )
    .unwrap()
    {
        Reply::Created(c) => c.id,
        other => panic!("{other:?}"),
    }
}

fn names(s: &Path) -> Vec<(String, bool)> {
    match request(s, Op::List).unwrap() {
        Reply::List(l) => l.snapshots.into_iter().map(|s| (s.name, s.hold)).collect(),
        other => panic!("{other:?}"),
    }
}

/// Fill every chunk of the origin with `tag` (a byte per chunk index).
fn stamp(svc: &Service, tag: u8, every: u64) -> Vec<u8> {
    let mut img = vec![0u8; ORIGIN_LEN as usize];
    for c in (0..ORIGIN_LEN / CHUNK).step_by(every as usize) {
        let data = vec![tag ^ c as u8; CHUNK as usize];
        svc.store().write(Dev::Origin(0), c * CHUNK, &data).unwrap();
    }
    svc.store().read(Dev::Origin(0), 0, &mut img).unwrap();
    img
}

fn read_all(svc: &Service, dev: Dev) -> Vec<u8> {
    let mut img = vec![0u8; ORIGIN_LEN as usize];
    svc.store().read(dev, 0, &mut img).unwrap();
    img
}

fn wait_no_jobs(s: &Path) {
    let t0 = Instant::now();
    loop {
        match request(s, Op::Status).unwrap() {
            Reply::Status(st) if st.jobs.is_empty() => return,
            Reply::Status(st) => assert!(!st.failed),
            other => panic!("{other:?}"),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "background work did not finish"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn merge_restores_the_origin_and_keeps_other_snapshots() {
    let mut f = start();
    let s = f.socket.clone();
    let svc = f.service().clone();
    let v1 = stamp(&svc, 0x11, 1);
    let s1 = create(&s, "s1");
    let v2 = stamp(&svc, 0x22, 3);
    let s2 = create(&s, "s2");
    stamp(&svc, 0x33, 2);

    assert_eq!(
        remote_code(request(
            &s,
            Op::Merge {
                name: "nope".into(),
                deferred: false,
            }
        )),
        ErrorCode::NoSuchSnapshot
    );
    // No worker yet: the merge job stays, and a second merge is refused.
    match request(
        &s,
        Op::Merge {
            name: "s1".into(),
            deferred: true,
        },
    )
    .unwrap()
    {
        Reply::Merging(c) => assert_eq!(c.name, "s1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        remote_code(request(
            &s,
            Op::Merge {
                name: "s2".into(),
                deferred: false,
            }
        )),
        ErrorCode::Busy
    );
    match request(&s, Op::Status).unwrap() {
        Reply::Status(st) => {
            let j = st
                .jobs
                .iter()
                .find(|j| j.kind == "merge")
                .expect("merge job");
            assert_eq!(j.total, ORIGIN_LEN / CHUNK);
            assert_eq!(st.space_policy, "fail");
        }
        other => panic!("{other:?}"),
    }
    // The origin reads s1's data at once; s1 is gone from the list.
    assert_eq!(read_all(&svc, Dev::Origin(0)), v1);
    assert_eq!(names(&s), vec![("s2".to_owned(), false)]);
    let _ = s1;

    let worker = Worker::start(
        svc.store().clone(),
        Arc::new(Progress::default()),
        Box::new(|| {}),
    )
    .unwrap();
    wait_no_jobs(&s);
    worker.stop();
    assert_eq!(read_all(&svc, Dev::Origin(0)), v1);
    assert_eq!(read_all(&svc, Dev::Snap(blockdev::ids::SnapId(s2))), v2);
    match request(&s, Op::Check).unwrap() {
        Reply::Checked(r) => assert!(r.clean, "{r:?}"),
        other => panic!("{other:?}"),
    }
    // The origin file itself now holds s1's data (the merge copied it in place).
    drop(svc);
    f.stop();
    assert_eq!(std::fs::read(f.origin_path()).unwrap(), v1);
    let r = offline::check(&f.store_path()).unwrap();
    assert!(r.clean, "{r:?}");
}

#[test]
fn hold_release_and_prune() {
    let f = start();
    let s = &f.socket;
    for n in ["a1", "a2", "a3", "a4", "other"] {
        create(s, n);
    }
    match request(s, Op::Hold { name: "a1".into() }).unwrap() {
        Reply::Held(c) => assert_eq!(c.name, "a1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        remote_code(request(
            s,
            Op::Hold {
                name: "nope".into()
            }
        )),
        ErrorCode::NoSuchSnapshot
    );
    assert!(names(s).contains(&("a1".to_owned(), true)));

    let prune = |dry_run: bool| Op::Prune {
        policy: PrunePolicy {
            keep_last: 1,
            ..PrunePolicy::default()
        },
        prefix: Some("a".into()),
        dry_run,
        origin: None,
    };
    // An empty policy is refused (it would keep nothing).
    assert_eq!(
        remote_code(request(
            s,
            Op::Prune {
                policy: PrunePolicy::default(),
                prefix: None,
                dry_run: true,
                origin: None,
            }
        )),
        ErrorCode::Invalid
    );
    let Reply::Pruned(p) = request(s, prune(true)).unwrap() else {
        panic!()
    };
    assert!(p.dry_run);
    let would: Vec<&str> = p.deleted.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(would, ["a2", "a3"]);
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].name, "a1");
    assert_eq!(p.skipped[0].reason, "held");
    assert_eq!(names(s).len(), 5, "a dry run deletes nothing");

    // Two overlapping runs: the second sees the first's result; neither fails.
    let (a, b) = (s.clone(), s.clone());
    let t1 = thread::spawn(move || request(&a, prune(false)).unwrap());
    let t2 = thread::spawn(move || request(&b, prune(false)).unwrap());
    let mut deleted: Vec<String> = Vec::new();
    for t in [t1, t2] {
        let Reply::Pruned(p) = t.join().unwrap() else {
            panic!()
        };
        deleted.extend(p.deleted.into_iter().map(|d| d.name));
    }
    deleted.sort();
    assert_eq!(deleted, ["a2", "a3"]);
    let left: Vec<String> = names(s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(left, ["a1", "a4", "other"]);

    // Released, a1 is pruned like any other.
    match request(s, Op::Release { name: "a1".into() }).unwrap() {
        Reply::Released(c) => assert_eq!(c.name, "a1"),
        other => panic!("{other:?}"),
    }
    let Reply::Pruned(p) = request(s, prune(false)).unwrap() else {
        panic!()
    };
    assert_eq!(p.deleted.len(), 1);
    assert_eq!(p.deleted[0].name, "a1");
    let left: Vec<String> = names(s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(left, ["a4", "other"]);
}

#[test]
fn check_and_dump_online_and_offline() {
    let mut f = start();
    let s = f.socket.clone();
    let svc = f.service().clone();
    stamp(&svc, 1, 4);
    create(&s, "one");
    stamp(&svc, 2, 8);
    match request(&s, Op::Check).unwrap() {
        Reply::Checked(r) => assert!(r.clean, "{r:?}"),
        other => panic!("{other:?}"),
    }
    let Reply::Dump(d) = request(&s, Op::Dump { elements: true }).unwrap() else {
        panic!()
    };
    let one = d
        .versions
        .iter()
        .find(|v| v.snapshot.as_deref() == Some("one"))
        .expect("the snapshot's version");
    assert!(one.nr_elements > 0);
    assert!(!d.elements.as_ref().unwrap().is_empty());
    assert_eq!(d.superblock["chunk_size"], CHUNK);
    // Offline tools are refused while the daemon holds the store.
    assert!(matches!(
        offline::check(&f.store_path()),
        Err(Error::Locked { .. })
    ));
    drop(svc);
    f.stop();
    let r = offline::check(&f.store_path()).unwrap();
    assert!(r.clean, "{r:?}");
    let before = std::fs::read(f.store_path()).unwrap();
    let d2 = offline::dump(&f.store_path(), false).unwrap();
    assert!(d2.elements.is_none());
    assert_eq!(d2.versions, d.versions);
    assert_eq!(
        std::fs::read(f.store_path()).unwrap(),
        before,
        "offline check and dump write nothing"
    );
}

fn status(s: &Path) -> ublk_snapd::protocol::Status {
    match request(s, Op::Status).unwrap() {
        Reply::Status(st) => st,
        other => panic!("{other:?}"),
    }
}

/// A full store, through the origin device's ublk target (what the kernel calls): a
/// write that needs a copy-out fails with ENOSPC, the errno the kernel is given,
/// writes nothing, and `status` counts it; a write that needs no space still works.
#[test]
fn a_full_store_answers_origin_writes_with_enospc_and_status_counts_them() {
    use ublk_target::Target;
    let f = Fixture::start(ORIGIN_LEN, 2 << 20, Limits::default());
    let s = f.socket.clone();
    let svc = f.service().clone();
    let origin = svc.target(Dev::Origin(0));
    let s1 = Dev::Snap(blockdev::ids::SnapId(create(&s, "s1")));
    let data = vec![0xAB; CHUNK as usize];
    let mut c = 0;
    let err = loop {
        match origin.write(c * CHUNK, &data) {
            Ok(()) => c += 1,
            Err(e) => break e,
        }
        assert!(c < ORIGIN_LEN / CHUNK, "a 2 MiB store took every copy-out");
    };
    assert!(c > 0, "not even one copy-out fitted");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(ublk_target::errno::errno(&err), libc::ENOSPC);
    let mut buf = vec![1u8; CHUNK as usize];
    origin.read(c * CHUNK, &mut buf).unwrap();
    assert!(
        buf.iter().all(|&b| b == 0),
        "the refused write changed the origin"
    );
    let st = status(&s);
    assert_eq!(st.enospc_writes, 1);
    assert_eq!(st.space_policy, "fail");
    let err = origin
        .write((c + 1) * CHUNK + 512, &[7; 4096])
        .expect_err("a partial-chunk write to a fresh chunk fitted");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(status(&s).enospc_writes, 2);
    // Rewriting a chunk already copied out needs no space.
    origin.write(0, &[9; 4096]).unwrap();
    assert_eq!(status(&s).enospc_writes, 2);
    let mut one = vec![0u8; CHUNK as usize];
    svc.store().read(s1, 0, &mut one).unwrap();
    assert!(one.iter().all(|&b| b == 0), "s1 changed");
}
