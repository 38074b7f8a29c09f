//! Nothing vanishes under a reader (issue 20): a snapshot exported over NBD or being
//! sent is never pruned (reported as skipped, with the reason), never merged, never
//! deleted, and the space policy is kept off it (in use) until the last reader
//! lets go; then `prune` takes it like any other.
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
