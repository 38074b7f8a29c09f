//! A full store is an answer, never a failure (issue 20). On a store filled to its
//! metadata reserve, with small chunks so that the reserve is hundreds of chunks:
//! - a space check that refuses an operation before it changed anything leaves the
//!   store writable (`is_failed` stays false), whatever the kind of space it lacked;
//! - overwriting a chunk a snapshot already owns needs no space;
//! - deleting a snapshot always frees space: its pass commits before it would eat
//!   into the reserve, even when it is run with no commit between its steps;
//! - `DeleteOldest` makes room by deleting a big snapshot without latching.
//!
//! Every test ends with the store reopened and `check` clean, and the data of every
//! live device equal to the reference model.
mod common;

use blockdev::FaultyDevice;
use common::*;
use exception_store::{Dev, Error, SpacePolicy, Store, StoreOptions};
use std::sync::Arc;

const CS: u64 = 4096;
const ORIGIN_CHUNKS: u64 = 2048;

struct Full {
    origin: Arc<FaultyDevice>,
    dev: Arc<FaultyDevice>,
    s: Store,
    model: Model,
}

fn store(policy: SpacePolicy, store_chunks: u64) -> Full {
    let origin = Arc::new(FaultyDevice::from_vec(pattern(
        1,
        (ORIGIN_CHUNKS * CS) as usize,
    )));
    let dev = Arc::new(FaultyDevice::new(store_chunks * CS));
    let opts = StoreOptions {
        cache_bytes: 1 << 20,
        space_policy: policy,
        min_free_chunks: 0,
    };
    let mut s = Store::format(origin.clone(), dev.clone(), CS as u32, opts).unwrap();
    let model = Model::new(read_all(&mut s, Dev::Origin(0)));
    Full {
        origin,
        dev,
        s,
        model,
    }
}

impl Full {
    fn write(&mut self, d: Dev, off: u64, data: &[u8]) -> exception_store::Result<()> {
        self.s.write(d, off, data)?;
        self.model.write(d, off, data);
        Ok(())
    }

    /// Reopen, check, compare every live device with the model.
    fn verify(self) {
        let Full {
            origin,
            dev,
            mut s,
            model,
        } = self;
        s.flush().unwrap();
        drop(s);
        let mut s = Store::open(origin, dev, StoreOptions::default()).unwrap();
        let report = s.check().unwrap();
        assert!(report.is_clean(), "{report:?}");
        for (d, want) in &model.devs {
            assert!(
                read_all(&mut s, *d) == *want,
                "{d:?} differs from the model"
            );
        }
    }
}

fn fill(v: u8, chunks: u64) -> Vec<u8> {
    vec![v; (chunks * CS) as usize]
}

/// Origin writes of `per` chunks from chunk `from` until one is refused; returns the
/// chunk where it stopped and the error.
fn write_until_full(f: &mut Full, from: u64, per: u64, v: u8) -> (u64, Error) {
    let mut a = from;
    loop {
        assert!(a + per <= ORIGIN_CHUNKS, "the store never filled");
        match f.write(Dev::Origin(0), a * CS, &fill(v, per)) {
            Ok(()) => a += per,
            Err(e) => return (a, e),
        }
    }
}

/// Origin writes spanning many chunks at the full mark are refused, and the refusal
/// leaves the store writable: deleting the snapshot then gives the space back.
#[test]
fn a_refused_origin_write_of_many_chunks_does_not_latch() {
    let mut f = store(SpacePolicy::Fail, 700);
    let snap = f.s.create_snapshot("s", None, 1).unwrap();
    f.model
        .devs
        .insert(Dev::Snap(snap), f.model.devs[&Dev::Origin(0)].clone());
    let (at, err) = write_until_full(&mut f, 0, 16, 0xA1);
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert!(!f.s.is_failed(), "a refusal latched the store: {err}");
    // single chunks from there until those are refused too, still no latch
    let (_, err) = write_until_full(&mut f, at, 1, 0xA2);
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert!(!f.s.is_failed(), "a refusal latched the store: {err}");
    // and a snapshot of a full store is refused or taken, never a latch
    if let Err(e) = f.s.create_snapshot("late", None, 2) {
        assert!(matches!(e, Error::NoSpace(_)), "{e}");
    }
    assert!(!f.s.is_failed());
    if let Some(late) = f.s.lookup("late") {
        f.s.delete_snapshot(late).unwrap();
    }
    f.s.delete_snapshot(snap).unwrap();
    f.model.devs.remove(&Dev::Snap(snap));
    f.s.run_background(64).unwrap();
    f.write(Dev::Origin(0), at * CS, &fill(0xA3, 16)).unwrap();
    f.verify();
}

/// Below the reserve a snapshot write that needs a new chunk is refused without a
/// latch; overwriting a chunk the snapshot already owns needs no space and succeeds.
#[test]
fn a_full_store_refuses_new_snapshot_chunks_and_takes_overwrites_of_owned_ones() {
    let mut f = store(SpacePolicy::Fail, 700);
    let snap = f.s.create_snapshot("w", None, 1).unwrap();
    f.model
        .devs
        .insert(Dev::Snap(snap), f.model.devs[&Dev::Origin(0)].clone());
    // the snapshot owns chunks 0..4 (written once, committed)
    f.write(Dev::Snap(snap), 0, &fill(0xB1, 4)).unwrap();
    f.s.commit().unwrap();
    let (_, err) = write_until_full(&mut f, 8, 1, 0xB2);
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert!(!f.s.is_failed());
    // snapshots of a full store take metadata from the reserve
    for i in 0..4 {
        match f.s.create_snapshot(&format!("more{i}"), None, 2 + i) {
            Ok(id) => {
                let d = f.model.devs[&Dev::Origin(0)].clone();
                f.model.devs.insert(Dev::Snap(id), d);
            }
            Err(e) => assert!(matches!(e, Error::NoSpace(_)), "{e}"),
        }
        assert!(!f.s.is_failed());
    }
    // a new chunk for the snapshot: refused, no latch
    let err = f
        .write(Dev::Snap(snap), (ORIGIN_CHUNKS - 1) * CS, &fill(0xB3, 1))
        .unwrap_err();
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert!(
        !f.s.is_failed(),
        "a refused snapshot write latched the store"
    );
    // its own chunks: overwritten in place, whole or in part
    f.write(Dev::Snap(snap), 0, &fill(0xB4, 2)).unwrap();
    f.write(Dev::Snap(snap), 2 * CS + 100, &[0xB5; 300])
        .unwrap();
    f.s.commit().unwrap();
    f.verify();
}

/// Deleting a big snapshot on a full store frees its space even when the pass runs
/// with no commit between its steps: the pass commits before it would allocate into
/// the reserve.
#[test]
fn deleting_a_snapshot_on_a_full_store_frees_space_in_one_long_run() {
    let mut f = store(SpacePolicy::Fail, 1200);
    let mut snaps = Vec::new();
    // the oldest snapshot owns 600 chunks alone; then many small ones, and writes
    // until the store is full
    let big = f.s.create_snapshot("big", None, 0).unwrap();
    f.write(Dev::Origin(0), 0, &fill(0xC0, 600)).unwrap();
    for i in 0..24u64 {
        let id = f.s.create_snapshot(&format!("s{i}"), None, 1 + i).unwrap();
        snaps.push(id);
        f.write(Dev::Origin(0), i * 4 * CS, &fill(i as u8, 4))
            .unwrap();
    }
    let (_, err) = write_until_full(&mut f, 600, 1, 0xC1);
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert!(!f.s.is_failed());
    let free_before = f.s.status().nr_free;
    f.s.delete_snapshot(big).unwrap();
    // one long run: every step without a commit of the caller's
    while f.s.background_step(usize::MAX >> 1).unwrap() {}
    f.s.commit().unwrap();
    assert!(!f.s.is_failed());
    assert!(
        f.s.status().nr_free > free_before + 100,
        "the delete freed too little: {} -> {}",
        free_before,
        f.s.status().nr_free
    );
    for id in snaps {
        f.model.devs.remove(&Dev::Snap(id));
    }
    f.verify();
}

/// `DeleteOldest` whose victim is a big snapshot: the writes go on, the store never
/// latches, and what is left reads right.
#[test]
fn delete_oldest_with_a_big_victim_keeps_the_store_writable() {
    let mut f = store(SpacePolicy::DeleteOldest, 900);
    let old = f.s.create_snapshot("old", None, 1).unwrap();
    // the old snapshot gets most of the store
    for a in (0..ORIGIN_CHUNKS).step_by(8) {
        if f.write(Dev::Origin(0), a * CS, &fill(0xD1, 8)).is_err() {
            break;
        }
    }
    let _ = old;
    let young = f.s.create_snapshot("young", None, 2).unwrap();
    let young_data = read_all(&mut f.s, Dev::Snap(young));
    // rewrite everything: the policy must delete `old`, then keep going
    for round in 0..2u8 {
        for a in (0..ORIGIN_CHUNKS).step_by(8) {
            match f.write(Dev::Origin(0), a * CS, &fill(0xD2 + round, 8)) {
                Ok(()) => {}
                Err(e) => {
                    assert!(matches!(e, Error::NoSpace(_)), "{e}");
                    assert!(!f.s.is_failed(), "the space policy latched the store: {e}");
                    break;
                }
            }
        }
    }
    assert!(!f.s.is_failed());
    assert!(
        f.s.lookup("old").is_none(),
        "the oldest snapshot was not deleted"
    );
    if f.s.lookup("young").is_some() {
        assert!(read_all(&mut f.s, Dev::Snap(young)) == young_data);
        f.model.devs.insert(Dev::Snap(young), young_data);
    }
    f.verify();
}

/// Snapshot writes in one transaction at the full mark: the first takes the last
/// chunk above the reserve and metadata from it; the ones after it are refused
/// (metadata space) and must not latch the store.
#[test]
fn snapshot_writes_in_one_transaction_at_the_full_mark_do_not_latch() {
    let mut f = store(SpacePolicy::Fail, 700);
    let small = f.s.create_snapshot("small", None, 1).unwrap();
    f.write(Dev::Origin(0), 0, &fill(0xE0, 8)).unwrap(); // `small` owns 8 chunks
    let snap = f.s.create_snapshot("w", None, 2).unwrap();
    f.model
        .devs
        .insert(Dev::Snap(snap), f.model.devs[&Dev::Origin(0)].clone());
    let (_, err) = write_until_full(&mut f, 16, 1, 0xE1);
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    // a little space comes back
    f.s.delete_snapshot(small).unwrap();
    f.s.run_background(64).unwrap();
    // scattered snapshot writes, no commit between them
    let mut refused = 0;
    for i in 0..64u64 {
        let a = (ORIGIN_CHUNKS - 1 - i * 29) % ORIGIN_CHUNKS;
        match f.write(Dev::Snap(snap), a * CS, &fill(0xE2, 1)) {
            Ok(()) => {}
            Err(e) => {
                assert!(matches!(e, Error::NoSpace(_)), "{e}");
                assert!(
                    !f.s.is_failed(),
                    "a refused snapshot write latched the store: {e}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the store never filled");
    f.s.commit().unwrap();
    f.verify();
}
