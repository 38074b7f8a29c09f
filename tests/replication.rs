//! `send` and `receive` through two daemons' control sockets (the streaming ops and
//! the client side snapctl uses): full then three incrementals equal, a corrupt
//! stream refused with the target unchanged, a cut stream resumed from the token in
//! `status`, a snapshot being sent cannot be deleted, the origin's device refuses
//! writes while a receive runs.
mod common;

use common::daemon::Fixture;
use exception_store::Dev;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use ublk_snapd::{
    client,
    daemon::control::Limits,
    protocol::{ErrorCode, Op, Reply},
    Error,
};

const SIZE: u64 = 8 << 20;

fn start() -> Fixture {
    Fixture::start(SIZE, 48 << 20, Limits::default())
}

fn scribble(f: &Fixture, rng: &mut SmallRng, writes: usize) {
    let s = f.service().store();
    for _ in 0..writes {
        let off = rng.gen_range(0..SIZE / 4096) * 4096;
        let len = (rng.gen_range(1..64u64) * 4096).min(SIZE - off);
        let d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        s.write(Dev::Origin(0), off, &d).unwrap();
    }
}

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

fn read(f: &Fixture, name: &str) -> Vec<u8> {
    let s = f.service().store();
    let id = s.lock().lookup(name).unwrap_or_else(|| panic!("no {name}"));
    let mut b = vec![0u8; SIZE as usize];
    s.read(Dev::Snap(id), 0, &mut b).unwrap();
    b
}

fn names(f: &Fixture) -> Vec<String> {
    f.service()
        .store()
        .lock()
        .snapshots()
        .into_iter()
        .map(|x| x.name)
        .collect()
}

fn send(f: &Fixture, b: &str, from: Option<&str>, resume: Option<String>) -> Vec<u8> {
    let mut out = Vec::new();
    let op = Op::Send {
        name: b.into(),
        from: from.map(Into::into),
        resume,
    };
    let (sending, n) = client::stream::send(&f.socket, op, &mut out, &mut |_| {}).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(sending.name, b);
    out
}

fn receive(
    f: &Fixture,
    stream: &[u8],
    force: bool,
) -> Result<ublk_snapd::protocol::Received, Error> {
    client::stream::receive(&f.socket, None, force, false, &mut &stream[..], &mut |_| {})
}

fn source() -> Fixture {
    let src = start();
    let mut rng = SmallRng::seed_from_u64(7);
    for i in 1..=4 {
        scribble(&src, &mut rng, if i == 1 { 300 } else { 5 });
        create(&src, &format!("s{i}"));
    }
    src
}

#[test]
fn full_then_three_incrementals_through_the_sockets() {
    let src = source();
    let dst = start();
    let full = send(&src, "s1", None, None);
    receive(&dst, &full, false).unwrap();
    for i in 2..=4 {
        let inc = send(&src, &format!("s{i}"), Some(&format!("s{}", i - 1)), None);
        assert!(inc.len() < full.len() / 3);
        let r = receive(&dst, &inc, false).unwrap();
        assert_eq!(r.name, format!("s{i}"));
    }
    assert_eq!(names(&dst), ["s1", "s2", "s3", "s4"]);
    for i in 1..=4 {
        let n = format!("s{i}");
        assert!(read(&src, &n) == read(&dst, &n), "{n} differs");
    }
}

#[test]
fn corrupt_and_wrong_base_refused_target_unchanged() {
    let src = source();
    let dst = start();
    receive(&dst, &send(&src, "s1", None, None), false).unwrap();
    let s1 = read(&dst, "s1");
    let mut inc = send(&src, "s2", Some("s1"), None);
    let mid = inc.len() / 2;
    inc[mid] ^= 1;
    match receive(&dst, &inc, false) {
        Err(Error::Remote {
            code: ErrorCode::Corrupt,
            message,
        }) => {
            assert!(message.contains("corrupt"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let wrong = send(&src, "s3", Some("s2"), None);
    match receive(&dst, &wrong, false) {
        Err(Error::Remote {
            code: ErrorCode::Invalid,
            message,
        }) => {
            assert!(message.contains("wrong base"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(names(&dst), ["s1"]);
    assert!(read(&dst, "s1") == s1);
}

/// Receive three quarters of `full`, which is cut; the resume token `status` shows.
fn cut_receive(dst: &Fixture, full: &[u8]) -> String {
    let e = receive(dst, &full[..full.len() * 3 / 4], false).unwrap_err();
    assert!(e.to_string().contains("resume"), "{e}");
    match client::request(&dst.socket, Op::Status).unwrap() {
        Reply::Status(s) => s.receive_resume.expect("a resume token in status"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cut_receive_resumes_from_the_status_token() {
    let src = source();
    let dst = start();
    let full = send(&src, "s1", None, None);
    let token = cut_receive(&dst, &full);
    assert!(!names(&dst).contains(&"s1".to_string()));
    let rest = send(&src, "s1", None, Some(token));
    assert!(rest.len() < full.len());
    receive(&dst, &rest, false).unwrap();
    assert!(read(&src, "s1") == read(&dst, "s1"));
    assert_eq!(names(&dst), ["s1"]);
}

/// The origin written between a cut and the resume (through the daemon's store, as
/// a ublk or NBD writer would): the resume is refused with `busy` and says why; the
/// receive's mark is not listed; a new full send with `--force` replaces it.
#[test]
fn a_resume_after_the_origin_was_written_is_refused() {
    let src = source();
    let dst = start();
    let full = send(&src, "s1", None, None);
    let token = cut_receive(&dst, &full);
    match client::request(&dst.socket, Op::List).unwrap() {
        Reply::List(l) => assert!(l.snapshots.is_empty(), "internal snapshots listed: {l:?}"),
        other => panic!("{other:?}"),
    }
    dst.service()
        .store()
        .write(Dev::Origin(0), 0, &[0x5a; 4096])
        .unwrap();
    let rest = send(&src, "s1", None, Some(token));
    let e = receive(&dst, &rest, false).unwrap_err();
    assert!(e.to_string().contains("written since"), "{e}");
    match &e {
        Error::Remote { code, .. } => assert_eq!(*code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
    let full = send(&src, "s1", None, None);
    receive(&dst, &full, true).unwrap();
    assert!(read(&src, "s1") == read(&dst, "s1"));
    assert_eq!(names(&dst), ["s1"]);
    let left = dst.service().store().lock().snapshots();
    assert_eq!(left.len(), 1, "no internal snapshot is left: {left:?}");
}

#[test]
fn snapshot_being_sent_cannot_be_deleted() {
    let src = source();
    // A raw connection that reads the `sending` line and then nothing: the sender
    // blocks on the full socket buffer with s1 held.
    let mut conn = std::os::unix::net::UnixStream::connect(&src.socket).unwrap();
    use std::io::{BufRead, Write};
    conn.write_all(b"{\"version\":1,\"op\":\"send\",\"name\":\"s1\"}\n")
        .unwrap();
    let mut rd = std::io::BufReader::new(conn);
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    assert!(line.contains("\"sending\""), "{line}");
    // The sender blocks on the full socket buffer: s1 is held.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = client::request(&src.socket, Op::Delete { name: "s1".into() });
    assert!(
        matches!(
            r,
            Err(Error::Remote {
                code: ErrorCode::Busy,
                ..
            })
        ),
        "{r:?}"
    );
    drop(rd);
}

/// Nothing writes a receive's origin but the receive. The origin's ublk device (its
/// target, called as the kernel calls it) refuses writes, discards and zeroing with
/// EBUSY while a stream is being received, and takes them again once the stream is
/// cut. The bug: the daemon held the origin device `O_EXCL`, which keeps mounts and
/// `mkfs` out but not a plain `open(O_WRONLY)`; a `dd` to /dev/ublkbN in the middle
/// of a receive went into the origin, and so into the snapshot the receive takes
/// under the sender's guid.
#[test]
fn the_origin_device_refuses_writes_while_a_receive_runs() {
    use std::io::Write;
    use ublk_target::Target;
    let src = source();
    let dst = start();
    let full = send(&src, "s1", None, None);
    let target = dst.service().target(Dev::Origin(0));
    // a receive that gets half of the stream, then waits for the rest
    let mut conn = std::os::unix::net::UnixStream::connect(&dst.socket).unwrap();
    let op = ublk_snapd::protocol::Request::new(Op::Receive {
        force: false,
        rbd_diff: false,
        origin: None,
    });
    conn.write_all(&ublk_snapd::protocol::to_line(&op)).unwrap();
    conn.write_all(&full[..full.len() / 2]).unwrap();
    // writes before the receive began are the origin's own: the stream overwrites them
    let refused = common::daemon::until_refused(|| target.write(0, &[0x77; 4096]));
    assert_eq!(refused.raw_os_error(), Some(libc::EBUSY), "{refused}");
    for r in [target.discard(0, 65536), target.write_zeroes(65536, 65536)] {
        let e = r.expect_err("a discard or zeroing of the origin mid-receive");
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
    }
    // a snapshot's device is not concerned
    let s = dst
        .service()
        .target(Dev::Snap(blockdev::ids::SnapId(u32::MAX)));
    assert!(
        !matches!(s.write(0, &[1; 4096]), Err(e) if e.raw_os_error() == Some(libc::EBUSY)),
        "a snapshot device refused with EBUSY"
    );
    // cut: the receive ends, the origin's device takes writes again
    drop(conn);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = target.write(0, &[0x78; 4096]) {
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the cut"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    match client::request(&dst.socket, Op::Status).unwrap() {
        Reply::Status(s) => assert!(s.receive_resume.is_some(), "the cut receive is pending"),
        other => panic!("{other:?}"),
    }
}
