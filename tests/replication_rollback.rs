//! The rollback snapshot a receive takes (`recv+<id>`) is internal, while the
//! receive runs and after it was cut: `list` does not show it, no control op can
//! name it (delete, merge, hold, activate, create from it, send it: refused with
//! `busy`), `prune` never counts or deletes it, and once the receive ends it is
//! gone; a cut receive's one still rolls back with `receive --force`. A pending
//! receive (what a daemon that died mid-receive finds) blocks an rbd diff until
//! `--force`.
mod common;

use common::daemon::{remote_code, Fixture};
use exception_store::Dev;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::{
    io::Read,
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};
use ublk_snapd::{
    client,
    daemon::control::Limits,
    protocol::{ErrorCode, Op, PrunePolicy, Reply},
};

const SIZE: u64 = 8 << 20;

fn start() -> Fixture {
    Fixture::start(SIZE, 48 << 20, Limits::default())
}

fn create(f: &Fixture, name: &str, from: Option<&str>) -> Result<Reply, ublk_snapd::Error> {
    client::request(
        &f.socket,
        Op::Create {
            name: name.into(),
            from: from.map(Into::into),
            freeze: false,
        },
    )
}

fn source() -> Fixture {
    let f = start();
    let mut rng = SmallRng::seed_from_u64(31);
    for _ in 0..200 {
        let off = rng.gen_range(0..SIZE / 4096) * 4096;
        let len = (rng.gen_range(1..64u64) * 4096).min(SIZE - off);
        let d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        f.service().store().write(Dev::Origin(0), off, &d).unwrap();
    }
    assert!(matches!(create(&f, "s1", None), Ok(Reply::Created(_))));
    f
}

fn full_stream(f: &Fixture) -> Vec<u8> {
    let mut out = Vec::new();
    let op = Op::Send {
        name: "s1".into(),
        from: None,
        resume: None,
    };
    client::stream::send(&f.socket, op, &mut out, &mut |_| {}).unwrap();
    out
}

/// Names in the store itself (the rollback snapshot included).
fn store_names(f: &Fixture) -> Vec<String> {
    let s = f.service().store().lock().snapshots();
    s.into_iter().map(|x| x.name).collect()
}

/// Names `list` shows.
fn listed(f: &Fixture) -> Vec<String> {
    match client::request(&f.socket, Op::List).unwrap() {
        Reply::List(l) => l.snapshots.into_iter().map(|s| s.name).collect(),
        other => panic!("{other:?}"),
    }
}

/// The rollback snapshot is there, hidden and untouchable.
fn check_internal(f: &Fixture) -> String {
    let rb: Vec<_> = store_names(f)
        .into_iter()
        .filter(|n| n.starts_with("recv+"))
        .collect();
    assert_eq!(rb.len(), 1, "{:?}", store_names(f));
    let rb = rb[0].clone();
    assert!(!listed(f).contains(&rb), "{:?}", listed(f));
    let name = || rb.clone();
    for op in [
        Op::Delete { name: name() },
        Op::Merge {
            name: name(),
            deferred: false,
        },
        Op::Hold { name: name() },
        Op::Activate { name: name() },
        Op::Send {
            name: name(),
            from: None,
            resume: None,
        },
    ] {
        let what = format!("{op:?}");
        let r = client::request(&f.socket, op);
        if let Err(e) = &r {
            assert!(e.to_string().contains("rollback point"), "{what}: {e}");
        }
        assert_eq!(remote_code(r), ErrorCode::Busy, "{what}");
    }
    assert_eq!(remote_code(create(f, "clone", Some(&rb))), ErrorCode::Busy);
    let prune = client::request(
        &f.socket,
        Op::Prune {
            policy: PrunePolicy {
                keep_last: 0,
                hourly: 1,
                ..PrunePolicy::default()
            },
            prefix: None,
            dry_run: true,
            origin: None,
        },
    );
    match prune {
        Ok(Reply::Pruned(p)) => assert!(
            p.deleted.iter().all(|d| d.name != rb) && p.skipped.iter().all(|d| d.name != rb),
            "{p:?}"
        ),
        other => panic!("{other:?}"),
    }
    rb
}

/// A reader fed piece by piece through a channel (end: the sender dropped).
struct Fed(Receiver<Vec<u8>>, Vec<u8>);

impl Read for Fed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_empty() {
            match self.0.recv() {
                Ok(p) => self.1 = p,
                Err(_) => return Ok(0),
            }
        }
        let k = buf.len().min(self.1.len());
        buf[..k].copy_from_slice(&self.1[..k]);
        self.1.drain(..k);
        Ok(k)
    }
}

/// A receive into `f`'s first origin on a thread, its stream fed through the
/// returned sender (end: drop it).
#[allow(clippy::type_complexity)]
fn receive_fed(
    f: &Fixture,
) -> (
    mpsc::Sender<Vec<u8>>,
    std::thread::JoinHandle<Result<ublk_snapd::protocol::Received, ublk_snapd::Error>>,
) {
    let (tx, rx) = mpsc::channel();
    let sock = f.socket.clone();
    let t = std::thread::spawn(move || {
        client::stream::receive(
            &sock,
            None,
            false,
            false,
            &mut Fed(rx, Vec::new()),
            &mut |_| {},
        )
    });
    (tx, t)
}

#[test]
fn rollback_snapshot_is_internal_while_a_receive_runs() {
    let src = source();
    let full = full_stream(&src);
    let dst = start();
    let (tx, t) = receive_fed(&dst);
    tx.send(full[..full.len() / 2].to_vec()).unwrap();
    // The receive took its rollback snapshot once the header arrived.
    let end = Instant::now() + Duration::from_secs(10);
    while !store_names(&dst).iter().any(|n| n.starts_with("recv+")) {
        assert!(Instant::now() < end, "no rollback snapshot appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    check_internal(&dst);
    tx.send(full[full.len() / 2..].to_vec()).unwrap();
    drop(tx);
    let r = t.join().unwrap().unwrap();
    assert_eq!(r.name, "s1");
    assert_eq!(store_names(&dst), ["s1"]);
    assert_eq!(listed(&dst), ["s1"]);
}

#[test]
fn rollback_snapshot_of_a_cut_receive_stays_internal_until_forced() {
    let src = source();
    let full = full_stream(&src);
    let dst = start();
    assert!(matches!(create(&dst, "mine", None), Ok(Reply::Created(_))));
    let cut = client::stream::receive(
        &dst.socket,
        None,
        false,
        false,
        &mut &full[..full.len() / 2],
        &mut |_| {},
    );
    assert!(cut.unwrap_err().to_string().contains("resume"));
    let rb = check_internal(&dst);
    assert_eq!(listed(&dst), ["mine"]);
    // `--force` drops the unfinished receive: the rollback point goes with it.
    let r = client::stream::receive(&dst.socket, None, true, false, &mut &full[..], &mut |_| {})
        .unwrap();
    assert!(
        r.forced.iter().any(|f| f.contains("dropped")),
        "{:?}",
        r.forced
    );
    assert!(!store_names(&dst).contains(&rb));
    assert_eq!(listed(&dst), ["mine", "s1"]);
}

/// What a daemon that died mid-receive finds at its next start (a pending receive
/// and its rollback point) blocks an rbd diff too, until `--force` drops it; then
/// the diff is applied whole (docs/cli.md, "a cut one is not resumed").
#[test]
fn pending_receive_blocks_an_rbd_diff_until_forced() {
    let src = source();
    let full = full_stream(&src);
    let mut rbd = Vec::new();
    let mut w = exception_store::stream::rbd_diff::Writer::new(&mut rbd, None);
    let op = Op::Send {
        name: "s1".into(),
        from: None,
        resume: None,
    };
    client::stream::send_records(&src.socket, op, &mut |e| w.event(e), &mut |_| {}).unwrap();
    let dst = start();
    let cut = client::stream::receive(
        &dst.socket,
        None,
        false,
        false,
        &mut &full[..full.len() / 2],
        &mut |_| {},
    );
    assert!(cut.is_err());
    let rb = check_internal(&dst);
    let e = client::stream::receive(&dst.socket, None, false, true, &mut &rbd[..], &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("pending") && e.contains("--force"), "{e}");
    assert!(store_names(&dst).contains(&rb), "still pending");
    let r =
        client::stream::receive(&dst.socket, None, true, true, &mut &rbd[..], &mut |_| {}).unwrap();
    assert!(
        r.forced.iter().any(|f| f.contains("dropped")),
        "{:?}",
        r.forced
    );
    assert_eq!(store_names(&dst), ["s1"]);
    let s = dst.service().store();
    let id = s.lock().lookup("s1").unwrap();
    let mut got = vec![0u8; SIZE as usize];
    s.read(Dev::Snap(id), 0, &mut got).unwrap();
    let sid = src.service().store().lock().lookup("s1").unwrap();
    let mut want = vec![0u8; SIZE as usize];
    src.service()
        .store()
        .read(Dev::Snap(sid), 0, &mut want)
        .unwrap();
    assert!(got == want);
}

fn export_origin(f: &Fixture, writable: bool) -> Result<Reply, ublk_snapd::Error> {
    client::request(
        &f.socket,
        Op::Export {
            name: "-".into(),
            origin: None,
            snapshot: false,
            writable,
            export: Some("o".into()),
        },
    )
}

/// Writers of the origin through NBD are kept out during a receive, as the ublk
/// device is: a receive is refused while a writable export of the origin exists,
/// and a writable export of the origin is refused while a receive runs (a
/// read-only one is not); once the receive ends, it can be added.
#[test]
fn a_receive_and_a_writable_origin_export_exclude_each_other() {
    let src = source();
    let full = full_stream(&src);
    let dst = start();
    assert!(matches!(export_origin(&dst, true), Ok(Reply::Exported(_))));
    let e = client::stream::receive(&dst.socket, None, false, false, &mut &full[..], &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("unexport"), "{e}");
    assert!(store_names(&dst).is_empty(), "nothing was received");
    let r = client::request(&dst.socket, Op::Unexport { export: "o".into() });
    assert!(r.is_ok(), "{r:?}");

    let (tx, t) = receive_fed(&dst);
    tx.send(full[..full.len() / 2].to_vec()).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !store_names(&dst).iter().any(|n| n.starts_with("recv+")) {
        assert!(Instant::now() < end, "the receive never began");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(remote_code(export_origin(&dst, true)), ErrorCode::Busy);
    assert!(matches!(export_origin(&dst, false), Ok(Reply::Exported(_))));
    let r = client::request(&dst.socket, Op::Unexport { export: "o".into() });
    assert!(r.is_ok(), "{r:?}");
    tx.send(full[full.len() / 2..].to_vec()).unwrap();
    drop(tx);
    assert_eq!(t.join().unwrap().unwrap().name, "s1");
    assert!(matches!(export_origin(&dst, true), Ok(Reply::Exported(_))));
}

/// A crash between `--force`'s two commits (its rollback snapshot created, not yet
/// merged) leaves `recv-force+<id>` behind: the next start deletes it, and leaves
/// the user's snapshots alone.
#[test]
fn a_receive_snapshot_left_by_a_crash_is_deleted_at_start() {
    let mut f = start();
    assert!(matches!(create(&f, "mine", None), Ok(Reply::Created(_))));
    f.service()
        .store()
        .create_snapshot("recv-force+0123456789abcdef", None, 1)
        .unwrap();
    // a user cannot take such a name
    assert_eq!(
        remote_code(create(&f, "recv+0123456789abcdef", None)),
        ErrorCode::Invalid
    );
    let (origin, store) = (f.origin_path(), f.store_path());
    f.stop();
    let svc = ublk_snapd::service::Service::open(common::daemon::config(&origin, &store)).unwrap();
    let names: Vec<String> = svc
        .store()
        .lock()
        .snapshots()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["mine"]);
    svc.shutdown().unwrap();
}
