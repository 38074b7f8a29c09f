//! Nothing vanishes under a reader (issue 20): a snapshot exported over NBD or being
//! sent is never pruned (reported as skipped, with the reason), never merged, never
//! deleted, and the space policy is kept off it (in use) until the last reader
//! lets go; then `prune` takes it like any other. And a snapshot of the origin that
//! must wait for a merge to end does not stop the other devices' reads meanwhile.
mod common;

use common::daemon::{remote_code, Fixture};
use std::io::{BufRead, Write};
use ublk_snapd::{
    client,
    daemon::control::Limits,
    protocol::{ErrorCode, Op, PrunePolicy, Reply},
};

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

fn prune(f: &Fixture, dry_run: bool) -> ublk_snapd::protocol::Pruned {
    let r = client::request(
        &f.socket,
        Op::Prune {
            policy: PrunePolicy {
                keep_last: 1,
                ..PrunePolicy::default()
            },
            prefix: None,
            dry_run,
            origin: None,
        },
    );
    match r {
        Ok(Reply::Pruned(p)) => p,
        other => panic!("{other:?}"),
    }
}

fn in_use(f: &Fixture, name: &str) -> bool {
    let s = f.service().store().lock();
    let id = s.lookup(name).expect("snapshot");
    s.is_in_use(id)
}

#[test]
fn exported_and_sent_snapshots_are_never_pruned_merged_or_deleted() {
    let f = Fixture::start(32 << 20, 64 << 20, Limits::default());
    // data enough that a send of it fills the socket's buffer and waits there
    let data = blockdev::pattern(5, 24 << 20);
    f.service()
        .store()
        .write(exception_store::Dev::Origin(0), 0, &data)
        .unwrap();
    for n in ["a", "b", "c"] {
        create(&f, n);
        f.service()
            .store()
            .write(exception_store::Dev::Origin(0), 0, &[n.as_bytes()[0]; 4096])
            .unwrap();
    }
    // `a` exported over NBD (read-only)
    let r = client::request(
        &f.socket,
        Op::Export {
            name: "a".into(),
            origin: None,
            snapshot: true,
            writable: false,
            export: None,
        },
    );
    assert!(matches!(r, Ok(Reply::Exported(_))), "{r:?}");
    assert!(
        in_use(&f, "a"),
        "an exported snapshot is spared by the space policy"
    );
    // `b` being sent: a raw connection that reads the `sending` line and then
    // nothing, so the sender blocks with `b` held
    let mut conn = std::os::unix::net::UnixStream::connect(&f.socket).unwrap();
    conn.write_all(b"{\"version\":1,\"op\":\"send\",\"name\":\"b\"}\n")
        .unwrap();
    let mut rd = std::io::BufReader::new(conn);
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    assert!(line.contains("\"sending\""), "{line}");
    assert!(
        in_use(&f, "b"),
        "a snapshot being sent is spared by the space policy"
    );

    let p = prune(&f, false);
    assert!(p.deleted.is_empty(), "{p:?}");
    let mut skipped: Vec<(String, String)> =
        p.skipped.into_iter().map(|s| (s.name, s.reason)).collect();
    skipped.sort();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0].0, "a");
    assert!(skipped[0].1.contains("exported"), "{skipped:?}");
    assert_eq!(skipped[1], ("b".to_string(), "being sent".to_string()));
    for (name, op) in [
        ("a", Op::Delete { name: "a".into() }),
        ("b", Op::Delete { name: "b".into() }),
        (
            "b",
            Op::Merge {
                name: "b".into(),
                deferred: false,
            },
        ),
    ] {
        let what = format!("{op:?}");
        let code = remote_code(client::request(&f.socket, op));
        assert_eq!(code, ErrorCode::Busy, "{what} of {name}");
    }

    // the readers let go: both become ordinary prune candidates
    drop(rd);
    let r = client::request(&f.socket, Op::Unexport { export: "a".into() });
    assert!(r.is_ok(), "{r:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while in_use(&f, "b") {
        assert!(std::time::Instant::now() < deadline, "the send never ended");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!in_use(&f, "a"));
    let p = prune(&f, false);
    let mut gone: Vec<String> = p.deleted.into_iter().map(|d| d.name).collect();
    gone.sort();
    assert_eq!(gone, ["a", "b"]);
}

/// The merge's cursor, while a merge runs.
fn merge_cursor(store: &exception_store::SharedStore) -> Option<u64> {
    let st = store.lock().status();
    st.jobs.iter().find(|j| j.kind == "merge").map(|j| j.cursor)
}

/// A snapshot of the origin asked for while a big merge runs waits for the merge
/// (it must capture the merged origin), but the other devices are served meanwhile.
/// The bug: `create` ran the whole remaining merge under one hold of the store lock
/// (`Store::finish_merge` inside `Store::create_snapshot`), so every device's reads
/// and writes stalled until the merge ended. Here nothing else advances the merge
/// (no background worker), so a merge cursor seen past its start, before and after
/// a read of another snapshot, means that read was served between two batches of
/// the create's merge: the old code held the lock from its first batch to its
/// return, and no such read could exist.
#[test]
fn a_create_finishing_a_merge_serves_other_devices_between_batches() {
    use exception_store::Dev;
    use std::sync::atomic::{AtomicBool, Ordering};
    const LEN: u64 = 64 << 20; // 1024 chunks: 16 merge batches
    let f = Fixture::start(LEN, 256 << 20, Limits::default());
    let store = f.service().store().clone();
    let old = blockdev::pattern(7, LEN as usize);
    store.write(Dev::Origin(0), 0, &old).unwrap();
    create(&f, "t"); // the snapshot read during the create
    create(&f, "s"); // the snapshot merged
    store
        .write(Dev::Origin(0), 0, &blockdev::pattern(8, LEN as usize))
        .unwrap(); // s reads a copy of every chunk
    let r = client::request(
        &f.socket,
        Op::Merge {
            name: "s".into(),
            deferred: false,
        },
    );
    assert!(matches!(r, Ok(Reply::Merging(_))), "{r:?}");
    assert_eq!(
        merge_cursor(&store),
        Some(0),
        "the merge should not have begun"
    );
    let t = store.lock().lookup("t").expect("t");
    let created = AtomicBool::new(false);
    let mut between = 0;
    let mut reads = 0;
    std::thread::scope(|sc| {
        let c = sc.spawn(|| {
            let r = client::request(
                &f.socket,
                Op::Create {
                    name: "after".into(),
                    from: None,
                    freeze: false,
                },
            );
            created.store(true, Ordering::SeqCst);
            r
        });
        let mut buf = vec![0u8; 64 << 10];
        let mut off = 0;
        while !created.load(Ordering::SeqCst) {
            let before = merge_cursor(&store);
            store.read(Dev::Snap(t), off, &mut buf).unwrap();
            assert!(
                buf[..] == old[off as usize..off as usize + buf.len()],
                "t misread at {off}"
            );
            reads += 1;
            if before.is_some_and(|c| c > 0) && merge_cursor(&store).is_some() {
                between += 1;
            }
            off = (off + buf.len() as u64) % LEN;
        }
        let r = c.join().unwrap();
        assert!(matches!(r, Ok(Reply::Created(_))), "{r:?}");
    });
    assert_eq!(
        merge_cursor(&store),
        None,
        "the create left the merge running"
    );
    assert!(
        between > 0,
        "no read of t was served between the merge's batches ({reads} reads in all): \
         the create held the store for the whole merge"
    );
    // the new snapshot captured the merged origin: what s read
    let after = store.lock().lookup("after").expect("after");
    let mut got = vec![0u8; LEN as usize];
    store.read(Dev::Snap(after), 0, &mut got).unwrap();
    assert!(
        got == old,
        "the snapshot taken after the merge misses merged data"
    );
}
