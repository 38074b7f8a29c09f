use super::{ReadPiece, ReadSource};
use crate::{Dev, Store, StoreOptions};
use blockdev::{BlockDevice, MemDevice};
use proptest::prelude::*;
use std::sync::Arc;

const CS: u64 = 4096;
const CHUNKS: u64 = 12;

fn store() -> (Store, Arc<MemDevice>, Arc<MemDevice>) {
    let origin = Arc::new(MemDevice::new(CHUNKS * CS));
    let dev = Arc::new(MemDevice::new(4 << 20));
    let s = Store::format(
        origin.clone(),
        dev.clone(),
        CS as u32,
        StoreOptions::default(),
    )
    .expect("format");
    (s, origin, dev)
}

/// Carry a plan out by hand, as the ublk queue does: each piece from its device.
fn carry_out(plan: &[ReadPiece], origin: &MemDevice, dev: &MemDevice, len: u64) -> Vec<u8> {
    let mut buf = vec![0xeeu8; len as usize];
    for p in plan {
        let out = &mut buf[p.buf_off as usize..(p.buf_off + p.len) as usize];
        match p.src {
            ReadSource::Origin(at) => origin.read_at(out, at).expect("origin"),
            ReadSource::Store(at) => dev.read_at(out, at).expect("store"),
            ReadSource::Zeroes => out.fill(0),
        }
    }
    buf
}

/// The plan's invariants: it covers the read exactly, pieces are not empty, and
/// no piece continues the one before it.
fn check_shape(plan: &[ReadPiece], len: u64) {
    let mut at = 0;
    for (i, p) in plan.iter().enumerate() {
        assert_eq!(p.buf_off, at, "{plan:?}");
        assert!(p.len > 0, "{plan:?}");
        if i > 0 {
            let prev = plan[i - 1];
            assert_ne!(prev.src.advanced(prev.len), Some(p.src), "{plan:?}");
        }
        at += p.len;
    }
    assert_eq!(at, len, "{plan:?}");
}

/// A snapshot's read is its copied-out chunks, its holes and the origin, each one
/// piece where they continue each other.
#[test]
fn a_snapshot_read_is_planned_from_its_chunks_holes_and_the_origin() {
    let (mut s, origin, dev) = store();
    let a = s.create_snapshot("a", None, 0).expect("snapshot");
    s.write(Dev::Origin(0), 2 * CS, &[1; 2 * CS as usize])
        .expect("write"); // copied out
    s.write_zeroes(Dev::Snap(a), 6 * CS, CS).expect("zeroes"); // a hole
    let plan = s.read_plan(Dev::Snap(a), CS + 512, 7 * CS).expect("plan");
    check_shape(&plan, 7 * CS);
    let kinds: Vec<_> = plan
        .iter()
        .map(|p| match p.src {
            ReadSource::Origin(at) => ("origin", at, p.len),
            ReadSource::Store(_) => ("store", 0, p.len),
            ReadSource::Zeroes => ("zeroes", 0, p.len),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("origin", CS + 512, CS - 512),
            ("store", 0, 2 * CS), // two chunks copied out in one go are adjacent
            ("origin", 4 * CS, 2 * CS),
            ("zeroes", 0, CS),
            ("origin", 7 * CS, CS + 512),
        ]
    );
    let mut want = vec![0u8; 7 * CS as usize];
    s.read(Dev::Snap(a), CS + 512, &mut want).expect("read");
    assert_eq!(carry_out(&plan, &origin, &dev, 7 * CS), want);
    // the origin is one piece
    let plan = s.read_plan(Dev::Origin(0), 0, CHUNKS * CS).expect("plan");
    assert_eq!(
        plan,
        [ReadPiece {
            buf_off: 0,
            len: CHUNKS * CS,
            src: ReadSource::Origin(0)
        }]
    );
    assert!(s.read_plan(Dev::Origin(0), CS, CHUNKS * CS).is_err());
}

#[derive(Debug, Clone)]
enum Step {
    Origin(u64, u64, u8),
    Snap(u64, u64, u8),
    SnapZeroes(u64, u64),
    Snapshot,
}

fn step() -> impl Strategy<Value = Step> {
    let range = (0..CHUNKS * CS / 512, 1..3 * CS / 512)
        .prop_map(|(o, l)| (o * 512, (l * 512).min(CHUNKS * CS - o * 512)));
    prop_oneof![
        (range.clone(), any::<u8>()).prop_map(|((o, l), b)| Step::Origin(o, l, b)),
        (range.clone(), any::<u8>()).prop_map(|((o, l), b)| Step::Snap(o, l, b)),
        range.prop_map(|(o, l)| Step::SnapZeroes(o, l)),
        Just(Step::Snapshot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Against a model of every device's bytes: a plan carried out by hand reads
    /// what the model says, for any read of any device, after any history.
    #[test]
    fn plans_read_what_the_devices_hold(
        steps in proptest::collection::vec(step(), 1..24),
        reads in proptest::collection::vec((0..CHUNKS * CS / 512, 1..CHUNKS * CS / 512), 4),
    ) {
        let (mut s, origin, dev) = store();
        let mut model: Vec<(Dev, Vec<u8>)> = vec![(Dev::Origin(0), vec![0; (CHUNKS * CS) as usize])];
        let first = s.create_snapshot("s0", None, 0).expect("snapshot");
        model.push((Dev::Snap(first), model[0].1.clone()));
        for (i, st) in steps.into_iter().enumerate() {
            let last = model.last().map(|m| m.0).unwrap_or(Dev::Origin(0));
            match st {
                Step::Origin(o, l, b) => {
                    s.write(Dev::Origin(0), o, &vec![b; l as usize]).expect("write");
                    model[0].1[o as usize..(o + l) as usize].fill(b);
                }
                Step::Snap(o, l, b) => {
                    s.write(last, o, &vec![b; l as usize]).expect("write");
                    let m = model.last_mut().expect("snapshot");
                    m.1[o as usize..(o + l) as usize].fill(b);
                }
                Step::SnapZeroes(o, l) => {
                    s.write_zeroes(last, o, l).expect("zeroes");
                    let m = model.last_mut().expect("snapshot");
                    m.1[o as usize..(o + l) as usize].fill(0);
                }
                Step::Snapshot => {
                    let id = s.create_snapshot(&format!("s{}", i + 1), None, 0).expect("snapshot");
                    model.push((Dev::Snap(id), model[0].1.clone()));
                }
            }
        }
        for (d, bytes) in &model {
            for &(o, l) in &reads {
                let (o, l) = (o * 512, (l * 512).min(CHUNKS * CS - o * 512));
                let plan = s.read_plan(*d, o, l).expect("plan");
                check_shape(&plan, l);
                let got = carry_out(&plan, &origin, &dev, l);
                prop_assert_eq!(&got[..], &bytes[o as usize..(o + l) as usize], "{:?} {} {}", d, o, l);
            }
        }
    }
}

/// A snapshot taken before the origin grew keeps its size: its plan stops at its
/// end (a short last chunk is cut there) and a read past it is refused, while the
/// origin's plan covers the grown origin.
#[test]
fn a_snapshot_from_before_a_growth_is_planned_to_its_own_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("origin");
    let old = 10 * CS + 512;
    let origin = Arc::new(blockdev::FileDevice::create(&path, old).expect("origin"));
    let dev = Arc::new(MemDevice::new(4 << 20));
    let mut s = Store::format(origin, dev, CS as u32, StoreOptions::default()).expect("format");
    let a = s.create_snapshot("a", None, 0).expect("snapshot");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(16 * CS))
        .expect("extend the origin file");
    s.grow_origin(0, 16 * CS).expect("grow");
    let plan = s
        .read_plan(Dev::Snap(a), 8 * CS, old - 8 * CS)
        .expect("plan");
    check_shape(&plan, old - 8 * CS);
    assert!(s.read_plan(Dev::Snap(a), 8 * CS, 3 * CS).is_err());
    let plan = s.read_plan(Dev::Origin(0), 8 * CS, 8 * CS).expect("plan");
    check_shape(&plan, 8 * CS);
}
