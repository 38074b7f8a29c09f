//! The ops that act on an origin, on an origin other than a pool's first, through
//! the daemon's control socket (and NBD, and the offline repair): `resize-origin b`,
//! `receive --origin b` (full, incremental, a cut one resumed, the base looked up
//! in b only), `export - --origin b` read back over NBD, `map` and `diff` of b, and
//! `check --repair` finishing a merge into b, a stream of a snapshot the pool holds
//! refused before anything is written. Needs no kernel.
//!
//! The bug: these ops took no origin and acted on the first one only; a pool's
//! other origins could not be grown, received into, exported, mapped, or have a
//! merge into them repaired offline.
mod common;

use common::{
    daemon::{remote_code, Fixture},
    nbd,
};
use exception_store::Dev;
use std::path::Path;
use ublk_snapd::{
    client,
    daemon::control::Limits,
    offline::{self, RepairOptions},
    protocol::{ErrorCode, Op, Reply},
    service::Service,
    Error,
};
use ublk_target::Target;

const ORIGIN_LEN: u64 = 8 << 20;
const B_LEN: u64 = 4 << 20;

/// `dir/NAME.img` of `len` bytes, added to the pool served on `socket` as `name`.
fn add(socket: &Path, dir: &Path, name: &str, len: u64) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.img"));
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    match client::request(
        socket,
        Op::OriginAdd {
            name: name.into(),
            device: p.display().to_string(),
        },
    )
    .unwrap()
    {
        Reply::OriginAdded(_) => p,
        other => panic!("{other:?}"),
    }
}

fn create(socket: &Path, name: &str) {
    let r = client::request(
        socket,
        Op::Create {
            name: name.into(),
            from: None,
            freeze: false,
        },
    );
    assert!(matches!(r, Ok(Reply::Created(_))), "{r:?}");
}

/// What snapshot `name` (`ORIGIN@NAME`) of `svc` reads, `len` bytes.
fn read_snap(svc: &Service, name: &str, len: u64) -> Vec<u8> {
    let id = svc
        .store()
        .lock()
        .lookup(name)
        .unwrap_or_else(|| panic!("no {name}"));
    let mut b = vec![0u8; len as usize];
    svc.store().read(Dev::Snap(id), 0, &mut b).unwrap();
    b
}

fn read_origin(svc: &Service, k: u32, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    svc.target(Dev::Origin(k)).read(0, &mut b).unwrap();
    b
}

fn resize(socket: &Path, origin: Option<&str>, size: Option<u64>) -> Result<Reply, Error> {
    client::request(
        socket,
        Op::ResizeOrigin {
            size,
            origin: origin.map(Into::into),
        },
    )
}

#[test]
fn resize_origin_grows_the_named_origin() {
    let fx = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let dir = tempfile::tempdir().unwrap();
    let b = add(&fx.socket, dir.path(), "b", B_LEN);
    let svc = fx.service().clone();
    svc.target(Dev::Origin(1)).write(0, &[0xb1; 4096]).unwrap();
    create(&fx.socket, "b@s1");
    // b's file grows; resize-origin b takes it, origin 0 is untouched
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(2 * B_LEN)
        .unwrap();
    let r = match resize(&fx.socket, Some("b"), None).unwrap() {
        Reply::ResizedOrigin(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!((r.old_bytes, r.new_bytes), (B_LEN, 2 * B_LEN));
    assert_eq!(svc.target(Dev::Origin(1)).size_bytes(), 2 * B_LEN);
    assert_eq!(svc.target(Dev::Origin(0)).size_bytes(), ORIGIN_LEN);
    // the new part is writable; the snapshot keeps its size and data
    svc.target(Dev::Origin(1))
        .write(B_LEN + 4096, &[0xb2; 4096])
        .unwrap();
    assert_eq!(read_snap(&svc, "b@s1", 4096), vec![0xb1; 4096]);
    let s1 = svc.store().lock().lookup("b@s1").unwrap();
    assert_eq!(svc.store().dev_size(Dev::Snap(s1)).unwrap(), B_LEN);
    // b's size again is refused, naming b's size; a missing origin is the store's
    // NoSuchOrigin, with its name
    match resize(&fx.socket, Some("b"), Some(2 * B_LEN)) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Invalid);
            assert!(message.contains(&(2 * B_LEN).to_string()), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match resize(&fx.socket, Some("nope"), None) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::NoSuchOrigin);
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // no origin named: the first, as an older client means it (its device did not
    // grow: refused, naming the first origin's size)
    match resize(&fx.socket, None, None) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Invalid);
            assert!(message.contains(&ORIGIN_LEN.to_string()), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(svc.target(Dev::Origin(0)).size_bytes(), ORIGIN_LEN);
}

fn send(f: &Fixture, b: &str, from: Option<&str>, resume: Option<String>) -> Vec<u8> {
    let mut out = Vec::new();
    let op = Op::Send {
        name: b.into(),
        from: from.map(Into::into),
        resume,
    };
    client::stream::send(&f.socket, op, &mut out, &mut |_| {}).unwrap();
    out
}

fn receive(
    f: &Fixture,
    origin: Option<&str>,
    stream: &[u8],
    force: bool,
) -> Result<ublk_snapd::protocol::Received, Error> {
    client::stream::receive(
        &f.socket,
        origin,
        force,
        false,
        &mut &stream[..],
        &mut |_| {},
    )
}

fn resume_token(f: &Fixture) -> Option<String> {
    match client::request(&f.socket, Op::Status).unwrap() {
        Reply::Status(s) => s.receive_resume,
        other => panic!("{other:?}"),
    }
}

/// A pool with origin `b` whose b@s1 and b@s2 hold different data.
fn source(dir: &Path) -> Fixture {
    let src = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    add(&src.socket, dir, "b", B_LEN);
    let t = src.service().target(Dev::Origin(1));
    for (i, off) in [0u64, 1 << 20, 3 << 20].iter().enumerate() {
        t.write(*off, &vec![0x10 + i as u8; 128 << 10]).unwrap();
    }
    create(&src.socket, "b@s1");
    t.write(1 << 20, &[0x21; 8192]).unwrap();
    create(&src.socket, "b@s2");
    src
}

#[test]
fn receive_into_a_named_origin_full_incremental_and_resumed() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = source(dirs.0.path());
    let dst = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    add(&dst.socket, dirs.1.path(), "b", B_LEN);
    let dsvc = dst.service().clone();
    dsvc.target(Dev::Origin(0)).write(0, &[0x99; 4096]).unwrap();
    let full = send(&src, "b@s1", None, None);
    // into the first origin: the sizes differ, refused
    let e = receive(&dst, None, &full, false).unwrap_err();
    assert!(e.to_string().contains("bytes"), "{e}");
    // a cut receive into b: pending for b, a receive into the first origin is refused
    let cut = receive(&dst, Some("b"), &full[..full.len() * 3 / 4], false).unwrap_err();
    assert!(cut.to_string().contains("resume"), "{cut}");
    let token = resume_token(&dst).expect("a resume token in status");
    let e = receive(&dst, None, &full, true).unwrap_err();
    match &e {
        Error::Remote { code, message } => {
            assert_eq!(*code, ErrorCode::Busy);
            assert!(message.contains("origin \"b\""), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(read_origin(&dsvc, 0, 4096), vec![0x99; 4096], "untouched");
    // resumed into b
    let rest = send(&src, "b@s1", None, Some(token));
    assert!(rest.len() < full.len());
    let got = receive(&dst, Some("b"), &rest, false).unwrap();
    assert_eq!(got.name, "s1");
    assert!(resume_token(&dst).is_none());
    assert!(read_snap(&src.service().clone(), "b@s1", B_LEN) == read_snap(&dsvc, "b@s1", B_LEN));
    // an incremental: its base is b's s1, which origin c (of b's size) does not have
    add(&dst.socket, dirs.1.path(), "c", B_LEN);
    let inc = send(&src, "b@s2", Some("b@s1"), None);
    let e = receive(&dst, Some("c"), &inc, false).unwrap_err();
    assert!(e.to_string().contains("wrong base"), "{e}");
    let got = receive(&dst, Some("b"), &inc, false).unwrap();
    assert_eq!(got.name, "s2");
    assert!(read_snap(&src.service().clone(), "b@s2", B_LEN) == read_snap(&dsvc, "b@s2", B_LEN));
    assert_eq!(
        read_origin(&dsvc, 1, B_LEN),
        read_snap(&dsvc, "b@s2", B_LEN)
    );
    assert_eq!(read_origin(&dsvc, 0, 4096), vec![0x99; 4096], "untouched");
    // the first origin has no snapshot; a missing origin is named
    let mine: Vec<_> = dsvc
        .store()
        .lock()
        .snapshots()
        .into_iter()
        .map(|s| (s.origin, s.name))
        .collect();
    assert_eq!(mine, [(1, "s1".to_string()), (1, "s2".to_string())]);
    match receive(&dst, Some("nope"), &inc, false) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::NoSuchOrigin);
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// A stream of a snapshot the pool holds (b@s1, received into c of the same pool)
/// is refused before anything is written: a store holds a snapshot (a guid) once.
#[test]
fn a_stream_of_a_snapshot_the_pool_holds_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    add(&src.socket, dir.path(), "c", B_LEN);
    let svc = src.service().clone();
    svc.target(Dev::Origin(2)).write(0, &[0x77; 4096]).unwrap();
    let before = read_origin(&svc, 2, B_LEN);
    let full = send(&src, "b@s1", None, None);
    match receive(&src, Some("c"), &full, false) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Exists);
            assert!(
                message.contains("holds the stream's snapshot already"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(read_origin(&svc, 2, B_LEN), before, "c untouched");
    assert!(resume_token(&src).is_none(), "nothing pending");
    assert!(svc.store().lock().lookup("c@s1").is_none());
}

/// A pool whose origin b is missing at start (its file gone): resize-origin,
/// receive into, export and map of b, and activating or exporting b's snapshot
/// (which reads b where it shares chunks with it) get a clear error naming b,
/// nothing is pending or created, and the store checks clean; the first origin is
/// served.
#[test]
fn ops_on_a_missing_origin_are_refused_clearly() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = source(dirs.0.path());
    let full = send(&src, "b@s1", None, None);
    let mut dst = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let b = add(&dst.socket, dirs.1.path(), "b", B_LEN);
    let created = dst.service().handle(Op::Create {
        name: "b@s0".into(),
        from: None,
        freeze: false,
    });
    assert!(matches!(created.reply, Reply::Created(_)), "{created:?}");
    let (origin, store) = (dst.origin_path(), dst.store_path());
    dst.stop();
    std::fs::remove_file(&b).unwrap();
    let svc = Service::open(common::daemon::config(&origin, &store)).unwrap();
    assert!(svc.origins_missing());
    let refused = |r: ublk_snapd::protocol::Response| match r.reply {
        Reply::Error(e) => e,
        other => panic!("{other:?}"),
    };
    let e = refused(svc.handle(Op::ResizeOrigin {
        size: Some(2 * B_LEN),
        origin: Some("b".into()),
    }));
    assert!(e.message.contains("origin \"b\""), "{e:?}");
    let e = refused(svc.handle(Op::Export {
        name: "-".into(),
        origin: Some("b".into()),
        snapshot: false,
        writable: false,
        export: None,
    }));
    assert!(e.message.contains("origin \"b\""), "{e:?}");
    let e = refused(svc.handle(Op::Activate {
        name: "b@s0".into(),
    }));
    assert!(e.message.contains("origin \"b\""), "{e:?}");
    assert!(!e.message.contains("  "), "one line, single spaces: {e:?}");
    let e = refused(svc.handle(Op::Export {
        name: "b@s0".into(),
        origin: None,
        snapshot: true,
        writable: false,
        export: None,
    }));
    assert!(e.message.contains("origin \"b\""), "{e:?}");
    // receive: the stream as the bytes after the request line, then EOF
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.shutdown(std::net::Shutdown::Write).unwrap();
    svc.handle_stream(
        Op::Receive {
            force: false,
            rbd_diff: false,
            origin: Some("b".into()),
        },
        theirs,
        full,
    );
    let mut line = String::new();
    std::io::Read::read_to_string(&mut ours, &mut line).unwrap();
    let r: ublk_snapd::protocol::Response = serde_json::from_str(line.trim()).unwrap();
    let e = refused(r);
    assert!(e.message.contains("origin \"b\""), "{e:?}");
    assert_eq!(
        svc.store().lock().snapshots().len(),
        1,
        "nothing created but b@s0"
    );
    match svc.handle(Op::Status).reply {
        Reply::Status(st) => assert!(st.receive_resume.is_none(), "nothing pending"),
        other => panic!("{other:?}"),
    }
    // the first origin is served; the store is clean
    svc.target(Dev::Origin(0)).write(0, &[5; 4096]).unwrap();
    match svc.handle(Op::Check).reply {
        Reply::Checked(c) => assert!(c.errors.is_empty(), "{c:?}"),
        other => panic!("{other:?}"),
    }
    svc.shutdown().unwrap();
}

/// While a receive writes b, b's device refuses writes (EBUSY); the first origin's
/// does not.
#[test]
fn a_receive_into_b_refuses_writes_to_b_only() {
    use std::io::Write;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = source(dirs.0.path());
    let dst = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    add(&dst.socket, dirs.1.path(), "b", B_LEN);
    let full = send(&src, "b@s1", None, None);
    let (t0, tb) = (
        dst.service().target(Dev::Origin(0)),
        dst.service().target(Dev::Origin(1)),
    );
    let mut conn = std::os::unix::net::UnixStream::connect(&dst.socket).unwrap();
    let op = ublk_snapd::protocol::Request::new(Op::Receive {
        force: false,
        rbd_diff: false,
        origin: Some("b".into()),
    });
    conn.write_all(&ublk_snapd::protocol::to_line(&op)).unwrap();
    conn.write_all(&full[..full.len() / 2]).unwrap();
    let refused = common::daemon::until_refused(|| tb.write(0, &[0x77; 4096]));
    assert_eq!(refused.raw_os_error(), Some(libc::EBUSY), "{refused}");
    t0.write(0, &[0x78; 4096]).unwrap();
    drop(conn);
}

#[test]
fn export_of_origin_b_reads_back_over_nbd() {
    let s = nbd::setup(ORIGIN_LEN, 32 << 20);
    let dir = tempfile::tempdir().unwrap();
    add(&s.fix.socket, dir.path(), "b", B_LEN);
    let svc = s.fix.service().clone();
    svc.target(Dev::Origin(1))
        .write(8192, &[0xb1; 4096])
        .unwrap();
    create(&s.fix.socket, "b@s1");
    svc.target(Dev::Origin(1))
        .write(8192, &[0xb2; 4096])
        .unwrap();
    let export = |name: &str, origin: Option<&str>| {
        client::request(
            &s.fix.socket,
            Op::Export {
                name: name.into(),
                origin: origin.map(Into::into),
                snapshot: false,
                writable: false,
                export: None,
            },
        )
    };
    // the origin b, named after it; its snapshot by a bare name, as b@s1
    let e = match export("-", Some("b")).unwrap() {
        Reply::Exported(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.export, "b");
    let e = match export("s1", Some("b")).unwrap() {
        Reply::Exported(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.export, "b@s1");
    let mut c = nbd::Client::connect(&s.sock, "b", &[]);
    assert_eq!(c.size, B_LEN);
    assert_eq!(c.read(8192, 4096), vec![0xb2; 4096]);
    let mut c = nbd::Client::connect(&s.sock, "b@s1", &[]);
    assert_eq!(c.read(8192, 4096), vec![0xb1; 4096]);
    // the first origin as before
    match export("-", None).unwrap() {
        Reply::Exported(e) => assert_eq!(e.export, "origin"),
        other => panic!("{other:?}"),
    }
    let c = nbd::Client::connect(&s.sock, "origin", &[]);
    assert_eq!(c.size, ORIGIN_LEN);
    // --origin contradicting ORIGIN@NAME; a missing origin
    assert_eq!(
        remote_code(export("origin@s1", Some("b"))),
        ErrorCode::Invalid
    );
    assert_eq!(
        remote_code(export("-", Some("nope"))),
        ErrorCode::NoSuchOrigin
    );
}

#[test]
fn map_and_diff_of_origin_b() {
    let fx = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let dir = tempfile::tempdir().unwrap();
    add(&fx.socket, dir.path(), "b", B_LEN);
    let svc = fx.service().clone();
    create(&fx.socket, "b@s1");
    create(&fx.socket, "origin@s1");
    svc.target(Dev::Origin(1))
        .write(1 << 20, &[0xb1; 65536])
        .unwrap();
    let map = |name: Option<&str>, origin: Option<&str>| match client::request(
        &fx.socket,
        Op::Map {
            name: name.map(Into::into),
            origin: origin.map(Into::into),
            offset: 0,
            len: None,
        },
    )
    .unwrap()
    {
        Reply::Map(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(map(None, Some("b")).size_bytes, B_LEN);
    assert_eq!(map(None, None).size_bytes, ORIGIN_LEN);
    let m = map(Some("s1"), Some("b"));
    assert_eq!(m.size_bytes, B_LEN);
    assert_eq!(m.totals.own, 65536, "b's s1 holds the copy-out");
    assert_eq!(map(Some("origin@s1"), None).totals.own, 0);
    let diff = |from: Option<&str>, to: Option<&str>, origin: Option<&str>| {
        client::request(
            &fx.socket,
            Op::Diff {
                from: from.map(Into::into),
                origin: origin.map(Into::into),
                to: to.map(Into::into),
                offset: 0,
                len: None,
            },
        )
    };
    match diff(Some("s1"), None, Some("b")).unwrap() {
        Reply::Diff(d) => {
            assert_eq!(d.size_bytes, B_LEN);
            assert_eq!(d.bytes, 65536);
            assert_eq!(d.ranges[0].offset, 1 << 20);
        }
        other => panic!("{other:?}"),
    }
    match diff(Some("s1"), None, Some("origin")).unwrap() {
        Reply::Diff(d) => assert_eq!(d.bytes, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        remote_code(diff(Some("origin@s1"), None, Some("b"))),
        ErrorCode::Invalid
    );
    assert_eq!(
        remote_code(diff(None, None, Some("nope"))),
        ErrorCode::NoSuchOrigin
    );
    // offline, the same
    let (origin, store) = (fx.origin_path(), fx.store_path());
    let mut fx = fx;
    drop(svc);
    fx.stop();
    let _ = origin;
    let d = offline::diff(&store, Some("b"), Some("s1"), None, 0, None).unwrap();
    assert_eq!(d.bytes, 65536);
    assert_eq!(
        offline::map(&store, Some("b"), None, 0, None)
            .unwrap()
            .size_bytes,
        B_LEN
    );
}

/// A merge into b left unfinished (no worker ran it): `check --repair` opens b from
/// the path the store records and finishes it; with b's file gone, it says that b
/// is missing and writes nothing.
#[test]
fn check_repair_finishes_a_merge_into_b() {
    let mut fx = Fixture::start(ORIGIN_LEN, 32 << 20, Limits::default());
    let dir = tempfile::tempdir().unwrap();
    let b = add(&fx.socket, dir.path(), "b", B_LEN);
    let svc = fx.service().clone();
    let tb = svc.target(Dev::Origin(1));
    tb.write(0, &vec![0xb1; 256 << 10]).unwrap();
    create(&fx.socket, "b@s1");
    tb.write(0, &vec![0xb2; 256 << 10]).unwrap();
    match client::request(
        &fx.socket,
        Op::Merge {
            name: "b@s1".into(),
            deferred: false,
        },
    )
    .unwrap()
    {
        Reply::Merging(_) => {}
        other => panic!("{other:?}"),
    }
    drop(tb);
    drop(svc);
    let (origin, store) = (fx.origin_path(), fx.store_path());
    fx.stop();
    let opts = |dry_run| RepairOptions {
        store: store.clone(),
        origin: Some(origin.clone()),
        dry_run,
    };
    // a dry run names the pass; b's file gone: refused, naming b
    let dry = offline::repair(&opts(true)).unwrap();
    assert_eq!(dry.outcome, "would_repair");
    let pass = dry.passes.iter().find(|p| p.kind == "merge").unwrap();
    assert_eq!(pass.total, B_LEN / common::daemon::CHUNK);
    let aside = dir.path().join("b.aside");
    std::fs::rename(&b, &aside).unwrap();
    let e = offline::repair(&opts(false)).unwrap_err();
    assert!(e.to_string().contains("\"b\""), "{e}");
    assert!(e.to_string().contains("b.img"), "{e}");
    std::fs::rename(&aside, &b).unwrap();
    let r = offline::repair(&opts(false)).unwrap();
    assert_eq!(r.outcome, "repaired");
    assert!(r.clean, "{r:?}");
    // b reads what s1 read, on its own file; no merge is left
    let raw = std::fs::read(&b).unwrap();
    assert!(raw[..256 << 10].iter().all(|&x| x == 0xb1));
    let svc = Service::open(common::daemon::config(&origin, &store)).unwrap();
    assert!(!svc.store().lock().is_merging());
    assert_eq!(read_origin(&svc, 1, 4096), vec![0xb1; 4096]);
    svc.shutdown().unwrap();
}
