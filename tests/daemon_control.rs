//! The control server against a real store on temporary files: requests, bad
//! requests, slow clients, and the store lock. Needs no kernel (no ublk device is
//! created: `activate` fails cleanly without `/dev/ublk-control`).
mod common;

use common::daemon::{config, files, remote_code, Fixture, CHUNK};
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};
use ublk_snapd::{
    client::{request, Client},
    daemon::control::Limits,
    lock::StoreLock,
    offline::{self, FormatOptions},
    protocol::{ErrorCode, Op, Reply, Response, MAX_REQUEST_BYTES},
    service::Service,
    Error,
};

const ORIGIN_LEN: u64 = 8 << 20;
const STORE_LEN: u64 = 16 << 20;

fn start(limits: Limits) -> Fixture {
    Fixture::start(ORIGIN_LEN, STORE_LEN, limits)
}

#[test]
fn create_list_status_delete() {
    let f = start(Limits::default());
    let s = &f.socket;
    let Reply::Created(c) = request(
        s,
        Op::Create {
            name: "one".into(),
            from: None,
            freeze: false,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(c.name, "one");
    assert!(c.created > 1_600_000_000, "creation time is the clock's");
    let Reply::Created(c2) = request(
        s,
        Op::Create {
            name: "two".into(),
            from: Some("one".into()),
            freeze: false,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert!(c2.txn_id > c.txn_id);
    assert_eq!(c2.parent.as_deref(), Some("one"));

    let Reply::List(l) = request(s, Op::List).unwrap() else {
        panic!()
    };
    let names: Vec<_> = l.snapshots.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(l.snapshots[1].parent.as_deref(), Some("one"));
    assert!(l.snapshots.iter().all(|x| x.device.is_none()));

    let Reply::Status(st) = request(s, Op::Status).unwrap() else {
        panic!()
    };
    assert_eq!(st.nr_snapshots, 2);
    assert_eq!(st.size_bytes, ORIGIN_LEN);
    assert_eq!(st.chunk_size, CHUNK);
    assert_eq!(st.txn_id, c2.txn_id);
    assert!(st.devices.is_empty());

    let Reply::Deleted(d) = request(s, Op::Delete { name: "one".into() }).unwrap() else {
        panic!()
    };
    assert!(d.txn_id > c2.txn_id);
    let Reply::List(l) = request(s, Op::List).unwrap() else {
        panic!()
    };
    assert_eq!(l.snapshots.len(), 1);
    assert_eq!(l.txn_id, d.txn_id);
}

#[test]
fn errors_are_replies_and_the_daemon_keeps_serving() {
    let f = start(Limits::default());
    let s = &f.socket;
    let create = |name: &str, from: Option<&str>| {
        request(
            s,
            Op::Create {
                name: name.into(),
                from: from.map(Into::into),
                freeze: false,
            },
        )
    };
    assert_eq!(remote_code(create("bad/name", None)), ErrorCode::Invalid);
    assert_eq!(remote_code(create("", None)), ErrorCode::Invalid);
    assert_eq!(remote_code(create("-x", None)), ErrorCode::Invalid);
    assert_eq!(
        remote_code(create(&"a".repeat(64), None)),
        ErrorCode::Invalid
    );
    assert_eq!(
        remote_code(create("x", Some("nosuch"))),
        ErrorCode::NoSuchSnapshot
    );
    create("x", None).unwrap();
    assert_eq!(remote_code(create("x", None)), ErrorCode::Exists);
    assert_eq!(
        remote_code(request(
            s,
            Op::Delete {
                name: "nosuch".into()
            }
        )),
        ErrorCode::NoSuchSnapshot
    );
    assert_eq!(
        remote_code(request(s, Op::Deactivate { name: "x".into() })),
        ErrorCode::NotActive
    );
    // Without the ublk driver activation fails, as an error reply.
    if !ublk_target::ublk_available() {
        assert_eq!(
            remote_code(request(s, Op::Activate { name: "x".into() })),
            ErrorCode::Io
        );
    }
    // Raw lines: bad JSON and a bad version get replies on the same connection.
    let mut raw = UnixStream::connect(s).unwrap();
    let mut rd = BufReader::new(raw.try_clone().unwrap());
    let mut ask = |line: &[u8]| {
        raw.write_all(line).unwrap();
        let mut l = String::new();
        rd.read_line(&mut l).unwrap();
        serde_json::from_str::<Response>(&l).unwrap()
    };
    let code = |r: Response| match r.reply {
        Reply::Error(e) => e.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(ask(b"{nope\n")), ErrorCode::BadRequest);
    assert_eq!(
        code(ask(b"{\"version\":99,\"op\":\"list\"}\n")),
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        code(ask(b"{\"version\":1,\"op\":\"format\"}\n")),
        ErrorCode::BadRequest
    );
    assert!(matches!(
        ask(b"{\"version\":1,\"op\":\"list\"}\n").reply,
        Reply::List(_)
    ));
    // An oversize line: too_large, then the connection is closed.
    let mut big = UnixStream::connect(s).unwrap();
    let mut brd = BufReader::new(big.try_clone().unwrap());
    let line = vec![b'x'; MAX_REQUEST_BYTES + 10];
    let _ = big.write_all(&line); // the server may close before reading it all
    let mut l = String::new();
    brd.read_line(&mut l).unwrap();
    assert_eq!(
        code(serde_json::from_str::<Response>(&l).unwrap()),
        ErrorCode::TooLarge
    );
    l.clear();
    assert_eq!(brd.read_line(&mut l).unwrap_or(0), 0, "connection closed");
    // ...and the daemon still serves.
    assert!(matches!(request(s, Op::List), Ok(Reply::List(_))));
}

#[test]
fn a_silent_client_is_timed_out_while_others_are_served() {
    let f = start(Limits {
        read_timeout: Duration::from_millis(700),
        ..Limits::default()
    });
    let silent = UnixStream::connect(&f.socket).unwrap();
    let t0 = Instant::now();
    for _ in 0..5 {
        let mut c = Client::connect(&f.socket).unwrap();
        assert!(matches!(c.call(Op::Status), Ok(Reply::Status(_))));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "other clients were served while the silent one waited"
    );
    let mut l = String::new();
    BufReader::new(silent).read_line(&mut l).unwrap();
    let r: Response = serde_json::from_str(&l).unwrap();
    assert!(matches!(r.reply, Reply::Error(ref e) if e.code == ErrorCode::Timeout));
    assert!(t0.elapsed() >= Duration::from_millis(600));
}

#[test]
fn the_lock_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store) = files(dir.path(), ORIGIN_LEN, STORE_LEN);
    let first = Service::open(config(&origin, &store)).unwrap();
    assert!(matches!(
        Service::open(config(&origin, &store)),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        StoreLock::acquire(&store),
        Err(Error::Locked { .. })
    ));
    let fmt = offline::format(&FormatOptions {
        origin: origin.clone(),
        store: store.clone(),
        chunk_size: CHUNK as u32,
        sparse: true,
    });
    assert!(matches!(fmt, Err(Error::Locked { .. })));
    assert_eq!(
        ublk_snapd::exit::exit_code([&fmt.unwrap_err() as &(dyn std::error::Error + 'static)]),
        ublk_snapd::exit::CONFLICT
    );
    drop(first);
    let again = StoreLock::acquire(&store).unwrap();
    assert_eq!(again.path(), store);
}

#[test]
fn not_running_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let r = request(&dir.path().join("none.sock"), Op::List);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::NotRunning { .. }));
    assert_eq!(
        ublk_snapd::exit::exit_code([&e as &(dyn std::error::Error + 'static)]),
        ublk_snapd::exit::NOT_RUNNING
    );
}
