use super::*;
use crate::{Started, StoreOptions};
use blockdev::MemDevice;

#[test]
fn concurrent_first_writes_share_commits_and_snapshots_stay_intact() {
    let cs = 4096u64;
    let origin = Arc::new(MemDevice::new(256 * cs));
    let dev = Arc::new(MemDevice::new(4096 * cs));
    let s = Store::format(origin, dev, cs as u32, StoreOptions::default()).unwrap();
    let shared = Arc::new(SharedStore::new(s));
    for a in 0..256u64 {
        shared
            .write(Dev::Origin(0), a * cs, &vec![a as u8; cs as usize])
            .unwrap();
    }
    let snap = shared.create_snapshot("s", None, 0).unwrap();
    let t0 = shared.lock().txn_id();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let sh = shared.clone();
            std::thread::spawn(move || {
                for a in (t..256).step_by(8) {
                    sh.write(Dev::Origin(0), a * cs, &vec![0xEE; cs as usize])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let commits = shared.lock().txn_id().0 - t0.0;
    assert!(commits <= 256, "{commits} commits for 256 first writes");
    for a in 0..256u64 {
        let mut b = vec![0u8; cs as usize];
        shared.read(Dev::Snap(snap), a * cs, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == a as u8), "snapshot chunk {a}");
        shared.read(Dev::Origin(0), a * cs, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0xEE), "origin chunk {a}");
    }
    let rep = shared.lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
}

#[test]
fn flush_with_nothing_to_commit_returns() {
    let origin = Arc::new(MemDevice::new(64 * 4096));
    let dev = Arc::new(MemDevice::new(4096 * 4096));
    let s = Store::format(origin, dev, 4096, StoreOptions::default()).unwrap();
    let shared = SharedStore::new(s);
    let t0 = shared.flush(Dev::Origin(0)).unwrap();
    assert_eq!(shared.flush(Dev::Origin(0)).unwrap(), t0);
    shared.write(Dev::Origin(0), 0, &[1; 4096]).unwrap();
    assert_eq!(
        shared.commit().unwrap(),
        t0,
        "no snapshot: an origin write changes no metadata"
    );
    let id = shared.create_snapshot("a", None, 0).unwrap();
    shared.write(Dev::Snap(id), 0, &[2; 4096]).unwrap();
    assert!(shared.flush(Dev::Origin(0)).unwrap() > t0);
    assert_eq!(shared.commit().unwrap(), shared.lock().txn_id());
}

/// A store of 4 KiB chunks over in-memory devices of `origin_chunks` and
/// `store_chunks` chunks, shared.
fn formatted(
    origin_chunks: u64,
    store_chunks: u64,
) -> (Arc<MemDevice>, Arc<MemDevice>, SharedStore) {
    let origin = Arc::new(MemDevice::new(origin_chunks * 4096));
    let dev = Arc::new(MemDevice::new(store_chunks * 4096));
    let s = Store::format(origin.clone(), dev.clone(), 4096, StoreOptions::default()).unwrap();
    (origin, dev, SharedStore::new(s))
}

/// kill -9 of the daemon: the process's memory is gone, every write it made to the
/// devices is kept (the page cache survives the process; a `MemDevice` keeps every
/// write). Whatever a device read before, it reads after reopening.
#[test]
fn a_killed_process_loses_no_completed_write() {
    let cs = 4096u64;
    let (origin, dev, shared) = formatted(32, 4096);
    for a in 0..32u64 {
        shared
            .write(Dev::Origin(0), a * cs, &vec![a as u8; cs as usize])
            .unwrap();
    }
    let s1 = shared.create_snapshot("s1", None, 0).unwrap();
    let s2 = shared.create_snapshot("s2", Some(s1), 0).unwrap();
    let t = shared.lock().txn_id();
    // an origin copy-out, first writes to shared chunks (allocate, split), partial
    // writes, holes, a discard, then a steady write into a chunk already owned
    shared
        .write(Dev::Origin(0), 11 * cs, &vec![0xEE; cs as usize])
        .unwrap();
    shared
        .write(Dev::Snap(s1), 3 * cs, &vec![0xA1; cs as usize])
        .unwrap();
    shared
        .write(Dev::Snap(s2), 3 * cs + 512, &[0xB2; 1024])
        .unwrap();
    shared
        .write(Dev::Snap(s2), 5 * cs + 100, &[0xB5; 7])
        .unwrap();
    shared.write_zeroes(Dev::Snap(s1), 7 * cs, cs).unwrap();
    shared.discard(Dev::Snap(s2), 9 * cs, cs).unwrap();
    shared.write(Dev::Snap(s1), 3 * cs + 8, &[0xC3; 8]).unwrap();
    assert!(
        shared.lock().txn_id() > t,
        "metadata-changing writes committed"
    );
    let t2 = shared.lock().txn_id();
    shared.write(Dev::Snap(s2), 3 * cs, &[0xD3; 16]).unwrap();
    assert_eq!(
        shared.lock().txn_id(),
        t2,
        "a write into a chunk the snapshot owns (mapping committed) commits nothing"
    );
    let devs = [Dev::Origin(0), Dev::Snap(s1), Dev::Snap(s2)];
    let image = |sh: &SharedStore| -> Vec<Vec<u8>> {
        devs.iter()
            .map(|&d| {
                let mut b = vec![0u8; 32 * cs as usize];
                sh.read(d, 0, &mut b).unwrap();
                b
            })
            .collect()
    };
    let before = image(&shared);
    drop(shared); // no commit, no flush: the process is gone
    let reopened = Store::open(origin, dev, StoreOptions::default()).unwrap();
    let after = image(&SharedStore::new(reopened));
    for (i, d) in devs.iter().enumerate() {
        assert!(before[i] == after[i], "{d:?} lost a completed write");
    }
}

/// The chunk contents of write `v` to address `a`: (a, v) repeated, so that a chunk
/// read back names the write it came from, and a torn or misplaced copy shows.
fn tagged(a: u64, v: u64, cs: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(cs as usize);
    while (b.len() as u64) < cs {
        b.extend_from_slice(&a.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// Which write (address, value) a chunk read back holds, if it is whole.
fn tag_of(b: &[u8]) -> Option<(u64, u64)> {
    let a = u64::from_le_bytes(b[0..8].try_into().ok()?);
    let v = u64::from_le_bytes(b[8..16].try_into().ok()?);
    (b == tagged(a, v, b.len() as u64).as_slice()).then_some((a, v))
}

/// Copy-outs run without the store lock (`store::copy_out`), several at once, on
/// overlapping ranges, while snapshots are created and deleted and their delete
/// passes run. Every write gets a number from one counter before it starts; a
/// snapshot created when the counter stood at `w` must read, at every address, a
/// whole chunk of that address written by a write numbered at most `w` (a copy that
/// read the origin after a later write changed it would show a larger number, a torn
/// one no tag at all), and the store checks clean.
#[test]
fn copy_outs_without_the_lock_keep_every_snapshot_exact() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let cs = 4096u64;
    let nr = 24u64;
    let (origin, dev, shared) = formatted(nr, 8192);
    let shared = Arc::new(shared);
    for a in 0..nr {
        shared
            .write(Dev::Origin(0), a * cs, &tagged(a, 0, cs))
            .unwrap();
    }
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let (sh, issued, stop) = (shared.clone(), issued.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let a = x % nr;
                    let n = (1 + (x >> 32) % 3).min(nr - a);
                    let v = issued.fetch_add(1, Ordering::SeqCst) + 1;
                    let data: Vec<u8> = (a..a + n).flat_map(|b| tagged(b, v, cs)).collect();
                    sh.write(Dev::Origin(0), a * cs, &data).unwrap();
                }
            })
        })
        .collect();
    let mut live: Vec<(SnapId, u64)> = Vec::new();
    for i in 0..60u64 {
        let id = shared.create_snapshot(&format!("s{i}"), None, i).unwrap();
        live.push((id, issued.load(Ordering::SeqCst)));
        if i % 3 == 2 {
            // delete one of the older ones; its pass runs while copies are in flight
            let (victim, _) = live.remove((i as usize * 7) % (live.len() - 1));
            shared.delete_snapshot(victim).unwrap();
        }
        while shared.background_step(4).unwrap() {}
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(issued.load(Ordering::SeqCst) > 200, "too few writes raced");
    let verify = |sh: &SharedStore| {
        for &(id, w) in &live {
            for a in 0..nr {
                let mut b = vec![0u8; cs as usize];
                sh.read(Dev::Snap(id), a * cs, &mut b).unwrap();
                let tag = tag_of(&b);
                assert!(
                    matches!(tag, Some((ta, v)) if ta == a && v <= w),
                    "snapshot {id:?} (counter {w}) reads {tag:?} at address {a}"
                );
            }
        }
    };
    verify(&shared);
    shared.commit().unwrap();
    let rep = shared.lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
    drop(shared);
    let reopened = Store::open(origin, dev, StoreOptions::default()).unwrap();
    verify(&SharedStore::new(reopened));
}

/// An origin write split around its commit (`origin_write_start` / `_finish`): the
/// origin is untouched until the copy-out's transaction is durable and the write
/// finishes; with nothing to copy out the write is whole at once.
#[test]
fn a_split_origin_write_writes_nothing_before_its_commit() {
    let cs = 4096u64;
    let (origin, _dev, shared) = formatted(16, 1024);
    shared.write(Dev::Origin(0), 0, &[1u8; 4096]).unwrap();
    assert_eq!(
        shared.origin_write_start(0, cs, &[2u8; 4096]).unwrap(),
        Started::Written,
        "no snapshot: nothing to commit first"
    );
    let snap = shared.create_snapshot("s", None, 0).unwrap();
    let Started::Wait(t) = shared.origin_write_start(0, 0, &[3u8; 4096]).unwrap() else {
        panic!("a first write after a snapshot waits for its copy-out's commit");
    };
    let mut b = [0u8; 4096];
    origin.read_at(&mut b, 0).unwrap();
    assert_eq!(b[0], 1, "the origin was written before the commit");
    // a second write to the same chunk in the same batch waits for the same commit
    let Started::Wait(t2) = shared.origin_write_start(0, 0, &[4u8; 4096]).unwrap() else {
        panic!("a write to an uncommitted address must wait too");
    };
    assert_eq!(t2, t);
    shared.wait_durable(t.max(t2)).unwrap();
    shared.origin_write_finish(0, 0, &[3u8; 4096]).unwrap();
    shared.origin_write_finish(0, 0, &[4u8; 4096]).unwrap();
    shared.read(Dev::Origin(0), 0, &mut b).unwrap();
    assert_eq!(b[0], 4);
    shared.read(Dev::Snap(snap), 0, &mut b).unwrap();
    assert_eq!(b[0], 1, "the snapshot lost the old data");
    // a write that failed to settle releases its entry: a create still runs
    let Started::Wait(_) = shared.origin_write_start(0, 2 * cs, &[5u8; 4096]).unwrap() else {
        panic!("copy-out expected");
    };
    shared.origin_write_abandon(0);
    origin.read_at(&mut b, 2 * cs).unwrap();
    assert_eq!(b[0], 0, "an unsettled write reached the origin");
    shared.create_snapshot("t", None, 1).unwrap();
}

/// While a started write holds its gate entry, a snapshot create waits for it, and
/// the writer's next start answers `Busy` instead of blocking behind the create (a
/// queue thread blocking there would wait for itself).
#[test]
fn a_create_waits_for_started_writes_and_new_starts_answer_busy() {
    let (_origin, _dev, shared) = formatted(16, 1024);
    let shared = Arc::new(shared);
    shared.create_snapshot("s", None, 0).unwrap();
    let Started::Wait(t) = shared.origin_write_start(0, 0, &[3u8; 4096]).unwrap() else {
        panic!("copy-out expected");
    };
    let creator = {
        let sh = shared.clone();
        std::thread::spawn(move || sh.create_snapshot("t", None, 1).unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match shared.origin_write_start(0, 4096, &[6u8; 4096]).unwrap() {
            Started::Busy => break,
            Started::Wait(t) => {
                // the creator has not closed the gate yet: finish this one, retry
                shared.wait_durable(t).unwrap();
                shared.origin_write_finish(0, 4096, &[6u8; 4096]).unwrap();
            }
            Started::Written => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the create never closed the gate"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(!creator.is_finished(), "the create ran with a write inside");
    shared.wait_durable(t).unwrap();
    shared.origin_write_finish(0, 0, &[3u8; 4096]).unwrap();
    let t_snap = creator.join().unwrap();
    let mut b = [0u8; 4096];
    shared.read(Dev::Snap(t_snap), 0, &mut b).unwrap();
    assert_eq!(
        b[0], 3,
        "the new snapshot must see the write that finished before it"
    );
}

/// An origin that stops inside its first write of zeros of at least 1 MiB, until
/// told to go on: the moment a WRITE_ZEROES is writing, made to last.
#[derive(Debug)]
struct PausingOrigin {
    inner: blockdev::MemDevice,
    paused: std::sync::Mutex<bool>,
    at_pause: std::sync::mpsc::SyncSender<()>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl blockdev::BlockDevice for PausingOrigin {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let first = buf.len() >= 1 << 20
            && buf.iter().all(|&b| b == 0)
            && !std::mem::replace(&mut *self.paused.lock().expect("lock"), true);
        if first {
            self.at_pause.send(()).expect("test waits");
            self.go.lock().expect("lock").recv().expect("test goes on");
        }
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A WRITE_ZEROES of the origin far larger than one step writes its zeros without
/// the store lock, and takes it only per step: while it is writing, another device
/// is read, and the store committed. The result is zeros on the origin, the old
/// data in the snapshot.
#[test]
fn a_huge_write_zeroes_of_the_origin_never_holds_the_store_lock_while_writing() {
    use std::sync::mpsc::sync_channel;
    const LEN: u64 = 3 * super::RANGE_STEP;
    let (at_pause, paused) = sync_channel(1);
    let (go, gone) = sync_channel(1);
    let origin = Arc::new(PausingOrigin {
        inner: blockdev::MemDevice::from_vec(vec![7u8; LEN as usize]),
        paused: std::sync::Mutex::new(false),
        at_pause,
        go: std::sync::Mutex::new(gone),
    });
    let dev = Arc::new(blockdev::MemDevice::new(LEN + (16 << 20)));
    let store = Store::format(origin, dev, 1 << 20, StoreOptions::default()).expect("format");
    let s = Arc::new(SharedStore::new(store));
    let snap = s.create_snapshot("a", None, 0).expect("snapshot");
    s.write(Dev::Snap(snap), 0, &[5u8; 4096]).expect("write");
    let zeroer = {
        let s = s.clone();
        std::thread::spawn(move || s.write_zeroes(Dev::Origin(0), 0, LEN))
    };
    paused.recv().expect("the zeroer writes");
    // the zeroer is inside its write: the lock is free for everyone else
    assert!(
        s.store.try_lock().is_some(),
        "the store lock is held while zeros are written"
    );
    let mut b = [0u8; 4096];
    s.read(Dev::Snap(snap), 0, &mut b).expect("read");
    assert_eq!(b, [5u8; 4096]);
    s.commit().expect("commit");
    go.send(()).expect("go");
    zeroer.join().expect("zeroer").expect("write_zeroes");
    let mut all = vec![1u8; LEN as usize];
    s.read(Dev::Origin(0), 0, &mut all).expect("read");
    assert!(all.iter().all(|&b| b == 0), "the origin is not all zeros");
    s.read(Dev::Snap(snap), 4096, &mut all[..4096])
        .expect("read");
    assert!(
        all[..4096].iter().all(|&b| b == 7),
        "the snapshot lost its data"
    );
    let mut big = vec![0u8; (LEN - 4096) as usize];
    s.read(Dev::Snap(snap), 4096, &mut big).expect("read");
    assert!(big.iter().all(|&b| b == 7), "the snapshot lost its data");
    let rep = s.lock().check().expect("check");
    assert!(rep.is_clean(), "{rep:?}");
}

/// The steady state takes no store lock: once a chunk's copy-out is committed, the
/// next origin writes to it (and origin reads) go through while another thread holds
/// the store lock. A new snapshot, a merge and a growth each end the steady state:
/// the first write after them copies out again, and every snapshot reads what it
/// captured.
#[test]
fn settled_origin_chunks_are_written_without_the_store_lock_until_the_next_snapshot() {
    use std::{sync::mpsc::channel, time::Duration};
    let cs = 4096u64;
    let origin = Arc::new(blockdev::FaultyDevice::from_vec(vec![
        1u8;
        (64 * cs) as usize
    ]));
    let dev = Arc::new(MemDevice::new(4096 * cs));
    let s = Store::format(origin.clone(), dev, cs as u32, StoreOptions::default()).unwrap();
    let s = Arc::new(SharedStore::new(s));
    let a = s.create_snapshot("a", None, 0).unwrap();
    s.write(Dev::Origin(0), 0, &vec![2u8; (8 * cs) as usize])
        .unwrap(); // copy-out, commit
    s.write(Dev::Origin(0), 0, &vec![3u8; (8 * cs) as usize])
        .unwrap(); // settles 0..8
                   // with the store lock held elsewhere, a settled write and an origin read finish
    let held = s.lock();
    let (done, finished) = channel();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            s.write(Dev::Origin(0), cs, &vec![4u8; cs as usize])
                .unwrap();
            let mut b = vec![0u8; cs as usize];
            s.read(Dev::Origin(0), cs, &mut b).unwrap();
            done.send(b).unwrap();
        })
    };
    let got = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("a settled origin write waited for the store lock");
    assert_eq!(got, vec![4u8; cs as usize]);
    drop(held);
    writer.join().unwrap();
    let read = |d: Dev, at: u64| {
        let mut b = vec![0u8; cs as usize];
        s.read(d, at * cs, &mut b).unwrap();
        b[0]
    };
    // a new snapshot: the next write copies out for it
    let b = s.create_snapshot("b", None, 1).unwrap();
    s.write(Dev::Origin(0), cs, &vec![5u8; cs as usize])
        .unwrap();
    assert_eq!((read(Dev::Snap(a), 1), read(Dev::Snap(b), 1)), (1, 4));
    s.write(Dev::Origin(0), cs, &vec![6u8; cs as usize])
        .unwrap(); // settled again
                   // a merge: writes go through the store (the address merges first)
    s.write(Dev::Snap(b), 0, &vec![7u8; cs as usize]).unwrap();
    s.merge_snapshot(b).unwrap();
    s.write(Dev::Origin(0), 2 * cs, &vec![8u8; cs as usize])
        .unwrap();
    while s.background_step(64).unwrap() {}
    assert_eq!(read(Dev::Origin(0), 0), 7, "the merge took effect");
    assert_eq!(read(Dev::Origin(0), 2), 8);
    assert_eq!((read(Dev::Snap(a), 0), read(Dev::Snap(a), 1)), (1, 1));
    // a growth: the new chunks and the old ones copy out for a snapshot after it
    origin.extend(128 * cs);
    s.grow_origin(0, 128 * cs).unwrap_or_else(|e| panic!("{e}"));
    let c = s.create_snapshot("c", None, 2).unwrap();
    s.write(Dev::Origin(0), 100 * cs, &vec![9u8; cs as usize])
        .unwrap();
    s.write(Dev::Origin(0), 2 * cs, &vec![10u8; cs as usize])
        .unwrap();
    assert_eq!((read(Dev::Snap(c), 100), read(Dev::Snap(c), 2)), (0, 8));
    let rep = s.lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
}

/// A full store with the delete-oldest policy: an old snapshot holding thousands of
/// single-chunk elements, a young one whose copy-outs filled the rest; the next
/// origin chunk to write (it needs room).
fn full_with_a_big_victim() -> (Arc<SharedStore>, u64) {
    const N: u64 = 16384;
    let cs = 4096u64;
    let origin = Arc::new(MemDevice::from_vec(vec![7u8; (N * cs) as usize]));
    let dev = Arc::new(MemDevice::new(9000 * cs));
    let opts = StoreOptions {
        cache_bytes: 4 << 20,
        space_policy: crate::SpacePolicy::DeleteOldest,
        min_free_chunks: 0,
    };
    let s = Arc::new(SharedStore::new(
        Store::format(origin, dev, cs as u32, opts).unwrap(),
    ));
    s.create_snapshot("old", None, 1).unwrap();
    // every other chunk: one element each, so its pass has thousands of steps
    let mut a = 0;
    while a < N && s.lock().fits(1) {
        s.write(Dev::Origin(0), a * cs, &[1; 4096]).unwrap();
        a += 2;
    }
    s.create_snapshot("young", None, 2).unwrap();
    let mut b = 1;
    while s.lock().fits(1) {
        s.write(Dev::Origin(0), b * cs, &[2; 4096]).unwrap();
        b += 2;
    }
    (s, b)
}

/// The delete-oldest policy frees a big snapshot's space in bounded steps
/// (`Store::room_step`): the delete, then passes of at most the budget each, until
/// the chunks fit; the rest of the pass is the background worker's. A writer that
/// waits for room (`SharedStore::copy_out`, `NeedRoom`) takes the store lock once
/// per step, so other devices' I/O goes on between them, and its write then goes
/// through.
#[test]
fn delete_oldest_frees_a_big_victim_in_bounded_steps() {
    let (s, _) = full_with_a_big_victim();
    let mut st = s.lock();
    assert_eq!(st.room_step(0, 1, 16).unwrap(), crate::RoomStep::Progress);
    assert!(
        st.lookup("old").is_none(),
        "the first step deletes the victim"
    );
    assert!(st.has_background_work());
    let mut steps = 1;
    while st.room_step(0, 1, 16).unwrap() == crate::RoomStep::Progress {
        steps += 1;
        assert!(steps < 10_000, "no room ever");
    }
    // room came back after a few visits and their commit
    assert!(steps <= 3, "{steps} steps");
    assert!(st.has_background_work(), "the whole pass ran for one write");
    drop(st);

    // through the writer's path
    let (s, b) = full_with_a_big_victim();
    s.write(Dev::Origin(0), b * 4096, &[3; 4096]).unwrap();
    assert!(s.lock().lookup("old").is_none());
    assert!(
        s.lock().has_background_work(),
        "the write waited for the victim's whole pass"
    );
    let mut got = [0u8; 4096];
    s.read(Dev::Origin(0), b * 4096, &mut got).unwrap();
    assert_eq!(got, [3; 4096]);
    s.lock().run_background(64).unwrap();
    let rep = s.lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
}

/// A store device that stops inside its first `allocate` (a slow `fallocate` of a
/// large growth) until told to go on.
#[derive(Debug)]
struct PausingStore {
    inner: MemDevice,
    at_pause: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<()>>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl blockdev::BlockDevice for PausingStore {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn grow(&self) -> std::io::Result<u64> {
        self.inner.grow()
    }
    fn allocate(&self, offset: u64, len: u64) -> std::io::Result<()> {
        if let Some(tx) = self.at_pause.lock().expect("lock").take() {
            tx.send(()).expect("test waits");
            self.go.lock().expect("lock").recv().expect("test goes on");
        }
        self.inner.allocate(offset, len)
    }
}

/// grow-store preallocates the new part without the store lock: while the
/// `fallocate` runs, origin writes with copy-outs and commits go on; then the new
/// chunks are free.
#[test]
fn grow_store_preallocates_without_the_store_lock() {
    use std::sync::mpsc::sync_channel;
    let cs = 4096u64;
    let (at_pause, paused) = sync_channel(1);
    let (go, gone) = sync_channel(1);
    let inner = MemDevice::new(1024 * cs);
    let dev = Arc::new(PausingStore {
        inner,
        at_pause: std::sync::Mutex::new(Some(at_pause)),
        go: std::sync::Mutex::new(gone),
    });
    let origin = Arc::new(MemDevice::new(64 * cs));
    let s = Store::format(origin, dev.clone(), cs as u32, StoreOptions::default()).unwrap();
    let s = Arc::new(SharedStore::new(s));
    let snap = s.create_snapshot("a", None, 0).unwrap();
    dev.inner.extend(2048 * cs);
    let grower = {
        let s = s.clone();
        std::thread::spawn(move || s.grow_store(false))
    };
    paused.recv().expect("the growth preallocates");
    // the lock is free: a first write (copy-out, commit) goes through
    assert!(
        s.store.try_lock().is_some(),
        "the store lock is held while preallocating"
    );
    s.write(Dev::Origin(0), 0, &[9; 4096]).unwrap();
    go.send(()).unwrap();
    let g = grower.join().unwrap().unwrap();
    assert_eq!((g.old_len, g.new_len), (1024 * cs, 2048 * cs));
    assert_eq!(s.lock().store_len(), 2048 * cs);
    let mut b = [0u8; 4096];
    s.read(Dev::Snap(snap), 0, &mut b).unwrap();
    assert_eq!(b, [0; 4096]);
    let rep = s.lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
}

/// Copy-outs of different origins proceed in parallel up to the commit: while a
/// first write to origin A is stuck in its copy-out's read of A, origin B takes a
/// snapshot, a first write after it (copy-out, commit, data), steady-state writes, a
/// first write split as the queues do it (`origin_write_start`, `wait_durable`,
/// `origin_write_finish`) and a flush; A's write then finishes, and every snapshot
/// reads what it captured. Only a group of A and B, which must fence A's write, waits
/// for it; it closes B's gate too before it waits (every member's gate is closed
/// before any is drained, so that a group of N origins waits for the slowest write
/// in flight once, not for one write per member in a row), so B's writes wait for
/// the group meanwhile (`origin_write_start` answers `Busy`).
#[test]
fn copy_outs_of_different_origins_proceed_in_parallel() {
    use std::{sync::mpsc::sync_channel, time::Duration};
    let cs = 4096u64;
    let (at_block, blocked) = sync_channel(1);
    let (a_dev, go) = super::held::Held::new(
        MemDevice::from_vec(vec![1u8; (16 * cs) as usize]),
        super::held::Hold::Reads,
    );
    let b_dev = Arc::new(MemDevice::from_vec(vec![2u8; (16 * cs) as usize]));
    let mut store = Store::format(
        a_dev.clone(),
        Arc::new(MemDevice::new(1024 * cs)),
        cs as u32,
        StoreOptions::default(),
    )
    .unwrap();
    let b = store.add_origin("b", b_dev, "", 0).unwrap();
    let s = Arc::new(SharedStore::new(store));
    let sa = s.create_origin_snapshot(0, "a", 0).unwrap();
    a_dev.arm(at_block);
    let a_writer = {
        let s = s.clone();
        std::thread::spawn(move || s.write(Dev::Origin(0), 3 * cs, &vec![10u8; cs as usize]))
    };
    blocked
        .recv_timeout(Duration::from_secs(60))
        .expect("A's first write reads A for its copy-out");
    assert!(
        s.store.try_lock().is_some(),
        "the store lock is held while A's copy-out reads A"
    );
    // B, meanwhile, on a thread of its own: if it waits for A, A is let go and the
    // test fails naming the step that waited
    let (step, steps) = sync_channel(8);
    let b_side = {
        let s = s.clone();
        std::thread::spawn(move || -> Result<SnapId> {
            let sb = s.create_origin_snapshot(b, "b", 1)?;
            step.send("snapshot of B").unwrap();
            let t0 = s.lock().txn_id();
            s.write(Dev::Origin(b), 3 * cs, &vec![20u8; cs as usize])?;
            assert!(
                s.lock().txn_id() > t0,
                "the first write committed its copy-out"
            );
            step.send("first write to B (copy-out and commit)").unwrap();
            s.write(Dev::Origin(b), 3 * cs, &vec![21u8; cs as usize])?;
            s.write(Dev::Origin(b), 3 * cs, &vec![22u8; cs as usize])?;
            step.send("steady-state writes to B").unwrap();
            // the queues' split write: its copy-out, a group commit, its data
            let Started::Wait(t) = s.origin_write_start(b, 5 * cs, &vec![23u8; cs as usize])?
            else {
                panic!("a first write after a snapshot waits for its commit");
            };
            s.wait_durable(t)?;
            s.origin_write_finish(b, 5 * cs, &vec![23u8; cs as usize])?;
            step.send("a split first write to B").unwrap();
            let mut buf = vec![0u8; cs as usize];
            for c in [3, 5] {
                s.read(Dev::Snap(sb), c * cs, &mut buf)?;
                assert!(buf.iter().all(|&x| x == 2), "B's snapshot kept its data");
            }
            s.flush(Dev::Origin(b))?;
            step.send("flush of B").unwrap();
            Ok(sb)
        })
    };
    for want in [
        "snapshot of B",
        "first write to B (copy-out and commit)",
        "steady-state writes to B",
        "a split first write to B",
        "flush of B",
    ] {
        match steps.recv_timeout(Duration::from_secs(60)) {
            Ok(got) => assert_eq!(got, want),
            Err(_) => {
                go.send(true).unwrap();
                panic!("B waited for A's copy-out: no {want:?} within 60 s");
            }
        }
    }
    let sb = b_side.join().unwrap().unwrap();
    // A is still in its copy-out; a group of A and B waits for it, with B's gate
    // closed meanwhile
    assert!(
        !a_writer.is_finished(),
        "A's write went on without its read"
    );
    let group = {
        let s = s.clone();
        std::thread::spawn(move || s.create_group("g", &[0, b], 2))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // the same data B holds already: a write that gets through changes nothing
        match s.origin_write_start(b, 3 * cs, &vec![22u8; cs as usize]) {
            Ok(Started::Busy) => break,
            Ok(Started::Written) => {}
            Ok(Started::Wait(t)) => {
                s.wait_durable(t).unwrap();
                s.origin_write_finish(b, 3 * cs, &vec![22u8; cs as usize])
                    .unwrap();
            }
            Err(e) => panic!("a write to B failed: {e}"),
        }
        if std::time::Instant::now() > deadline {
            go.send(true).unwrap();
            panic!("the group never closed B's gate while it waited for A's write");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!group.is_finished(), "the group did not wait for A's write");
    go.send(true).unwrap();
    a_writer.join().unwrap().unwrap();
    let g = group.join().unwrap().unwrap();
    let read = |d: Dev| {
        let mut buf = vec![0u8; cs as usize];
        s.read(d, 3 * cs, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == buf[0]), "{d:?} reads one value");
        buf[0]
    };
    assert_eq!(read(Dev::Origin(0)), 10);
    assert_eq!(read(Dev::Snap(sa)), 1);
    assert_eq!(read(Dev::Origin(b)), 22);
    assert_eq!(read(Dev::Snap(sb)), 2);
    // the group fenced A's write: both members hold what was written before it
    let members: Vec<u8> = g
        .members
        .iter()
        .map(|&(_, id)| read(Dev::Snap(id)))
        .collect();
    assert_eq!(members, vec![10, 22]);
    let rep = s.lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
}
