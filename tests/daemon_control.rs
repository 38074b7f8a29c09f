//! The control server against a real store on temporary files: requests, bad
//! requests, slow clients, and the store lock. Needs no kernel (no ublk device is
//! created: `activate` fails cleanly without `/dev/ublk-control`).
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};
use ublk_snapd::{
    client::{request, Client},
    control::{self, Limits},
    lock::StoreLock,
    offline::{self, FormatOptions},
    protocol::{ErrorCode, Op, Reply, Response, MAX_REQUEST_BYTES},
    service::{Config, Service},
    Error,
};

struct Fixture {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<thread::JoinHandle<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.server.take() {
            t.join().unwrap();
        }
    }
}

fn files(dir: &Path) -> (PathBuf, PathBuf) {
    let origin = dir.join("origin.img");
    let store = dir.join("store.img");
    std::fs::File::create(&origin)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    std::fs::File::create(&store)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    offline::format(&FormatOptions {
        origin: origin.clone(),
        store: store.clone(),
        chunk_size: 64 << 10,
    })
    .unwrap();
    (origin, store)
}

fn config(origin: PathBuf, store: PathBuf) -> Config {
    Config {
        origin,
        store,
        cache_bytes: 4 << 20,
        device: Default::default(),
        state_dir: None,
        ..Config::default()
    }
}

fn start(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store) = files(dir.path());
    let service = Arc::new(Service::open(config(origin, store)).unwrap());
    let socket = dir.path().join("ctl.sock");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sock_path = socket.clone();
    let server = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sock = control::bind(&sock_path).unwrap();
            ready_tx.send(()).unwrap();
            let s = service.clone();
            let handler: control::Handler = Arc::new(move |op| s.handle(op));
            control::serve(sock, handler, limits, async {
                let _ = rx.await;
            })
            .await;
        });
    });
    ready_rx.recv().unwrap();
    Fixture {
        _dir: dir,
        socket,
        stop: Some(tx),
        server: Some(server),
    }
}

fn remote_code(r: Result<Reply, Error>) -> ErrorCode {
    match r {
        Err(Error::Remote { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
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
    assert_eq!(st.size_bytes, 8 << 20);
    assert_eq!(st.chunk_size, 64 << 10);
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
    let (origin, store) = files(dir.path());
    let first = Service::open(config(origin.clone(), store.clone())).unwrap();
    assert!(matches!(
        Service::open(config(origin.clone(), store.clone())),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        StoreLock::acquire(&store),
        Err(Error::Locked { .. })
    ));
    let fmt = offline::format(&FormatOptions {
        origin: origin.clone(),
        store: store.clone(),
        chunk_size: 64 << 10,
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
