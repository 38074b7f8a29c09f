//! The group commit's flushes and superblock without the store lock
//! (`store::commit`, part 2): what may go on meanwhile, and what must wait.
use super::{
    held::{Held, Hold},
    *,
};
use crate::{Started, StoreOptions};
use blockdev::MemDevice;
use std::{
    sync::mpsc::{sync_channel, Receiver, SyncSender},
    time::Duration,
};

/// A pool of three origins (A = 0, B, C) of 16 chunks, A and B with a snapshot,
/// over a store device whose flushes can be held; the armed flush's signal comes on
/// the returned receiver. (C has no writes: a snapshot of it never waits for a
/// gate the test holds.)
#[allow(clippy::type_complexity)]
fn held_pool() -> (
    Arc<SharedStore>,
    Arc<Held>,
    Receiver<()>,
    SyncSender<bool>,
    OriginId,
    SnapId,
    SnapId,
) {
    let cs = 4096u64;
    let (dev, go) = Held::new(MemDevice::new(1024 * cs), Hold::Flushes);
    let a = Arc::new(MemDevice::from_vec(vec![1u8; (16 * cs) as usize]));
    let b = Arc::new(MemDevice::from_vec(vec![2u8; (16 * cs) as usize]));
    let mut store = Store::format(a, dev.clone(), cs as u32, StoreOptions::default()).unwrap();
    let kb = store.add_origin("b", b, "", 0).unwrap();
    let c = Arc::new(MemDevice::from_vec(vec![3u8; (16 * cs) as usize]));
    assert_eq!(store.add_origin("c", c, "", 0).unwrap(), kb + 1);
    let s = Arc::new(SharedStore::new(store));
    let sa = s.create_origin_snapshot(0, "a", 0).unwrap();
    let sb = s.create_origin_snapshot(kb, "b", 0).unwrap();
    let (at, blocked) = sync_channel(1);
    dev.arm(at);
    (s, dev, blocked, go, kb, sa, sb)
}

/// A first write of 10s to A's chunk 3 on a thread of its own, returned once its
/// group commit is held in its first flush (N sealed).
fn first_write_held_in_its_flush(
    s: &Arc<SharedStore>,
    blocked: &Receiver<()>,
    go: &SyncSender<bool>,
) -> std::thread::JoinHandle<Result<()>> {
    let leader = {
        let s = s.clone();
        std::thread::spawn(move || s.write(Dev::Origin(0), 3 * 4096, &chunk(10)))
    };
    if blocked.recv_timeout(Duration::from_secs(60)).is_err() {
        go.send(true).unwrap();
        panic!("the first write's commit never flushed");
    }
    leader
}

fn chunk(v: u8) -> Vec<u8> {
    vec![v; 4096]
}

/// While the group-commit leader's first flush is held (its transaction N sealed,
/// the store lock free):
/// - the store lock is free, and a first write to B copies out and links into N+1;
/// - a write to the address N copied out answers `Wait(N)`: the origin is not
///   written before N's superblock is durable;
/// - a snapshot create (a commit under the store lock) waits to write its
///   superblock until N's is durable.
///
/// Then everything completes, every snapshot reads what it captured, and the store
/// reopened from its device holds it all.
#[test]
fn a_commit_flushes_without_the_store_lock() {
    let cs = 4096u64;
    let (s, dev, blocked, go, kb, sa, sb) = held_pool();
    let before = s.lock().txn_id();
    let leader = first_write_held_in_its_flush(&s, &blocked, &go);
    // the leader is in its flush: N sealed, the store lock free
    let n = {
        let Some(st) = s.store.try_lock() else {
            go.send(true).unwrap();
            panic!("the store lock is held through the commit's flush");
        };
        let n = st.inflight_txn().expect("N is sealed");
        assert_eq!(st.txn_id(), before, "N is not durable yet");
        assert_eq!(n.0, before.0 + 1);
        n
    };
    // B's first write: copy-out and link into N+1, no wait for N
    let Started::Wait(t) = s.origin_write_start(kb, 5 * cs, &chunk(20)).unwrap() else {
        panic!("a first write after a snapshot waits for its commit");
    };
    assert_eq!(t.0, n.0 + 1, "B's copy-out is in the transaction after N");
    // the address N copied out: not written until N is durable
    let again = s.origin_write_start(0, 3 * cs, &chunk(11)).unwrap();
    assert_eq!(
        again,
        Started::Wait(n),
        "a write to an address N changed waits for N"
    );
    let mut buf = chunk(0);
    s.read(Dev::Origin(0), 3 * cs, &mut buf).unwrap();
    assert_eq!(
        buf,
        chunk(1),
        "A's chunk is not written before N is durable"
    );
    // a create commits under the store lock: its superblock waits for N's
    let create = {
        let s = s.clone();
        std::thread::spawn(move || s.create_origin_snapshot(kb + 1, "c", 1))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !create.is_finished(),
        "a create wrote its superblock while N's was still on its way"
    );
    go.send(true).unwrap();
    leader.join().unwrap().unwrap();
    let sc = create.join().unwrap().unwrap();
    assert!(s.lock().txn_id() > n);
    s.wait_durable(n).unwrap();
    s.origin_write_finish(0, 3 * cs, &chunk(11)).unwrap();
    s.wait_durable(t).unwrap();
    s.origin_write_finish(kb, 5 * cs, &chunk(20)).unwrap();
    s.commit().unwrap();
    let read = |s: &SharedStore, d: Dev, c: u64| {
        let mut buf = chunk(0);
        s.read(d, c * cs, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == buf[0]), "{d:?} reads one value");
        buf[0]
    };
    let want = [
        (Dev::Origin(0), 3, 11),
        (Dev::Snap(sa), 3, 1),
        (Dev::Origin(kb), 5, 20),
        (Dev::Snap(sb), 5, 2),
        (Dev::Snap(sc), 5, 3),
    ];
    for (d, c, v) in want {
        assert_eq!(read(&s, d, c), v, "{d:?} chunk {c}");
    }
    let rep = s.lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
    // the same after a reopen from what the store device holds
    let store = Store::open(
        Arc::new(MemDevice::from_vec(read_dev(
            &*s.lock().origin_device(0).unwrap(),
        ))),
        Arc::new(MemDevice::from_vec(read_dev(&dev.inner))),
        StoreOptions::default(),
    )
    .unwrap();
    let mut store = store;
    store
        .attach_origin(
            kb,
            Arc::new(MemDevice::from_vec(read_dev(
                &*s.lock().origin_device(kb).unwrap(),
            ))),
        )
        .unwrap();
    store
        .attach_origin(
            kb + 1,
            Arc::new(MemDevice::from_vec(read_dev(
                &*s.lock().origin_device(kb + 1).unwrap(),
            ))),
        )
        .unwrap();
    let r = SharedStore::new(store);
    for (d, c, v) in want {
        assert_eq!(read(&r, d, c), v, "after a reopen: {d:?} chunk {c}");
    }
    assert!(r.lock().check().unwrap().is_clean());
}

/// A commit whose flush fails while it runs without the store lock latches the
/// store: its writers get the error and write nothing, a create made meanwhile
/// fails, the transaction opened meanwhile never becomes durable.
#[test]
fn a_failed_flush_without_the_store_lock_latches_the_store() {
    let cs = 4096u64;
    let (s, _dev, blocked, go, kb, sa, _) = held_pool();
    let before = s.lock().txn_id();
    let leader = first_write_held_in_its_flush(&s, &blocked, &go);
    let Started::Wait(t) = s.origin_write_start(kb, 5 * cs, &chunk(20)).unwrap() else {
        panic!("a first write after a snapshot waits for its commit");
    };
    let create = {
        let s = s.clone();
        std::thread::spawn(move || s.create_origin_snapshot(kb + 1, "c", 1))
    };
    std::thread::sleep(Duration::from_millis(50));
    go.send(false).unwrap();
    assert!(leader.join().unwrap().is_err(), "the leader's write fails");
    assert!(create.join().unwrap().is_err(), "the create fails");
    assert!(s.wait_durable(t).is_err(), "B's transaction never commits");
    s.origin_write_abandon(kb);
    assert!(s.lock().is_failed());
    assert_eq!(s.lock().txn_id(), before);
    for (d, c, v) in [(Dev::Origin(0), 3, 1), (Dev::Origin(kb), 5, 2)] {
        let mut buf = chunk(0);
        s.read(d, c * cs, &mut buf).unwrap();
        assert_eq!(buf, chunk(v), "{d:?} chunk {c} is not written");
    }
    let mut buf = chunk(0);
    s.read(Dev::Snap(sa), 3 * cs, &mut buf).unwrap();
    assert_eq!(buf, chunk(1));
}

fn read_dev(d: &dyn blockdev::BlockDevice) -> Vec<u8> {
    let mut v = vec![0u8; d.len() as usize];
    d.read_at(&mut v, 0).unwrap();
    v
}

/// A commit sealed whose job is dropped without running (its superblock never
/// written) latches the store at the next commit: a later superblock would take
/// the slot of the one before it.
#[test]
fn a_sealed_commit_never_written_latches_the_store() {
    let cs = 4096u64;
    let (s, _dev, _blocked, _go, _kb, sa, _) = held_pool();
    let mut st = s.lock();
    st.write(Dev::Snap(sa), 0, &chunk(9)).unwrap();
    let job = st.commit_begin().unwrap();
    assert!(st.inflight_txn().is_some());
    drop(job);
    assert!(matches!(st.commit(), Err(crate::Error::PreviousIo)));
    assert!(st.is_failed());
    let mut buf = chunk(0);
    st.read(Dev::Snap(sa), cs, &mut buf).unwrap();
}
