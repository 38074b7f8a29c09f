use super::{DirectPiece, DirectSource, DirectStarted};
use crate::{Dev, SharedStore, Store, StoreOptions};
use blockdev::{FileDevice, MemDevice};
use std::{os::fd::RawFd, sync::Arc};

const CS: u64 = 4096;

fn pread(fd: RawFd, len: u64, at: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    // SAFETY: reads into a live, exclusive buffer.
    let n = unsafe { libc::pread(fd, b.as_mut_ptr().cast(), b.len(), at as libc::off_t) };
    assert_eq!(n as usize, b.len());
    b
}

fn pwrite(fd: RawFd, data: &[u8], at: u64) {
    // SAFETY: writes from a live buffer.
    let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), at as libc::off_t) };
    assert_eq!(n as usize, data.len());
}

/// A store on files (descriptors for the direct paths), 16 chunks of origin.
fn files(dir: &tempfile::TempDir) -> SharedStore {
    let origin = Arc::new(FileDevice::create(&dir.path().join("o"), 16 * CS).expect("origin"));
    let dev = Arc::new(FileDevice::create(&dir.path().join("s"), 4 << 20).expect("store"));
    let s = Store::format(origin, dev, CS as u32, StoreOptions::default()).expect("format");
    SharedStore::new(s)
}

/// [`files`], its origin all 7s, and snapshot `a` of it.
fn sevens_and_a_snapshot(dir: &tempfile::TempDir) -> (SharedStore, blockdev::ids::SnapId) {
    let s = files(dir);
    s.write(Dev::Origin(0), 0, &vec![7u8; (16 * CS) as usize])
        .expect("write");
    let snap = s.create_snapshot("a", None, 0).expect("snapshot");
    (s, snap)
}

/// Carry a plan out with the descriptors, as a zero-copy queue does.
fn carry_out(plan: &[DirectPiece], len: u64) -> Vec<u8> {
    let mut out = vec![0xeeu8; len as usize];
    for p in plan {
        let bytes = match p.src {
            DirectSource::Fd(fd, at) => pread(fd, p.len, at),
            DirectSource::Zeroes => vec![0; p.len as usize],
        };
        out[p.buf_off as usize..(p.buf_off + p.len) as usize].copy_from_slice(&bytes);
    }
    out
}

/// Origin reads are planned as the origin's bytes, with nothing to check; a
/// snapshot read is planned with a check when some of it comes from the origin (a
/// copy-out could replace an origin chunk under it), without one when none does;
/// carried out, a plan reads what `read` reads.
#[test]
fn plans_cover_origin_reads_and_snapshot_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, snap) = sevens_and_a_snapshot(&dir);
    s.write(Dev::Origin(0), 0, &vec![9u8; (4 * CS) as usize])
        .expect("write"); // copied out
    s.write_zeroes(Dev::Snap(snap), 2 * CS, CS).expect("zeroes");

    let plan = s
        .read_plan(Dev::Origin(0), CS, 8 * CS)
        .expect("an origin plan");
    assert_eq!(plan.pieces.len(), 1);
    assert_eq!(plan.check, None);
    let mut want = vec![0u8; (8 * CS) as usize];
    s.read(Dev::Origin(0), CS, &mut want).expect("read");
    assert_eq!(carry_out(&plan.pieces, 8 * CS), want);

    // chunks 0..4 are the snapshot's own (copied out, one a hole): checked for
    // frees only, which origin writes do not make
    let plan = s
        .read_plan(Dev::Snap(snap), 0, 4 * CS)
        .expect("a snapshot plan");
    let store_check = plan.check.expect("store pieces are checked");
    assert!(
        plan.pieces.iter().any(|p| p.src == DirectSource::Zeroes),
        "{plan:?}"
    );
    let mut want = vec![0u8; (4 * CS) as usize];
    s.read(Dev::Snap(snap), 0, &mut want).expect("read");
    assert_eq!(carry_out(&plan.pieces, 4 * CS), want);
    assert!(want[..CS as usize].iter().all(|&b| b == 7));
    s.write(Dev::Origin(0), 6 * CS, &vec![4u8; CS as usize])
        .expect("write"); // a copy-out: a move, no free
    assert!(s.plan_holds(store_check));

    // chunk 4 is still read through the origin: a plan to check, which holds
    // while nothing moves
    let plan = s
        .read_plan(Dev::Snap(snap), 3 * CS, 2 * CS)
        .expect("a snapshot plan");
    let check = plan.check.expect("an origin piece is checked");
    let mut want = vec![0u8; (2 * CS) as usize];
    s.read(Dev::Snap(snap), 3 * CS, &mut want).expect("read");
    assert_eq!(carry_out(&plan.pieces, 2 * CS), want);
    s.write(Dev::Origin(0), 0, &vec![3u8; CS as usize])
        .expect("write"); // no copy-out: chunk 0 is the snapshot's already
    assert!(s.plan_holds(check));
    // outside the device: no plan
    assert_eq!(s.read_plan(Dev::Origin(0), 15 * CS, 2 * CS), None);
}

/// The race a check catches: a snapshot read planned from the origin, then the
/// origin chunk copied out and overwritten before the plan is carried out (with
/// either kind of origin write, and by a merge of another snapshot). The plan no
/// longer holds, and `read` returns the snapshot's data.
#[test]
fn a_plan_of_origin_chunks_fails_its_check_once_they_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, snap) = sevens_and_a_snapshot(&dir);
    let old = vec![7u8; CS as usize];

    // through the store's own origin write
    let plan = s.read_plan(Dev::Snap(snap), 0, CS).expect("plan");
    let check = plan.check.expect("checked");
    s.write(Dev::Origin(0), 0, &vec![9u8; CS as usize])
        .expect("write");
    assert_eq!(
        carry_out(&plan.pieces, CS),
        vec![9u8; CS as usize],
        "the race"
    );
    assert!(!s.plan_holds(check));
    let mut got = vec![0u8; CS as usize];
    s.read(Dev::Snap(snap), 0, &mut got).expect("read");
    assert_eq!(got, old);

    // through a direct origin write (the zero-copy queue's)
    let plan = s.read_plan(Dev::Snap(snap), CS, CS).expect("plan");
    let check = plan.check.expect("checked");
    let fd = match s.origin_write_direct_start(0, CS, CS).expect("start") {
        DirectStarted::Ready(fd) | DirectStarted::Wait(_, fd) => fd,
        DirectStarted::Busy => panic!("busy"),
    };
    pwrite(fd, &vec![9u8; CS as usize], CS);
    s.origin_write_direct_end(0);
    assert!(!s.plan_holds(check));
    s.read(Dev::Snap(snap), CS, &mut got).expect("read");
    assert_eq!(got, old);

    // a merge of another snapshot writes the origin: the plan taken before it
    let other = s.create_snapshot("b", None, 0).expect("snapshot");
    s.write(Dev::Snap(other), 2 * CS, &vec![5u8; CS as usize])
        .expect("write");
    let plan = s.read_plan(Dev::Snap(snap), 2 * CS, CS).expect("plan");
    let check = plan.check.expect("checked");
    s.merge_snapshot(other).expect("merge");
    while s.background_step(64).expect("step") {}
    assert!(!s.plan_holds(check));
    s.read(Dev::Snap(snap), 2 * CS, &mut got).expect("read");
    assert_eq!(got, old);
    s.read(Dev::Origin(0), 2 * CS, &mut got).expect("read");
    assert_eq!(got, vec![5u8; CS as usize]);
}

/// No plan while a merge runs (origin addresses not merged yet read as the
/// snapshot), nor on devices without descriptors.
#[test]
fn no_plan_during_a_merge_or_without_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = files(&dir);
    let snap = s.create_snapshot("a", None, 0).expect("snapshot");
    s.write(Dev::Snap(snap), 0, &vec![5u8; CS as usize])
        .expect("write");
    s.merge_snapshot(snap).expect("merge");
    assert_eq!(s.read_plan(Dev::Origin(0), 0, CS), None);

    let origin = Arc::new(MemDevice::new(16 * CS));
    let dev = Arc::new(MemDevice::new(4 << 20));
    let m = SharedStore::new(
        Store::format(origin, dev, CS as u32, StoreOptions::default()).expect("format"),
    );
    assert_eq!(m.read_plan(Dev::Origin(0), 0, CS), None);
    assert!(!m.origin_writes_direct(0));
    assert!(m.origin_write_direct_start(0, 0, CS).is_err());
}

/// A direct origin write copies out first and asks for the commit that must come
/// before its data; the caller writes the data itself; the snapshot keeps the old
/// data; while the write is begun and not ended, a snapshot cannot be created
/// (the origin gate), and once ended it can.
#[test]
fn a_direct_origin_write_copies_out_and_holds_the_gate_until_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(files(&dir));
    s.write(Dev::Origin(0), 0, &vec![1u8; (4 * CS) as usize])
        .expect("write");
    let snap = s.create_snapshot("a", None, 0).expect("snapshot");

    let (t, fd) = match s.origin_write_direct_start(0, CS, CS).expect("start") {
        DirectStarted::Wait(t, fd) => (t, fd),
        other => panic!("a first write after a snapshot must wait for its copy-out: {other:?}"),
    };
    // an exclusive operation waits for the write to end
    let creator = {
        let s = s.clone();
        std::thread::spawn(move || s.create_snapshot("b", None, 0).expect("snapshot b"))
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        !creator.is_finished(),
        "a snapshot was created inside a direct write"
    );
    assert_eq!(
        s.origin_write_direct_start(0, 2 * CS, CS).expect("start"),
        DirectStarted::Busy
    );
    s.wait_durable(t).expect("commit");
    pwrite(fd, &vec![2u8; CS as usize], CS);
    s.origin_write_direct_end(0);
    let b = creator.join().expect("creator");

    let mut got = vec![0u8; (2 * CS) as usize];
    s.read(Dev::Snap(snap), 0, &mut got).expect("read");
    assert!(got.iter().all(|&x| x == 1), "the snapshot changed");
    s.read(Dev::Snap(b), 0, &mut got).expect("read");
    assert!(
        got[CS as usize..].iter().all(|&x| x == 2),
        "b missed the write"
    );
    let rep = s.lock().check().expect("check");
    assert!(rep.is_clean(), "{rep:?}");
}

/// The race the check of store pieces catches: a snapshot read planned from its
/// own store chunk, then the range discarded, committed (the chunk is free) and the
/// chunk reused by another snapshot's write before the plan is carried out. The
/// read returned the other address's data; the plan no longer holds, and `read`
/// returns the snapshot's data (a hole now).
#[test]
fn a_plan_of_store_chunks_fails_its_check_once_they_are_freed_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, snap) = sevens_and_a_snapshot(&dir);
    s.write(Dev::Snap(snap), 0, &vec![1u8; CS as usize])
        .expect("write"); // the snapshot's own chunk
    s.commit().expect("commit");
    let plan = s.read_plan(Dev::Snap(snap), 0, CS).expect("plan");
    let check = plan.check.expect("a store piece is checked");
    let at = match plan.pieces[..] {
        [DirectPiece {
            src: DirectSource::Fd(_, at),
            ..
        }] => at,
        _ => panic!("one store piece: {plan:?}"),
    };
    // the same snapshot range discarded, committed: the chunk is free
    s.discard(Dev::Snap(snap), 0, CS).expect("discard");
    s.commit().expect("commit");
    // another snapshot's writes take chunks (next fit: round the store) until one
    // lands in the freed chunk
    let other = s.create_snapshot("b", None, 0).expect("snapshot");
    let fd = s.lock().dev.raw_fd().expect("fd");
    let mut reused = false;
    for _ in 0..100 {
        s.write(Dev::Snap(other), 0, &vec![0xBB; (16 * CS) as usize])
            .expect("write");
        s.commit().expect("commit");
        if pread(fd, CS, at) == vec![0xBB; CS as usize] {
            reused = true;
            break;
        }
        s.discard(Dev::Snap(other), 0, 16 * CS).expect("discard");
        s.commit().expect("commit");
    }
    assert!(reused, "the freed chunk was never reused");
    assert_eq!(
        carry_out(&plan.pieces, CS),
        vec![0xBB; CS as usize],
        "the race"
    );
    assert!(!s.plan_holds(check), "a reused chunk passed the check");
    let mut got = vec![0xEEu8; CS as usize];
    s.read(Dev::Snap(snap), 0, &mut got).expect("read");
    assert_eq!(got, vec![0u8; CS as usize]);
}
