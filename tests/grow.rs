//! Growing a store (`Store::grow_store`, `snapctl grow-store`): a full store whose
//! device was extended takes the new space in one commit, the writes it refused are
//! then accepted, a power cut at every write of the growth (and of the copy-outs that
//! go into the new space right after) leaves a store that opens at the old or the new
//! length with nothing lost and `check` clean; a device that did not grow, or shrank,
//! is refused and nothing changes.
mod common;

use blockdev::{CrashMode, FaultyDevice, FileDevice};
use common::{power_cut::*, *};
use exception_store::{Dev, Error, Preallocation, SharedStore, Store, StoreOptions};
use std::sync::Arc;

const CS: u64 = 4096;
const ORIGIN_CHUNKS: u64 = 512;
const STORE_CHUNKS: u64 = 300;
const GROWN_CHUNKS: u64 = 1200;

fn chunk(v: u8) -> Vec<u8> {
    vec![v; CS as usize]
}

/// A store with a snapshot, its origin written from chunk 0 up until the store
/// refused a write; returns the devices, the store, the snapshot's contents and the
/// first refused chunk.
fn full_store() -> (Arc<FaultyDevice>, Arc<FaultyDevice>, Store, Vec<u8>, u64) {
    let origin = Arc::new(FaultyDevice::from_vec(pattern(
        3,
        (ORIGIN_CHUNKS * CS) as usize,
    )));
    let dev = Arc::new(FaultyDevice::new(STORE_CHUNKS * CS));
    let mut s = Store::format(origin.clone(), dev.clone(), CS as u32, opts()).unwrap();
    let before = read_all(&mut s, Dev::Origin(0));
    s.create_snapshot("keep", None, 1).unwrap();
    let mut n = 0;
    let err = loop {
        match s.write(Dev::Origin(0), n * CS, &chunk(0xAB)) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < ORIGIN_CHUNKS, "the store never filled");
    };
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    s.flush().unwrap();
    (origin, dev, s, before, n)
}

fn snap(s: &Store) -> Dev {
    Dev::Snap(s.lookup("keep").expect("the snapshot"))
}

#[test]
fn a_full_store_grown_accepts_the_refused_writes() {
    let (origin, dev, mut s, before, refused) = full_store();
    let txn = s.txn_id();
    dev.extend(GROWN_CHUNKS * CS + 1000);
    let g = s.grow_store(false).unwrap();
    assert_eq!(g.old_len, STORE_CHUNKS * CS);
    assert_eq!(g.new_len, GROWN_CHUNKS * CS, "rounded down to whole chunks");
    assert_eq!(g.added_chunks, GROWN_CHUNKS - STORE_CHUNKS);
    assert_eq!(g.preallocation, Preallocation::Done);
    assert!(g.txn_id > txn);
    assert_eq!(s.status().nr_chunks, GROWN_CHUNKS);
    // every write the store refused now fits: the rest of the origin
    for n in refused..ORIGIN_CHUNKS {
        s.write(Dev::Origin(0), n * CS, &chunk(0xCD)).unwrap();
    }
    let sid = snap(&s);
    assert_eq!(read_all(&mut s, sid), before);
    assert!(s.check().unwrap().is_clean());
    s.flush().unwrap();
    let mut s = Store::open(origin, dev, StoreOptions::default()).unwrap();
    assert_eq!(s.store_len(), GROWN_CHUNKS * CS);
    assert_eq!(read_all(&mut s, sid), before);
    let o = read_all(&mut s, Dev::Origin(0));
    assert!(o[..(refused * CS) as usize].iter().all(|&b| b == 0xAB));
    assert!(o[(refused * CS) as usize..].iter().all(|&b| b == 0xCD));
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn online_growth_under_concurrent_origin_writes() {
    let (_origin, dev, s, before, refused) = full_store();
    let shared = Arc::new(SharedStore::new(s));
    // a writer that keeps retrying the refused chunks until they are accepted
    let w = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut refusals = 0u64;
            for n in refused..ORIGIN_CHUNKS {
                loop {
                    match shared.write(Dev::Origin(0), n * CS, &chunk(0xEE)) {
                        Ok(()) => break,
                        Err(Error::NoSpace(_)) => {
                            refusals += 1;
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("write {n}: {e}"),
                    }
                }
            }
            refusals
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    dev.extend(GROWN_CHUNKS * CS);
    let g = shared.grow_store(true).unwrap();
    assert_eq!(g.preallocation, Preallocation::Sparse);
    let refusals = w.join().unwrap();
    assert!(
        refusals > 0,
        "the writer was never refused before the growth"
    );
    shared.flush(Dev::Origin(0)).unwrap();
    let mut s = shared.lock();
    let sid = snap(&s);
    assert_eq!(read_all(&mut s, sid), before);
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn a_device_that_did_not_grow_is_refused_and_nothing_changes() {
    let (_origin, dev, mut s, _before, _) = full_store();
    let txn = s.txn_id();
    let e = s.grow_store(false).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    assert!(e.to_string().contains("did not grow"), "{e}");
    // less than one chunk more: still nothing to take
    dev.extend(STORE_CHUNKS * CS + CS - 1);
    let e = s.grow_store(false).unwrap_err();
    assert!(e.to_string().contains("did not grow"), "{e}");
    assert_eq!(s.txn_id(), txn);
    assert_eq!(s.status().nr_chunks, STORE_CHUNKS);
    assert!(!s.is_failed());
}

#[test]
fn a_shrunk_store_file_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (op, sp) = (dir.path().join("origin"), dir.path().join("store"));
    FileDevice::create(&op, 64 * CS).unwrap();
    FileDevice::create(&sp, 400 * CS).unwrap();
    let open = || {
        Store::open(
            Arc::new(FileDevice::open(&op).unwrap()),
            Arc::new(FileDevice::open(&sp).unwrap()),
            opts(),
        )
    };
    let mut s = Store::format(
        Arc::new(FileDevice::open(&op).unwrap()),
        Arc::new(FileDevice::open(&sp).unwrap()),
        CS as u32,
        opts(),
    )
    .unwrap();
    s.create_snapshot("a", None, 1).unwrap();
    s.write(Dev::Origin(0), 0, &chunk(9)).unwrap();
    s.flush().unwrap();
    let txn = s.txn_id();
    let f = std::fs::OpenOptions::new().write(true).open(&sp).unwrap();
    f.set_len(300 * CS).unwrap();
    let e = s.grow_store(false).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    assert!(e.to_string().contains("cannot shrink"), "{e}");
    assert_eq!(s.txn_id(), txn);
    drop(s);
    // the shrunk store does not open; given its size back, it opens as it was
    let Err(e) = open() else {
        panic!("a shrunk store must not open")
    };
    assert!(matches!(e, Error::Mismatch { .. }), "{e}");
    f.set_len(400 * CS).unwrap();
    let mut s = open().unwrap();
    assert_eq!(s.txn_id(), txn);
    assert!(s.check().unwrap().is_clean());
    // and grows, preallocated, once extended
    f.set_len(800 * CS).unwrap();
    let g = s.grow_store(false).unwrap();
    assert_eq!(g.new_len, 800 * CS);
    if g.preallocation == Preallocation::Done {
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&sp).unwrap().blocks();
        assert!(
            blocks * 512 >= 400 * CS,
            "the new part has no blocks: {blocks}"
        );
    }
    drop(s);
    let mut s = open().unwrap();
    assert_eq!(s.store_len(), 800 * CS);
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn power_cut_at_every_point_of_the_growth() {
    let (origin, dev, s, before, refused) = full_store();
    drop(s);
    // the flushed base every round starts from
    let base_origin = origin.crash_image(CrashMode::DropAll, 0);
    let base_store = dev.crash_image(CrashMode::DropAll, 0);
    let old = sector_hashes(&base_origin);
    // after the growth: the refused chunks and 30 more written, then a flush
    let last = (refused + 30).min(ORIGIN_CHUNKS);
    let mut after = base_origin.clone();
    for n in refused..last {
        after[(n * CS) as usize..((n + 1) * CS) as usize].fill(0x5A);
    }
    let new = sector_hashes(&after);
    let (mut at_old, mut at_new) = (0, 0);
    let cuts = at_every_power_cut(
        &base_origin,
        &base_store,
        &opts,
        |_, d| d.extend(GROWN_CHUNKS * CS),
        |s, cut| {
            s.grow_store(cut.is_multiple_of(2))?;
            for n in refused..last {
                s.write(Dev::Origin(0), n * CS, &chunk(0x5A))?;
            }
            s.flush().map(drop)
        },
        |mut s, what| {
            let len = s.store_len();
            assert!(
                len == STORE_CHUNKS * CS || len == GROWN_CHUNKS * CS,
                "{what}: store length {len}"
            );
            if len == STORE_CHUNKS * CS {
                at_old += 1;
            } else {
                at_new += 1;
            }
            let rep = s.check().unwrap();
            assert!(rep.errors.is_empty(), "{what}: {:?}", rep.errors);
            let sid = snap(&s);
            assert_eq!(read_all(&mut s, sid), before, "{what}: snapshot");
            let got = sector_hashes(&read_all(&mut s, Dev::Origin(0)));
            for (i, h) in got.iter().enumerate() {
                assert!(
                    *h == old[i] || *h == new[i],
                    "{what}: origin sector {i} reads neither its old nor its new data"
                );
            }
            // the growth, redone if it was lost, then the writes go through
            if len == STORE_CHUNKS * CS {
                s.grow_store(true)
                    .unwrap_or_else(|e| panic!("{what}: grow again: {e}"));
            }
            for n in refused..last {
                s.write(Dev::Origin(0), n * CS, &chunk(0x5A)).unwrap();
            }
            s.flush().unwrap();
            assert!(s.check().unwrap().is_clean(), "{what}");
            assert_eq!(read_all(&mut s, sid), before);
        },
    );
    assert!(
        cuts > 10,
        "the growth and its writes made only {cuts} store writes"
    );
    assert!(
        at_old > 0 && at_new > 0,
        "crashes landed at the old length {at_old} times, at the new {at_new}"
    );
    eprintln!("{cuts} power-cut points, 4 crash modes each: {at_old} at the old length, {at_new} at the new");
}
