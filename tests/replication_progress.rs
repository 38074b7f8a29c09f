//! What `--progress` reports for `send` and `receive` through the daemons' sockets
//! (the client side snapctl uses): the total a stream will cover (a full send: the
//! device size; an incremental: the sum of the diff's runs; a resumed send: what is
//! left after the resume offset; a receive: a full stream's size from its header, an
//! incremental's unknown), positions that only grow, and at the end the records
//! covered exactly that total; our stream and Ceph's rbd diff.
mod common;

use common::daemon::Fixture;
use exception_store::{stream::rbd_diff::Writer, Dev};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use ublk_snapd::{
    client::{self, scan::StreamProgress},
    daemon::control::Limits,
    protocol::{Op, Reply},
};

const SIZE: u64 = 8 << 20;

fn start() -> Fixture {
    Fixture::start(SIZE, 48 << 20, Limits::default())
}

/// Random writes, then snapshot `name`.
fn round(f: &Fixture, rng: &mut SmallRng, writes: usize, name: &str) {
    let s = f.service().store();
    for _ in 0..writes {
        let off = rng.gen_range(0..SIZE / 4096) * 4096;
        let len = (rng.gen_range(1..64u64) * 4096).min(SIZE - off);
        let d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        s.write(Dev::Origin(0), off, &d).unwrap();
    }
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

/// The progress calls' sequence is monotone, stays within the total, and its last
/// call is `last`.
fn check(seen: &[StreamProgress], last: StreamProgress) {
    assert!(seen.len() > 2, "{seen:?}");
    for w in seen.windows(2) {
        assert!(
            w[0].stream <= w[1].stream && w[0].covered <= w[1].covered,
            "{w:?}"
        );
    }
    for p in seen {
        if let Some(t) = p.total {
            assert!(p.covered <= t, "{p:?}");
        }
    }
    assert_eq!(*seen.last().unwrap(), last);
}

fn send(
    f: &Fixture,
    b: &str,
    from: Option<&str>,
    resume: Option<String>,
) -> (Vec<u8>, Vec<StreamProgress>) {
    let (mut out, mut seen) = (Vec::new(), Vec::new());
    let op = Op::Send {
        name: b.into(),
        from: from.map(Into::into),
        resume,
    };
    let (sending, n) =
        client::stream::send(&f.socket, op, &mut out, &mut |p| seen.push(p)).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(seen.last().unwrap().total, Some(sending.covers));
    (out, seen)
}

fn receive(f: &Fixture, stream: &[u8], rbd: bool) -> (Result<u64, String>, Vec<StreamProgress>) {
    let mut seen = Vec::new();
    let r = client::stream::receive(&f.socket, None, false, rbd, &mut &stream[..], &mut |p| {
        seen.push(p)
    });
    (r.map(|r| r.bytes).map_err(|e| e.to_string()), seen)
}

fn diff_bytes(f: &Fixture, a: &str, b: &str) -> u64 {
    let s = f.service().store();
    let mut st = s.lock();
    let (a, b) = (st.lookup(a).unwrap(), st.lookup(b).unwrap());
    st.diff(Dev::Snap(a), Dev::Snap(b), 0, SIZE)
        .unwrap()
        .iter()
        .map(|r| r.1)
        .sum()
}

fn at(stream: usize, covered: u64, total: Option<u64>) -> StreamProgress {
    StreamProgress {
        stream: stream as u64,
        covered,
        total,
    }
}

#[test]
fn send_and_receive_progress_totals() {
    let src = start();
    let mut rng = SmallRng::seed_from_u64(21);
    round(&src, &mut rng, 200, "s1");
    round(&src, &mut rng, 8, "s2");
    let dst = start();

    // Full: the device size, on both sides.
    let (full, seen) = send(&src, "s1", None, None);
    check(&seen, at(full.len(), SIZE, Some(SIZE)));
    let (r, seen) = receive(&dst, &full, false);
    assert_eq!(r, Ok(full.len() as u64));
    check(&seen, at(full.len(), SIZE, Some(SIZE)));

    // Incremental: the diff's runs; the receiver cannot know the total.
    let d = diff_bytes(&src, "s1", "s2");
    assert!(0 < d && d < SIZE / 4, "{d}");
    let (inc, seen) = send(&src, "s2", Some("s1"), None);
    check(&seen, at(inc.len(), d, Some(d)));
    let (r, seen) = receive(&dst, &inc, false);
    assert!(r.is_ok(), "{r:?}");
    check(&seen, at(inc.len(), d, None));
}

#[test]
fn resumed_send_counts_what_is_left() {
    let src = start();
    let mut rng = SmallRng::seed_from_u64(22);
    round(&src, &mut rng, 200, "s1");
    let dst = start();
    let (full, _) = send(&src, "s1", None, None);
    let (r, _) = receive(&dst, &full[..full.len() / 2], false);
    assert!(r.is_err());
    let token = match client::request(&dst.socket, Op::Status).unwrap() {
        Reply::Status(s) => s.receive_resume.expect("a resume token"),
        other => panic!("{other:?}"),
    };
    let (rest, seen) = send(&src, "s1", None, Some(token));
    let left = seen.last().unwrap().total.unwrap();
    assert!(0 < left && left < SIZE, "{left}");
    check(&seen, at(rest.len(), left, Some(left)));
    let (r, seen) = receive(&dst, &rest, false);
    assert!(r.is_ok(), "{r:?}");
    check(&seen, at(rest.len(), left, Some(left)));
}

#[test]
fn rbd_diff_receive_progress() {
    let src = start();
    let mut rng = SmallRng::seed_from_u64(23);
    round(&src, &mut rng, 100, "s1");
    round(&src, &mut rng, 8, "s2");
    let rbd = |b: &str, from: Option<&str>| {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, from);
        let op = Op::Send {
            name: b.into(),
            from: from.map(Into::into),
            resume: None,
        };
        client::stream::send_records(&src.socket, op, &mut |e| w.event(e), &mut |_| {}).unwrap();
        out
    };
    let dst = start();
    let (full, inc) = (rbd("s1", None), rbd("s2", Some("s1")));
    let (r, seen) = receive(&dst, &full, true);
    assert!(r.is_ok(), "{r:?}");
    check(&seen, at(full.len(), SIZE, Some(SIZE)));
    let (r, seen) = receive(&dst, &inc, true);
    assert!(r.is_ok(), "{r:?}");
    check(&seen, at(inc.len(), diff_bytes(&src, "s1", "s2"), None));
    // A stream the scan cannot read still goes to the daemon, which says why.
    let (r, seen) = receive(&dst, b"not a stream at all", true);
    assert!(r.unwrap_err().contains("rbd diff"));
    assert!(seen.iter().all(|p| p.covered == 0 && p.total.is_none()));
}
