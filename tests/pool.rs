//! A pool through the daemon's control socket: `origin add`, `ORIGIN@NAME` creates,
//! list, I/O as the kernel's queues do it (the devices' targets), a restart that
//! attaches every origin from its recorded path, an origin whose file is missing at
//! start (reported, the others served), and `origin remove`. Needs no kernel.
mod common;

use common::daemon::{config, remote_code, Fixture};
use exception_store::Dev;
use std::path::Path;
use ublk_snapd::{
    client::request,
    daemon::control::Limits,
    protocol::{ErrorCode, Op, Reply},
    service::Service,
};
use ublk_target::Target;

const ORIGIN_LEN: u64 = 8 << 20;
const B_LEN: u64 = 4 << 20;

fn origins(s: &Path) -> Vec<(String, u64, usize, String)> {
    match request(s, Op::OriginList).unwrap() {
        Reply::Origins(l) => l
            .origins
            .into_iter()
            .map(|o| (o.name, o.size_bytes, o.snapshots, o.state))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn create(s: &Path, name: &str) -> Result<u32, ErrorCode> {
    match request(
        s,
        Op::Create {
            name: name.into(),
            from: None,
            freeze: false,
        },
    ) {
        Ok(Reply::Created(c)) => Ok(c.id),
        other => Err(remote_code(other)),
    }
}

fn listed(s: &Path) -> Vec<String> {
    match request(s, Op::List).unwrap() {
        Reply::List(l) => l
            .snapshots
            .into_iter()
            .map(|s| match s.origin {
                Some(o) => format!("{o}@{}", s.name),
                None => s.name,
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn file(dir: &Path, name: &str, len: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p
}

#[test]
fn a_pool_serves_origins_by_name_across_a_restart() {
    let mut fx = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let extra = tempfile::tempdir().unwrap();
    let b = file(extra.path(), "b.img", B_LEN);
    // one origin: bare names as before, `@` is part of a name
    create(&fx.socket, "x@y").unwrap();
    assert_eq!(listed(&fx.socket), vec!["x@y"]);
    let added = match request(
        &fx.socket,
        Op::OriginAdd {
            name: "b".into(),
            device: b.display().to_string(),
        },
    )
    .unwrap()
    {
        Reply::OriginAdded(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!((added.id, added.size_bytes), (1, B_LEN));
    // bad adds: a taken name, an `@`, a missing file
    for (name, dev) in [
        ("b", b.display().to_string()),
        ("c@d", b.display().to_string()),
        ("c", "/nonexistent/c.img".to_string()),
    ] {
        let r = request(
            &fx.socket,
            Op::OriginAdd {
                name: name.into(),
                device: dev,
            },
        );
        assert!(matches!(
            remote_code(r),
            ErrorCode::Exists | ErrorCode::Invalid | ErrorCode::Io
        ));
    }
    // writes through the devices' targets, as the queues do them
    let svc = fx.service().clone();
    let tb = svc.target(Dev::Origin(1));
    let t0 = svc.target(Dev::Origin(0));
    assert_eq!(tb.size_bytes(), B_LEN);
    tb.write(4096, &[0xbb; 4096]).unwrap();
    t0.write(4096, &[0xaa; 4096]).unwrap();
    let sb = create(&fx.socket, "b@s1").unwrap();
    let s0 = create(&fx.socket, "origin@s1").unwrap();
    assert_eq!(create(&fx.socket, "b@s1"), Err(ErrorCode::Exists));
    assert_eq!(
        create(&fx.socket, "nope@s1").map(drop),
        Ok(()),
        "a plain name with @"
    );
    tb.write(4096, &[0xcc; 4096]).unwrap();
    t0.write(4096, &[0xdd; 4096]).unwrap();
    tb.flush().unwrap();
    let mut got = [0u8; 4096];
    svc.target(Dev::Snap(exception_store_id(sb)))
        .read(4096, &mut got)
        .unwrap();
    assert_eq!(got, [0xbb; 4096]);
    svc.target(Dev::Snap(exception_store_id(s0)))
        .read(4096, &mut got)
        .unwrap();
    assert_eq!(got, [0xaa; 4096]);
    let mut l = listed(&fx.socket);
    l.sort();
    assert_eq!(l, vec!["b@s1", "origin@nope@s1", "origin@s1", "origin@x@y"]);
    assert_eq!(
        origins(&fx.socket),
        vec![
            ("origin".into(), ORIGIN_LEN, 3, "idle".into()),
            ("b".into(), B_LEN, 1, "idle".into())
        ]
    );
    // restart: b is attached from its recorded path
    let (origin, store) = (fx.origin_path(), fx.store_path());
    drop(tb);
    drop(t0);
    drop(svc);
    fx.stop();
    let svc = Service::open(config(&origin, &store)).unwrap();
    let mut got = [0u8; 4096];
    svc.target(Dev::Origin(1)).read(4096, &mut got).unwrap();
    assert_eq!(got, [0xcc; 4096]);
    assert!(!svc.origins_missing());
    assert_eq!(svc.origin_list().origins.len(), 2);
    // remove refused with a snapshot, then with it
    assert!(svc.origin_remove("b", false).is_err());
    assert!(
        svc.origin_remove("origin", true).is_err(),
        "the first origin stays"
    );
    let gone = svc.origin_remove("b", true).unwrap();
    assert_eq!(gone.name, "b");
    svc.shutdown().unwrap();
    drop(svc);
    let svc = Service::open(config(&origin, &store)).unwrap();
    assert!(svc.store().lock().run_background(64).is_ok());
    svc.shutdown().unwrap();
    drop(svc);
    let svc = Service::open(config(&origin, &store)).unwrap();
    assert_eq!(
        svc.origin_list().origins.len(),
        1,
        "b removed once its passes ran"
    );
    let rep = svc.store().lock().check().unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    svc.shutdown().unwrap();
}

#[test]
fn an_origin_missing_at_start_is_reported_and_the_others_served() {
    let mut fx = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let extra = tempfile::tempdir().unwrap();
    let b = file(extra.path(), "b.img", B_LEN);
    request(
        &fx.socket,
        Op::OriginAdd {
            name: "b".into(),
            device: b.display().to_string(),
        },
    )
    .unwrap();
    create(&fx.socket, "b@s1").unwrap();
    let (origin, store) = (fx.origin_path(), fx.store_path());
    fx.stop();
    // the wrong size first, then no file at all
    std::fs::File::create(&b)
        .unwrap()
        .set_len(B_LEN / 2)
        .unwrap();
    for gone in [false, true] {
        if gone {
            std::fs::remove_file(&b).unwrap();
        }
        let svc = Service::open(config(&origin, &store)).unwrap();
        assert!(svc.origins_missing());
        let l = svc.origin_list();
        let st = &l.origins[1].state;
        assert!(st.starts_with("missing"), "{st}");
        assert_eq!(l.origins[0].state, "idle");
        // the first origin is served; b's I/O is refused with a clear error
        let t0 = svc.target(Dev::Origin(0));
        t0.write(0, &[1; 4096]).unwrap();
        let mut buf = [0u8; 512];
        let e = svc.store().read(Dev::Origin(1), 0, &mut buf).unwrap_err();
        assert!(e.to_string().contains("origin"), "{e}");
        drop(t0);
        svc.shutdown().unwrap();
    }
}

/// A protocol snapshot id as the store's.
fn exception_store_id(id: u32) -> blockdev::ids::SnapId {
    blockdev::ids::SnapId(id)
}

fn group(s: &Path, name: &str, origins: &[&str]) -> Result<Vec<String>, ErrorCode> {
    match request(
        s,
        Op::CreateGroup {
            name: name.into(),
            origins: origins.iter().map(|o| o.to_string()).collect(),
            freeze: false,
        },
    ) {
        Ok(Reply::GroupCreated(g)) => Ok(g.members),
        other => Err(remote_code(other)),
    }
}

/// A pool of three origins: the first (`origin`, ORIGIN_LEN), `b` and `c` (B_LEN each,
/// files in the returned directory).
fn pool_of_three() -> (Fixture, tempfile::TempDir) {
    let fx = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let extra = tempfile::tempdir().unwrap();
    for o in ["b", "c"] {
        let f = file(extra.path(), &format!("{o}.img"), B_LEN);
        request(
            &fx.socket,
            Op::OriginAdd {
                name: o.into(),
                device: f.display().to_string(),
            },
        )
        .unwrap();
    }
    (fx, extra)
}

#[test]
fn a_group_is_created_held_pruned_and_deleted_as_one() {
    let (fx, _extra) = pool_of_three();
    let svc = fx.service().clone();
    let (ta, tb) = (svc.target(Dev::Origin(0)), svc.target(Dev::Origin(1)));
    ta.write(0, &[1; 4096]).unwrap();
    tb.write(0, &[1; 4096]).unwrap();
    assert_eq!(
        group(&fx.socket, "g1", &["origin", "b"]).unwrap(),
        vec!["origin@g1", "b@g1"]
    );
    ta.write(0, &[2; 4096]).unwrap();
    tb.write(0, &[2; 4096]).unwrap();
    // refused as a whole
    assert_eq!(group(&fx.socket, "g1", &["b", "c"]), Err(ErrorCode::Exists));
    assert_eq!(
        group(&fx.socket, "g9", &["b", "nope"]),
        Err(ErrorCode::NoSuchOrigin)
    );
    assert_eq!(group(&fx.socket, "g9", &["b"]), Err(ErrorCode::Invalid));
    let l = match request(&fx.socket, Op::List).unwrap() {
        Reply::List(l) => l,
        other => panic!("{other:?}"),
    };
    let members: Vec<_> = l.snapshots.iter().filter(|s| s.group.is_some()).collect();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].group, members[1].group);
    let mut got = [0u8; 4096];
    for m in &members {
        svc.target(Dev::Snap(exception_store_id(m.id)))
            .read(0, &mut got)
            .unwrap();
        assert_eq!(got, [1; 4096], "{:?}@{}", m.origin, m.name);
    }
    // a bare name two origins have places no single snapshot: a clear refusal
    let r = request(&fx.socket, Op::Activate { name: "g1".into() });
    assert_eq!(remote_code(r), ErrorCode::Invalid);
    // hold and release the group by its name
    request(&fx.socket, Op::Hold { name: "g1".into() }).unwrap();
    let held = match request(&fx.socket, Op::List).unwrap() {
        Reply::List(l) => l.snapshots.iter().filter(|s| s.hold).count(),
        other => panic!("{other:?}"),
    };
    assert_eq!(held, 2);
    request(&fx.socket, Op::Release { name: "g1".into() }).unwrap();
    // prune counts a group once, per series: two more groups, keep the last one
    group(&fx.socket, "g2", &["origin", "b"]).unwrap();
    group(&fx.socket, "g3", &["origin", "b", "c"]).unwrap();
    let pruned = match request(
        &fx.socket,
        Op::Prune {
            policy: ublk_snapd::protocol::PrunePolicy {
                keep_last: 1,
                ..Default::default()
            },
            prefix: Some("g".into()),
            dry_run: false,
            origin: None,
        },
    )
    .unwrap()
    {
        Reply::Pruned(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        pruned.deleted.len(),
        4,
        "g1 and g2, every member: {pruned:?}"
    );
    assert_eq!(pruned.kept, 1);
    // delete the last group by its name: every member in one commit
    request(&fx.socket, Op::Delete { name: "g3".into() }).unwrap();
    let left = match request(&fx.socket, Op::List).unwrap() {
        Reply::List(l) => l.snapshots.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(left, 0);
}

/// `prune --origin NAME` considers only NAME's snapshots and the groups with a
/// member in NAME (each goes whole); the other origins' own snapshots are left.
#[test]
fn prune_of_one_origin_leaves_the_others() {
    let (fx, _extra) = pool_of_three();
    for n in ["origin@s1", "origin@s2", "b@s1", "b@s2"] {
        create(&fx.socket, n).unwrap();
    }
    group(&fx.socket, "t1", &["origin", "c"]).unwrap();
    group(&fx.socket, "t2", &["b", "c"]).unwrap();
    let prune = |origin: &str| match request(
        &fx.socket,
        Op::Prune {
            policy: ublk_snapd::protocol::PrunePolicy {
                keep_last: 1,
                ..Default::default()
            },
            prefix: None,
            dry_run: false,
            origin: Some(origin.into()),
        },
    ) {
        Ok(Reply::Pruned(p)) => Ok(p.deleted.into_iter().map(|d| d.name).collect::<Vec<_>>()),
        other => Err(remote_code(other)),
    };
    // b: its own s1 goes (s2 kept); of the groups only t2 has a member in b: kept
    assert_eq!(prune("b"), Ok(vec!["s1".to_string()]));
    let mut l = listed(&fx.socket);
    l.sort();
    assert_eq!(
        l,
        [
            "b@s2",
            "b@t2",
            "c@t1",
            "c@t2",
            "origin@s1",
            "origin@s2",
            "origin@t1"
        ]
    );
    // c: both groups have a member in c; t1, the older, goes whole (origin@t1 too)
    assert_eq!(prune("c"), Ok(vec!["t1".to_string(), "t1".to_string()]));
    let mut l = listed(&fx.socket);
    l.sort();
    assert_eq!(l, ["b@s2", "b@t2", "c@t2", "origin@s1", "origin@s2"]);
    assert_eq!(prune("nope"), Err(ErrorCode::NoSuchOrigin));
}

#[test]
fn a_group_merge_rolls_every_origin_back_together() {
    let fx = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let extra = tempfile::tempdir().unwrap();
    let f = file(extra.path(), "b.img", B_LEN);
    request(
        &fx.socket,
        Op::OriginAdd {
            name: "b".into(),
            device: f.display().to_string(),
        },
    )
    .unwrap();
    let svc = fx.service().clone();
    let (ta, tb) = (svc.target(Dev::Origin(0)), svc.target(Dev::Origin(1)));
    ta.write(0, &[1; 4096]).unwrap();
    tb.write(0, &[2; 4096]).unwrap();
    group(&fx.socket, "g", &["origin", "b"]).unwrap();
    ta.write(0, &[3; 4096]).unwrap();
    tb.write(0, &[4; 4096]).unwrap();
    // --deferred is one snapshot's
    let r = request(
        &fx.socket,
        Op::Merge {
            name: "g".into(),
            deferred: true,
        },
    );
    assert_eq!(remote_code(r), ErrorCode::Invalid);
    match request(
        &fx.socket,
        Op::Merge {
            name: "g".into(),
            deferred: false,
        },
    )
    .unwrap()
    {
        Reply::Merging(c) => assert_eq!(c.name, "g"),
        other => panic!("{other:?}"),
    }
    let mut got = [0u8; 4096];
    ta.read(0, &mut got).unwrap();
    assert_eq!(got, [1; 4096], "origin rolled back");
    tb.read(0, &mut got).unwrap();
    assert_eq!(got, [2; 4096], "b rolled back with it");
    svc.store().lock().run_background(64).unwrap();
    ta.read(0, &mut got).unwrap();
    assert_eq!(got, [1; 4096]);
    let left = match request(&fx.socket, Op::List).unwrap() {
        Reply::List(l) => l.snapshots.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(left, 0, "the members are gone");
}
