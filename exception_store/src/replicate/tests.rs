//! Send and receive between two in-process stores: full then incrementals equal,
//! corrupt / cut / wrong-base streams refused with the target unchanged, resume.
use super::*;
use crate::{Dev, SharedStore, Store, StoreOptions};
use blockdev::{ids::SnapId, MemDevice};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::sync::Arc;

const SIZE: u64 = 4 << 20;
const CHUNK: u32 = 64 * 1024;

fn store() -> SharedStore {
    let origin = Arc::new(MemDevice::new(SIZE));
    let dev = Arc::new(MemDevice::new(32 << 20));
    SharedStore::new(Store::format(origin, dev, CHUNK, StoreOptions::default()).unwrap())
}

fn read_all(s: &SharedStore, dev: Dev) -> Vec<u8> {
    let mut b = vec![0u8; SIZE as usize];
    s.read(dev, 0, &mut b).unwrap();
    b
}

/// A replication target: its store and pending receive (what the daemon
/// persists), with a save callback that records every save.
struct Target {
    s: SharedStore,
    pending: Option<Pending>,
}

impl Target {
    fn new() -> Self {
        Target {
            s: store(),
            pending: None,
        }
    }

    fn recv(&mut self, stream: &[u8], force: bool) -> Result<Received, ReceiveError> {
        let mut saved = self.pending.clone();
        let opts = ReceiveOptions {
            force,
            now: 1,
            checkpoint_bytes: 256 * 1024,
            ..ReceiveOptions::default()
        };
        let r = receive(
            &self.s,
            stream,
            self.pending.clone(),
            opts,
            &mut |p| {
                saved = p.cloned();
                Ok(())
            },
            &mut |_| {},
        );
        self.pending = saved;
        r
    }

    fn snap(&self, name: &str) -> Dev {
        Dev::Snap(self.s.lock().lookup(name).unwrap())
    }

    fn names(&self) -> Vec<String> {
        self.s
            .lock()
            .snapshots()
            .into_iter()
            .map(|x| x.name)
            .collect()
    }
}

fn scribble(s: &SharedStore, rng: &mut SmallRng, writes: usize) {
    for _ in 0..writes {
        let off = rng.gen_range(0..SIZE / 4096) * 4096;
        let len = (rng.gen_range(1..40u64) * 4096).min(SIZE - off);
        if rng.gen_bool(0.2) {
            s.write_zeroes(Dev::Origin(0), off, len).unwrap();
        } else {
            let d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            s.write(Dev::Origin(0), off, &d).unwrap();
        }
    }
}

fn send_bytes(
    s: &SharedStore,
    b: &str,
    from: Option<&str>,
    id: u8,
    resume: Option<u64>,
) -> Vec<u8> {
    let (bid, aid) = {
        let g = s.lock();
        (g.lookup(b).unwrap(), from.map(|a| g.lookup(a).unwrap()))
    };
    let spec = SendSpec {
        snap: bid,
        from: aid,
        stream_id: [id; 16],
        resume_offset: resume,
    };
    let mut out = Vec::new();
    send(s, &spec, &mut out, &mut |_| {}).unwrap();
    out
}

/// Source with snapshots s1..s4, changes between each.
fn source() -> SharedStore {
    let src = store();
    let mut rng = SmallRng::seed_from_u64(12);
    for i in 1..=4 {
        scribble(&src, &mut rng, if i == 1 { 200 } else { 15 });
        src.create_snapshot(&format!("s{i}"), None, 1000 + i)
            .unwrap();
    }
    scribble(&src, &mut rng, 10);
    src
}

fn check_equal(src: &SharedStore, t: &Target, name: &str) {
    let sd = Dev::Snap(src.lock().lookup(name).unwrap());
    assert!(
        read_all(src, sd) == read_all(&t.s, t.snap(name)),
        "{name} differs"
    );
    let info =
        t.s.lock()
            .snapshots()
            .into_iter()
            .find(|x| x.name == name)
            .unwrap();
    let sinfo = src
        .lock()
        .snapshots()
        .into_iter()
        .find(|x| x.name == name)
        .unwrap();
    assert_eq!(info.created, sinfo.created);
}

#[test]
fn full_then_three_incrementals_equal() {
    let src = source();
    let mut t = Target::new();
    let full = send_bytes(&src, "s1", None, 1, None);
    t.recv(&full, false).unwrap();
    check_equal(&src, &t, "s1");
    for i in 2..=4 {
        let a = format!("s{}", i - 1);
        let b = format!("s{i}");
        let inc = send_bytes(&src, &b, Some(&a), i as u8, None);
        assert!(
            inc.len() < full.len() / 2,
            "incremental {b} is {} bytes",
            inc.len()
        );
        t.recv(&inc, false).unwrap();
        for j in 1..=i {
            check_equal(&src, &t, &format!("s{j}"));
        }
    }
    assert_eq!(t.names(), ["s1", "s2", "s3", "s4"]);
    assert!(t.pending.is_none());
    // The received snapshots keep the sender's guids (the base of the next stream).
    let guids = |s: &SharedStore| {
        s.lock()
            .snapshots()
            .into_iter()
            .map(|x| (x.name, x.guid))
            .collect::<Vec<_>>()
    };
    assert_eq!(guids(&t.s), guids(&src));
}

fn target_with_s1(src: &SharedStore) -> Target {
    let mut t = Target::new();
    t.recv(&send_bytes(src, "s1", None, 1, None), false)
        .unwrap();
    t
}

#[test]
fn corrupt_streams_refused_target_unchanged() {
    let src = source();
    let mut t = target_with_s1(&src);
    let before = read_all(&t.s, Dev::Origin(0));
    let inc = send_bytes(&src, "s2", Some("s1"), 2, None);
    for at in [10, 200, 300, inc.len() / 2, inc.len() - 5] {
        let mut c = inc.clone();
        c[at] ^= 0x40;
        let e = t.recv(&c, false).unwrap_err();
        assert!(matches!(e, ReceiveError::Refused(_)), "flip at {at}: {e}");
        assert_eq!(t.names(), ["s1"], "flip at {at}");
        assert!(
            read_all(&t.s, Dev::Origin(0)) == before,
            "origin changed (flip at {at})"
        );
        assert!(t.pending.is_none());
    }
    // Wrong base: s2 -> s3 onto a target holding only s1.
    let e = t
        .recv(&send_bytes(&src, "s3", Some("s2"), 3, None), false)
        .unwrap_err();
    assert!(matches!(e, ReceiveError::WrongBase(_)), "{e}");
    assert_eq!(t.names(), ["s1"]);
    // And the good stream still applies afterwards.
    t.recv(&inc, false).unwrap();
    check_equal(&src, &t, "s2");
}

#[test]
fn cut_stream_resumes_to_the_same_result() {
    let src = source();
    let mut t = Target::new();
    let full = send_bytes(&src, "s1", None, 9, None);
    let e = t.recv(&full[..full.len() * 2 / 3], false).unwrap_err();
    let (offset, token) = match e {
        ReceiveError::Cut { offset, token, .. } => (offset, token),
        e => panic!("{e}"),
    };
    assert!(offset > 0, "checkpoints were made");
    assert!(
        t.s.lock().lookup("s1").is_none(),
        "B must not appear before the end"
    );
    // A fresh (non-resume) stream is refused while one is pending.
    let e = t.recv(&full, false).unwrap_err();
    assert!(matches!(e, ReceiveError::Pending { .. }), "{e}");
    let (id, at) = parse_resume_token(&token).unwrap();
    assert_eq!(id, [9; 16]);
    let rest = send_bytes(&src, "s1", None, 9, Some(at));
    assert!(rest.len() < full.len());
    t.recv(&rest, false).unwrap();
    check_equal(&src, &t, "s1");
    assert_eq!(
        t.names(),
        ["s1"],
        "the rollback snapshot and the mark are gone"
    );
    assert!(t.pending.is_none());
}

#[test]
fn written_origin_refused_then_forced_back() {
    let src = source();
    let mut t = target_with_s1(&src);
    t.s.write(Dev::Origin(0), 8192, b"local change").unwrap();
    let inc = send_bytes(&src, "s2", Some("s1"), 2, None);
    let e = t.recv(&inc, false).unwrap_err();
    assert!(matches!(e, ReceiveError::OriginChanged(_)), "{e}");
    assert_eq!(t.names(), ["s1"]);
    let r = t.recv(&inc, true).unwrap();
    assert_eq!(r.forced, ["rolled the origin back to s1"]);
    check_equal(&src, &t, "s2");
    assert_eq!(t.names(), ["s1", "s2"]);
}

#[test]
fn state_text_round_trips() {
    let mut p = Pending {
        stream_id: [1; 16],
        name: "x".into(),
        guid: [2; 16],
        rollback: blockdev::ids::SnapId(9),
        next_offset: 1 << 20,
        mark: None,
        origin: 0,
    };
    assert_eq!(Pending::decode(&p.encode()), Some(p.clone()));
    p.mark = Some(blockdev::ids::SnapId(11));
    let line = p.encode();
    assert!(
        !line.contains("origin="),
        "the first origin's line is as before"
    );
    assert_eq!(Pending::decode(&line), Some(p.clone()));
    // a receive into another origin of a pool, with and without a mark
    p.origin = 3;
    assert!(p.encode().ends_with(" 11 origin=3\n"));
    assert_eq!(Pending::decode(&p.encode()), Some(p.clone()));
    p.mark = None;
    assert_eq!(Pending::decode(&p.encode()), Some(p.clone()));
    assert_eq!(
        Pending::decode(&p.encode().replace("origin=3", "origin=x")),
        None
    );
    p.origin = 0;
    // the line of an older version (no mark) still reads
    p.mark = Some(blockdev::ids::SnapId(11));
    let old = p.encode().replace(" 11\n", "\n");
    p.mark = None;
    assert_eq!(Pending::decode(&old), Some(p));
}

/// Cut a full send of `s1` two thirds of the way: the target's pending receive.
fn cut_receive(src: &SharedStore, t: &mut Target) -> u64 {
    let full = send_bytes(src, "s1", None, 9, None);
    match t.recv(&full[..full.len() * 2 / 3], false).unwrap_err() {
        ReceiveError::Cut { offset, .. } => offset,
        e => panic!("{e}"),
    }
}

/// The origin written between the cut and the resume: the resume is refused (the
/// received snapshot would differ from the sender's under its guid), nothing is
/// taken, and a new send received with `--force` gives the sender's snapshot.
#[test]
fn a_resume_after_the_origin_was_written_is_refused() {
    let src = source();
    let mut t = Target::new();
    let at = cut_receive(&src, &mut t);
    assert!(
        t.pending.as_ref().and_then(|p| p.mark).is_some(),
        "a mark at the cut"
    );
    t.s.write(
        Dev::Origin(0),
        SIZE - 4096,
        b"written between cut and resume",
    )
    .unwrap();
    let rest = send_bytes(&src, "s1", None, 9, Some(at));
    let e = t.recv(&rest, false).unwrap_err();
    assert!(matches!(e, ReceiveError::WrittenSinceCut { .. }), "{e}");
    assert!(t.s.lock().lookup("s1").is_none());
    assert!(
        t.pending.is_some(),
        "the pending receive stays until forced"
    );
    let full = send_bytes(&src, "s1", None, 10, None);
    let r = t.recv(&full, true).unwrap();
    assert_eq!(r.forced.len(), 1, "{:?}", r.forced);
    check_equal(&src, &t, "s1");
    assert_eq!(t.names(), ["s1"], "no rollback snapshot or mark is left");
    assert!(t.pending.is_none());
}

/// A daemon that starts with a receive pending takes a new mark before it serves
/// the origin ([`mark`]): a write after it is caught, as one after the cut is; a
/// resume with no write in between goes through and leaves no mark.
#[test]
fn a_mark_taken_at_start_catches_later_writes_and_is_dropped_at_the_end() {
    let src = source();
    let mut t = Target::new();
    let at = cut_receive(&src, &mut t);
    let mut p = t.pending.clone().unwrap();
    let first = p.mark;
    let mut saved = None;
    mark(&t.s, &mut p, 2, &mut |q| {
        saved = q.cloned();
        Ok(())
    })
    .unwrap();
    assert_eq!(saved.as_ref(), Some(&p));
    assert_ne!(p.mark, first);
    assert!(
        !t.s.lock().exists(Dev::Snap(first.unwrap())),
        "the old mark is gone"
    );
    t.pending = Some(p);
    let rest = send_bytes(&src, "s1", None, 9, Some(at));
    t.recv(&rest, false).unwrap();
    check_equal(&src, &t, "s1");
    assert_eq!(t.names(), ["s1"], "no mark is left");

    // again, with a write after the mark
    let mut t = Target::new();
    let at = cut_receive(&src, &mut t);
    let mut p = t.pending.clone().unwrap();
    mark(&t.s, &mut p, 2, &mut |_| Ok(())).unwrap();
    t.pending = Some(p);
    t.s.write(Dev::Origin(0), 0, b"after the restart").unwrap();
    let rest = send_bytes(&src, "s1", None, 9, Some(at));
    let e = t.recv(&rest, false).unwrap_err();
    assert!(matches!(e, ReceiveError::WrittenSinceCut { .. }), "{e}");
}

/// What a crash can leave: a rollback point or a mark that no state names, and
/// `--force`'s rollback snapshot between its create and its merge. Those are
/// orphans; the pending receive's own snapshots and user snapshots are not.
#[test]
fn orphans_are_the_receive_snapshots_no_state_names() {
    let src = source();
    let mut t = Target::new();
    cut_receive(&src, &mut t);
    let p = t.pending.clone().unwrap();
    assert!(orphans(&t.s, Some(&p)).is_empty());
    let force =
        t.s.create_snapshot("recv-force+0123456789abcdef", None, 1)
            .unwrap();
    t.s.create_snapshot("recv+not-ours", None, 1).unwrap();
    t.s.create_snapshot("mine", None, 1).unwrap();
    let o: Vec<SnapId> = orphans(&t.s, Some(&p)).into_iter().map(|x| x.0).collect();
    assert_eq!(o, [force]);
    // with no state (lost), the rollback and the mark are orphans too
    let mut o: Vec<SnapId> = orphans(&t.s, None).into_iter().map(|x| x.0).collect();
    o.sort();
    let mut want = vec![force, p.rollback, p.mark.unwrap()];
    want.sort();
    assert_eq!(o, want);
}
