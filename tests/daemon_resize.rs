//! `resize_origin` through the daemon's control protocol, with the origin's ublk
//! target as the kernel calls it (no kernel device here: the store-only part): an
//! origin file that did not grow is refused, one extended with `truncate` is taken,
//! the origin's target (made before the growth) serves the new size at once, the
//! snapshot taken before keeps its size and data, one taken after has the new size,
//! shrinking and bad sizes are refused with nothing changed, and the offline form
//! is refused while the daemon holds the store and works once it stopped.
mod common;

use common::daemon::{remote_code, Fixture, CHUNK};
use exception_store::Dev;
use ublk_snapd::{
    client::request,
    daemon::control::Limits,
    offline,
    protocol::{ErrorCode, Op, Reply},
    Error,
};
use ublk_target::Target;

const OLD: u64 = 8 << 20;
const NEW: u64 = 12 << 20;

fn create(s: &std::path::Path, name: &str) -> Dev {
    let Reply::Created(c) = request(
        s,
        Op::Create {
            name: name.into(),
            from: None,
            freeze: false,
        },
    )
    .unwrap() else {
        panic!("create {name}")
    };
    Dev::Snap(blockdev::ids::SnapId(c.id))
}

fn sizes(s: &std::path::Path) -> Vec<(String, u64)> {
    let Reply::List(l) = request(s, Op::List).unwrap() else {
        panic!("list")
    };
    l.snapshots
        .into_iter()
        .map(|x| (x.name, x.size_bytes))
        .collect()
}

#[test]
fn the_origin_grows_through_the_daemon_and_snapshots_keep_their_size() {
    let mut f = Fixture::start(OLD, 32 << 20, Limits::default());
    let s = f.socket.clone();
    let svc = f.service().clone();
    let origin = svc.target(Dev::Origin(0));
    origin.write(0, &vec![0x11; CHUNK as usize]).unwrap();
    let s1 = create(&s, "s1");
    let s1_target = svc.target(s1);
    // the origin file did not grow: refused, nothing changed
    let txn = |s: &std::path::Path| match request(s, Op::Status).unwrap() {
        Reply::Status(st) => (st.txn_id, st.size_bytes),
        other => panic!("{other:?}"),
    };
    let before = txn(&s);
    assert_eq!(
        remote_code(request(
            &s,
            Op::ResizeOrigin {
                size: None,
                origin: None
            }
        )),
        ErrorCode::Invalid
    );
    assert_eq!(txn(&s), before);
    std::fs::OpenOptions::new()
        .write(true)
        .open(f.origin_path())
        .unwrap()
        .set_len(NEW)
        .unwrap();
    // shrinking, a size past the file's end, half sectors: refused
    for bad in [OLD - 4096, NEW + 4096, OLD + 100] {
        assert_eq!(
            remote_code(request(
                &s,
                Op::ResizeOrigin {
                    size: Some(bad),
                    origin: None
                }
            )),
            ErrorCode::Invalid,
            "{bad}"
        );
    }
    assert_eq!(txn(&s), before);
    let Reply::ResizedOrigin(r) = request(
        &s,
        Op::ResizeOrigin {
            size: None,
            origin: None,
        },
    )
    .unwrap() else {
        panic!("resize_origin")
    };
    assert_eq!((r.old_bytes, r.new_bytes, r.device), (OLD, NEW, None));
    assert_eq!(txn(&s), (r.txn_id, NEW));
    // the targets made before: the origin's serves the new size, the snapshot's not
    assert_eq!(origin.size_bytes(), NEW);
    assert_eq!(s1_target.size_bytes(), OLD);
    origin
        .write(NEW - CHUNK, &vec![0x22; CHUNK as usize])
        .unwrap();
    origin.write(0, &vec![0x33; CHUNK as usize]).unwrap();
    let s2 = create(&s, "s2");
    assert_eq!(svc.target(s2).size_bytes(), NEW);
    assert_eq!(
        sizes(&s),
        vec![("s1".to_string(), OLD), ("s2".to_string(), NEW)]
    );
    let mut b = vec![0u8; CHUNK as usize];
    s1_target.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x11), "s1 lost its data");
    svc.target(s2).read(NEW - CHUNK, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x22));
    // merging the smaller snapshot is refused
    assert_eq!(
        remote_code(request(
            &s,
            Op::Merge {
                name: "s1".into(),
                deferred: false,
            }
        )),
        ErrorCode::Invalid
    );
    let Reply::Checked(c) = request(&s, Op::Check).unwrap() else {
        panic!("check")
    };
    assert!(c.clean, "{c:?}");
    // offline: refused while the daemon holds the store, then it works
    let (store, origin_path) = (f.store_path(), f.origin_path());
    let e = offline::resize_offline(&store, &origin_path, None).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    drop(origin);
    drop(s1_target);
    drop(svc);
    f.stop();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&origin_path)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let r = offline::resize_offline(&store, &origin_path, Some(14 << 20)).unwrap();
    assert_eq!((r.old_bytes, r.new_bytes), (NEW, 14 << 20));
    let r = offline::resize_offline(&store, &origin_path, None).unwrap();
    assert_eq!((r.old_bytes, r.new_bytes), (14 << 20, 16 << 20));
    let e = offline::resize_offline(&store, &origin_path, None).unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");
}
