//! A transaction that has eaten into the metadata reserve (copy-outs and snapshot
//! writes batched between two commits, or a pass whose frees only come back at the
//! commit) must still leave a full store writable: every operation is refused
//! before it changes anything, and the remedies (a delete and its pass, the
//! delete-oldest policy) commit before they would run out of metadata.
//!
//! The state is made deterministically: metadata blocks allocated and freed in the
//! open transaction, as copy-on-write node copies are, so that the free count drops
//! below the reserve until the next commit.
use super::{Dev, SpacePolicy, Store, StoreOptions};
use crate::{Error, Space};
use blockdev::{ids::SnapId, FaultyDevice};
use btree::MetaAlloc;
use std::sync::Arc;

const CS: u64 = 4096;
const ORIGIN_CHUNKS: u64 = 1024;

fn store(policy: SpacePolicy, store_chunks: u64) -> Store {
    let origin = Arc::new(FaultyDevice::from_vec(blockdev::pattern(
        1,
        (ORIGIN_CHUNKS * CS) as usize,
    )));
    let dev = Arc::new(FaultyDevice::new(store_chunks * CS));
    let opts = StoreOptions {
        cache_bytes: 1 << 20,
        space_policy: policy,
        min_free_chunks: 0,
    };
    Store::format(origin, dev, CS as u32, opts).unwrap()
}

/// Origin writes of one chunk from `from` until one is refused; the chunk refused.
fn fill(s: &mut Store, from: u64) -> u64 {
    let mut a = from;
    while s
        .write(Dev::Origin(0), a * CS, &[0xF0; CS as usize])
        .is_ok()
    {
        a += 1;
        assert!(a < ORIGIN_CHUNKS, "the store never filled");
    }
    assert!(!s.is_failed());
    a
}

/// Copy-on-write in the open transaction, as a batch of tree changes does: `n`
/// metadata blocks allocated and their old copies freed, back only at the commit.
fn eat_reserve(s: &mut Store, n: u64) {
    for _ in 0..n {
        let b = s.alloc.alloc_block().unwrap();
        s.alloc.free_block(b);
    }
    s.changed = true;
}

#[test]
fn writes_refused_below_the_reserve_leave_the_store_writable() {
    let mut s = store(SpacePolicy::Fail, 600);
    let snap = s.create_snapshot("s", None, 1).unwrap();
    s.write(Dev::Snap(snap), 0, &[0xA0; CS as usize]).unwrap();
    s.commit().unwrap();
    let at = fill(&mut s, 8);
    eat_reserve(&mut s, 40);
    // a snapshot write that needs a new chunk: refused, for lack of metadata space
    let e = s
        .write(Dev::Snap(snap), (ORIGIN_CHUNKS - 1) * CS, &[1; CS as usize])
        .unwrap_err();
    assert!(matches!(e, Error::NoSpace(Space::Metadata)), "{e}");
    assert!(!s.is_failed(), "a refused snapshot write latched the store");
    // an origin write that needs a copy-out: the same
    let e = s
        .write(Dev::Origin(0), at * CS, &[2; CS as usize])
        .unwrap_err();
    assert!(matches!(e, Error::NoSpace(_)), "{e}");
    assert!(!s.is_failed(), "a refused origin write latched the store");
    // a snapshot of a full store: refused, no latch
    let e = s.create_snapshot("t", None, 2).unwrap_err();
    assert!(matches!(e, Error::NoSpace(_)), "{e}");
    assert!(!s.is_failed());
    // the snapshot's own chunk is overwritten in place: no space needed
    s.write(Dev::Snap(snap), 0, &[0xA1; CS as usize]).unwrap();
    // the commit gives the eaten blocks back; the origin write then goes through
    s.commit().unwrap();
    s.delete_snapshot(snap).unwrap();
    s.run_background(64).unwrap();
    s.write(Dev::Origin(0), at * CS, &[3; CS as usize]).unwrap();
    assert!(s.check().unwrap().is_clean());
}

/// Deleting a snapshot after the reserve was eaten: the pass commits before its
/// first step instead of failing half-way, and the space comes back.
#[test]
fn a_delete_pass_below_the_reserve_commits_first_and_frees_space() {
    let mut s = store(SpacePolicy::Fail, 600);
    let old = s.create_snapshot("old", None, 1).unwrap();
    s.write(Dev::Origin(0), 0, &vec![0xB0; (200 * CS) as usize])
        .unwrap();
    let _young = s.create_snapshot("young", None, 2).unwrap();
    fill(&mut s, 200);
    s.delete_snapshot(old).unwrap();
    eat_reserve(&mut s, 200);
    let free = s.status().nr_free;
    while s.background_step(1 << 20).unwrap() {}
    s.commit().unwrap();
    assert!(!s.is_failed());
    assert!(
        s.status().nr_free > free + 150,
        "{} -> {}",
        free,
        s.status().nr_free
    );
    assert!(s.check().unwrap().is_clean());
}

/// A pass that cannot go on even after a commit is refused, not latched; it goes on
/// once space is freed.
#[test]
fn a_pass_with_no_room_at_all_waits_without_latching() {
    let mut s = store(SpacePolicy::Fail, 600);
    let old = s.create_snapshot("old", None, 1).unwrap();
    s.write(Dev::Origin(0), 0, &vec![0xC0; (100 * CS) as usize])
        .unwrap();
    let young = s.create_snapshot("young", None, 2).unwrap();
    fill(&mut s, 100);
    s.delete_snapshot(old).unwrap();
    // the free chunks taken by blocks that stay in use until they are freed, but for
    // room for a commit and less than a step
    let mut held = Vec::new();
    while s.alloc.meta_headroom() > 20 {
        held.push(s.alloc.alloc_block().unwrap());
    }
    let e = s.background_step(16).unwrap_err();
    assert!(matches!(e, Error::NoSpace(Space::Metadata)), "{e}");
    assert!(!s.is_failed(), "a pass without room latched the store");
    for b in held {
        s.alloc.free_block(b);
    }
    s.changed = true;
    s.commit().unwrap();
    s.run_background(64).unwrap();
    assert!(!s.is_failed());
    assert_eq!(s.lookup("young"), Some(young));
    let _: SnapId = young;
    assert!(s.check().unwrap().is_clean());
}

/// `DeleteOldest` after the reserve was eaten: the victim's pass commits as it
/// goes, and the write that needed room goes through.
#[test]
fn delete_oldest_below_the_reserve_makes_room_without_latching() {
    let mut s = store(SpacePolicy::DeleteOldest, 600);
    s.create_snapshot("old", None, 1).unwrap();
    s.write(Dev::Origin(0), 0, &vec![0xD0; (300 * CS) as usize])
        .unwrap();
    s.create_snapshot("young", None, 2).unwrap();
    let mut a = 300;
    // fill up to the point where the policy would have to act
    while s.room_for(0, 1).is_ok() {
        s.write(Dev::Origin(0), a * CS, &[0xD1; CS as usize])
            .unwrap();
        a += 1;
    }
    eat_reserve(&mut s, 60);
    s.write(Dev::Origin(0), a * CS, &[0xD2; CS as usize])
        .unwrap();
    assert!(!s.is_failed());
    assert!(s.lookup("old").is_none(), "the policy deleted nothing");
    assert!(s.lookup("young").is_some());
    s.commit().unwrap();
    assert!(s.check().unwrap().is_clean());
}

/// `DeleteOldest` whose victim holds elements over many leaves: its pass, run by
/// the policy inside one origin write, copies more nodes than the reserve holds
/// unless it commits on the way.
#[test]
fn delete_oldest_with_a_victim_over_many_leaves_keeps_the_store_writable() {
    const N: u64 = 81920;
    let origin = Arc::new(FaultyDevice::from_vec(vec![7; (N * CS) as usize]));
    let dev = Arc::new(FaultyDevice::new(45000 * CS));
    let opts = StoreOptions {
        cache_bytes: 4 << 20,
        space_policy: SpacePolicy::DeleteOldest,
        min_free_chunks: 0,
    };
    let mut s = Store::format(origin, dev, CS as u32, opts).unwrap();
    s.create_snapshot("old", None, 1).unwrap();
    // every other chunk: one element each, no extents
    let mut a = 0;
    while a < N && s.room_for(0, 1).is_ok() {
        s.write(Dev::Origin(0), a * CS, &[1; CS as usize]).unwrap();
        a += 2;
    }
    // its elements fill more leaves than the reserve has blocks (4 KiB chunks: one
    // block a chunk)
    assert!(s.status().nr_meta_chunks > 256, "{:?}", s.status());
    s.create_snapshot("young", None, 2).unwrap();
    let mut b = 1;
    while b < N {
        s.write(Dev::Origin(0), b * CS, &[2; CS as usize]).unwrap();
        assert!(!s.is_failed());
        b += 2;
        if s.lookup("old").is_none() {
            break;
        }
    }
    assert!(s.lookup("old").is_none(), "the policy deleted nothing");
    assert!(!s.is_failed());
    s.commit().unwrap();
    assert!(s.check().unwrap().is_clean());
}
