//! A store with several origins (a pool): each origin's devices read as a plain
//! model of their contents says, through writes, snapshots, snapshot writes,
//! deletes, merges, background passes and reopen; names per origin; removal.
use super::{Dev, OriginId, OriginRemoved, Store, StoreOptions};
use crate::Error;
use blockdev::{ids::SnapId, BlockDevice, MemDevice};
use proptest::prelude::*;
use std::{collections::BTreeMap, sync::Arc};

pub(super) const CS: u64 = 4096;

pub(super) struct Pool {
    pub(super) s: Store,
    devs: Vec<Arc<MemDevice>>,
    store_dev: Arc<MemDevice>,
}

/// A store of origin 0 (`sizes[0]` chunks) with origins 1.. added (`sizes[k]`).
pub(super) fn pool(sizes: &[u64]) -> Pool {
    let devs: Vec<Arc<MemDevice>> = sizes
        .iter()
        .map(|n| Arc::new(MemDevice::new(n * CS)))
        .collect();
    let store_dev = Arc::new(MemDevice::new(4096 * CS));
    let mut s = Store::format(
        devs[0].clone(),
        store_dev.clone(),
        CS as u32,
        StoreOptions::default(),
    )
    .unwrap();
    for (k, d) in devs.iter().enumerate().skip(1) {
        let got = s
            .add_origin(&format!("o{k}"), d.clone(), &format!("/dev/o{k}"), 7)
            .unwrap();
        assert_eq!(got, k as OriginId);
    }
    Pool { s, devs, store_dev }
}

impl Pool {
    /// Close and open again, attaching every origin but 0.
    pub(super) fn reopen(self) -> Pool {
        let Pool {
            mut s,
            devs,
            store_dev,
        } = self;
        s.commit().unwrap();
        drop(s);
        let mut s =
            Store::open(devs[0].clone(), store_dev.clone(), StoreOptions::default()).unwrap();
        for (k, d) in devs.iter().enumerate().skip(1) {
            if s.origin_size(k as OriginId).is_ok() {
                s.attach_origin(k as OriginId, d.clone()).unwrap();
            }
        }
        Pool { s, devs, store_dev }
    }
}

pub(super) fn fill(s: &mut Store, dev: Dev, chunk: u64, v: u8) {
    s.write(dev, chunk * CS, &[v; CS as usize]).unwrap();
}

pub(super) fn byte(s: &mut Store, dev: Dev, chunk: u64) -> u8 {
    let mut b = [0u8; CS as usize];
    s.read(dev, chunk * CS, &mut b).unwrap();
    assert!(b.iter().all(|x| *x == b[0]), "a chunk reads one value");
    b[0]
}

pub(super) fn clean(s: &mut Store) {
    let rep = s.check().unwrap();
    assert!(rep.errors.is_empty(), "check: {:?}", rep.errors);
    assert!(rep.warnings.is_empty(), "check: {:?}", rep.warnings);
}

#[test]
fn origins_keep_their_own_data_and_snapshots() {
    let mut p = pool(&[16, 8, 32]);
    for k in 0..3 {
        fill(&mut p.s, Dev::Origin(k), 3, 10 + k as u8);
    }
    let snaps: Vec<SnapId> = (0..3)
        .map(|k| p.s.create_origin_snapshot(k, "daily", 1).unwrap())
        .collect();
    for k in 0..3 {
        fill(&mut p.s, Dev::Origin(k), 3, 20 + k as u8);
    }
    // a snapshot write of origin 1's snapshot, and a snapshot of a snapshot
    fill(&mut p.s, Dev::Snap(snaps[1]), 5, 99);
    let child = p.s.create_snapshot("child", Some(snaps[1]), 2).unwrap();
    assert_eq!(p.s.origin_of(Dev::Snap(child)).unwrap(), 1);
    let mut p = p.reopen();
    for k in 0..3u32 {
        assert_eq!(byte(&mut p.s, Dev::Origin(k), 3), 20 + k as u8);
        assert_eq!(
            byte(&mut p.s, Dev::Snap(snaps[k as usize]), 3),
            10 + k as u8
        );
    }
    assert_eq!(byte(&mut p.s, Dev::Snap(snaps[1]), 5), 99);
    assert_eq!(byte(&mut p.s, Dev::Snap(child), 5), 99);
    assert_eq!(byte(&mut p.s, Dev::Origin(1), 5), 0);
    // the devices hold their own bytes: origin 2's write did not land on origin 0
    let mut b = [0u8; 1];
    p.devs[0].read_at(&mut b, 3 * CS).unwrap();
    assert_eq!(b[0], 20);
    p.devs[2].read_at(&mut b, 3 * CS).unwrap();
    assert_eq!(b[0], 22);
    assert_eq!(p.s.dev_size(Dev::Origin(1)).unwrap(), 8 * CS);
    assert!(p.s.write(Dev::Origin(1), 8 * CS, &[1; 512]).is_err());
    // a diff compares versions of one origin only
    assert!(matches!(
        p.s.diff(Dev::Snap(snaps[0]), Dev::Snap(snaps[1]), 0, CS),
        Err(Error::Invalid(_))
    ));
    assert_eq!(
        p.s.diff(Dev::Snap(snaps[2]), Dev::Origin(2), 0, 32 * CS)
            .unwrap(),
        vec![(3 * CS, CS)]
    );
    clean(&mut p.s);
}

#[test]
fn names_are_per_origin() {
    let mut p = pool(&[8, 8]);
    let a = p.s.create_origin_snapshot(0, "n", 1).unwrap();
    let b = p.s.create_origin_snapshot(1, "n", 1).unwrap();
    assert!(matches!(
        p.s.create_origin_snapshot(1, "n", 1),
        Err(Error::NameTaken(_))
    ));
    assert_eq!(p.s.lookup("origin@n"), Some(a));
    assert_eq!(p.s.lookup("o1@n"), Some(b));
    // a bare name two origins have names neither
    assert_eq!(p.s.lookup("n"), None);
    let only = p.s.create_origin_snapshot(1, "only", 1).unwrap();
    assert_eq!(p.s.lookup("only"), Some(only));
    assert!(matches!(
        p.s.add_origin("x@y", Arc::new(MemDevice::new(CS)), "", 0),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        p.s.add_origin("o1", Arc::new(MemDevice::new(CS)), "", 0),
        Err(Error::NameTaken(_))
    ));
    assert!(matches!(
        p.s.add_origin("odd", Arc::new(MemDevice::new(1000)), "", 0),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn a_store_of_one_origin_keeps_bare_names() {
    let mut p = pool(&[8]);
    let a = p.s.create_snapshot("x@y", None, 1).unwrap();
    assert_eq!(p.s.lookup("x@y"), Some(a));
}

#[test]
fn an_origin_is_removed_with_its_snapshots_and_its_id_given_again() {
    let mut p = pool(&[8, 8]);
    fill(&mut p.s, Dev::Origin(1), 1, 5);
    let s1 = p.s.create_origin_snapshot(1, "s", 1).unwrap();
    fill(&mut p.s, Dev::Origin(1), 1, 6);
    fill(&mut p.s, Dev::Origin(0), 1, 7);
    let s0 = p.s.create_origin_snapshot(0, "s", 1).unwrap();
    assert!(matches!(p.s.remove_origin(1, false), Err(Error::Busy(_))));
    assert!(matches!(p.s.remove_origin(0, true), Err(Error::Invalid(_))));
    p.s.set_in_use(s1, true);
    assert!(matches!(p.s.remove_origin(1, true), Err(Error::Busy(_))));
    p.s.set_in_use(s1, false);
    let r = p.s.remove_origin(1, true).unwrap();
    assert!(matches!(r, OriginRemoved::Removing(_)), "{r:?}");
    assert!(matches!(
        p.s.create_origin_snapshot(1, "t", 1),
        Err(Error::Busy(_))
    ));
    p.s.run_background(64).unwrap();
    assert!(p.s.origin_size(1).is_err(), "removed once its passes ran");
    assert!(p.s.lookup_in(1, "s").is_none());
    assert_eq!(p.s.lookup("s"), Some(s0));
    clean(&mut p.s);
    let mut p = p.reopen();
    assert!(p.s.origin_size(1).is_err());
    clean(&mut p.s);
    // the id is free again, for a new device
    let d = Arc::new(MemDevice::new(4 * CS));
    assert_eq!(p.s.add_origin("again", d, "", 1).unwrap(), 1);
    assert_eq!(byte(&mut p.s, Dev::Origin(1), 1), 0);
    let t = p.s.create_origin_snapshot(1, "t", 1).unwrap();
    assert_eq!(byte(&mut p.s, Dev::Snap(t), 1), 0);
    clean(&mut p.s);
    // one without snapshots goes at once
    assert!(matches!(
        p.s.remove_origin(p.s.origin_by_name("again").unwrap(), true),
        Ok(OriginRemoved::Removing(_))
    ));
    p.s.run_background(64).unwrap();
    let d = Arc::new(MemDevice::new(4 * CS));
    let k = p.s.add_origin("bare", d, "", 1).unwrap();
    assert!(matches!(
        p.s.remove_origin(k, false),
        Ok(OriginRemoved::Removed(_))
    ));
    clean(&mut p.s);
}

#[test]
fn an_origin_without_its_device_is_reported_and_the_others_served() {
    let mut p = pool(&[8, 8]);
    fill(&mut p.s, Dev::Origin(1), 2, 3);
    let s1 = p.s.create_origin_snapshot(1, "s", 1).unwrap();
    fill(&mut p.s, Dev::Origin(1), 2, 4);
    p.s.commit().unwrap();
    let Pool {
        s, devs, store_dev, ..
    } = p;
    drop(s);
    let mut s = Store::open(devs[0].clone(), store_dev, StoreOptions::default()).unwrap();
    assert!(!s.origin_attached(1));
    let mut b = [0u8; 512];
    assert!(matches!(
        s.read(Dev::Origin(1), 0, &mut b),
        Err(Error::OriginMissing(_))
    ));
    assert!(matches!(
        s.write(Dev::Origin(1), 0, &b),
        Err(Error::OriginMissing(_))
    ));
    // what the snapshot holds in the store still reads; what it reads from the
    // origin does not
    assert_eq!(byte(&mut s, Dev::Snap(s1), 2), 3);
    assert!(matches!(
        s.read(Dev::Snap(s1), 0, &mut b),
        Err(Error::OriginMissing(_))
    ));
    assert!(matches!(s.merge_snapshot(s1), Err(Error::OriginMissing(_))));
    // origin 0 is served, the store stays writable
    fill(&mut s, Dev::Origin(0), 0, 9);
    assert!(!s.is_failed());
    // a device smaller than the origin is refused
    assert!(matches!(
        s.attach_origin(1, Arc::new(MemDevice::new(4 * CS))),
        Err(Error::Mismatch { .. })
    ));
    s.attach_origin(1, devs[1].clone()).unwrap();
    assert_eq!(byte(&mut s, Dev::Origin(1), 2), 4);
}

#[test]
fn a_merge_rolls_back_its_own_origin_only() {
    let mut p = pool(&[8, 8]);
    for k in 0..2 {
        for c in 0..8 {
            fill(&mut p.s, Dev::Origin(k), c, 1 + c as u8);
        }
    }
    let a = p.s.create_origin_snapshot(0, "m", 1).unwrap();
    let b = p.s.create_origin_snapshot(1, "m", 1).unwrap();
    for k in 0..2 {
        for c in 0..8 {
            fill(&mut p.s, Dev::Origin(k), c, 50 + c as u8);
        }
    }
    p.s.merge_snapshot(b).unwrap();
    // half the merge done, then a write to origin 0 while it runs
    p.s.background_step(1).unwrap();
    fill(&mut p.s, Dev::Origin(0), 7, 77);
    p.s.run_background(64).unwrap();
    for c in 0..8 {
        assert_eq!(
            byte(&mut p.s, Dev::Origin(1), c),
            1 + c as u8,
            "origin 1 rolled back"
        );
        let want0 = if c == 7 { 77 } else { 50 + c as u8 };
        assert_eq!(
            byte(&mut p.s, Dev::Origin(0), c),
            want0,
            "origin 0 untouched"
        );
        assert_eq!(byte(&mut p.s, Dev::Snap(a), c), 1 + c as u8);
    }
    clean(&mut p.s);
}

#[test]
fn an_origin_grows_on_its_own() {
    let mut p = pool(&[8, 8]);
    let s1 = p.s.create_origin_snapshot(1, "s", 1).unwrap();
    p.devs[1].extend(16 * CS);
    p.s.grow_origin(1, 16 * CS).unwrap();
    assert_eq!(p.s.origin_size(1).unwrap(), 16 * CS);
    assert_eq!(p.s.origin_size(0).unwrap(), 8 * CS);
    fill(&mut p.s, Dev::Origin(1), 12, 4);
    assert_eq!(p.s.dev_size(Dev::Snap(s1)).unwrap(), 8 * CS);
    let mut p = p.reopen();
    assert_eq!(byte(&mut p.s, Dev::Origin(1), 12), 4);
    clean(&mut p.s);
}

#[derive(Debug, Clone)]
enum Op {
    /// Write chunk `c` of origin `k` (of the origins, by index).
    WriteOrigin(u32, u64, u8),
    /// Snapshot origin `k`.
    Snap(u32),
    /// A group snapshot of the origins whose bits are set in the mask.
    Group(u8),
    /// Write chunk `c` of the n-th live snapshot.
    WriteSnap(usize, u64, u8),
    /// Delete the n-th live snapshot.
    Delete(usize),
    /// Run background steps.
    Background(usize),
    /// Merge the n-th live snapshot.
    Merge(usize),
    /// Commit, close, open.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..3, 0u64..6, 1u8..255).prop_map(|(k, c, v)| Op::WriteOrigin(k, c, v)),
        2 => (0u32..3).prop_map(Op::Snap),
        1 => (0u8..8).prop_map(Op::Group),
        2 => (0usize..8, 0u64..6, 1u8..255).prop_map(|(n, c, v)| Op::WriteSnap(n, c, v)),
        1 => (0usize..8).prop_map(Op::Delete),
        1 => (1usize..20).prop_map(Op::Background),
        1 => (0usize..8).prop_map(Op::Merge),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every device of three origins reads what a plain model of its chunks says.
    #[test]
    fn three_origins_match_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut p = pool(&[6, 6, 6]);
        let mut model: BTreeMap<Dev, Vec<u8>> =
            (0..3).map(|k| (Dev::Origin(k), vec![0u8; 6])).collect();
        let mut n = 0;
        for op in ops {
            let live: Vec<SnapId> = model
                .keys()
                .filter_map(|d| match d {
                    Dev::Snap(id) => Some(*id),
                    _ => None,
                })
                .collect();
            match op {
                Op::WriteOrigin(k, c, v) => {
                    fill(&mut p.s, Dev::Origin(k), c, v);
                    model.get_mut(&Dev::Origin(k)).unwrap()[c as usize] = v;
                }
                Op::Snap(k) => {
                    n += 1;
                    let id = p.s.create_origin_snapshot(k, &format!("s{n}"), n).unwrap();
                    let m = model[&Dev::Origin(k)].clone();
                    model.insert(Dev::Snap(id), m);
                }
                Op::Group(mask) => {
                    let ks: Vec<u32> = (0..3).filter(|k| mask & (1 << k) != 0).collect();
                    n += 1;
                    match p.s.create_group(&format!("g{n}"), &ks, n) {
                        Ok(g) => {
                            prop_assert_eq!(g.members.len(), ks.len());
                            for (k, id) in g.members {
                                let m = model[&Dev::Origin(k)].clone();
                                model.insert(Dev::Snap(id), m);
                            }
                        }
                        // fewer than two origins: refused, nothing created
                        Err(Error::Invalid(_)) if ks.len() < 2 => {}
                        Err(e) => prop_assert!(false, "group {:?}: {}", ks, e),
                    }
                }
                Op::WriteSnap(i, c, v) if !live.is_empty() => {
                    let id = live[i % live.len()];
                    fill(&mut p.s, Dev::Snap(id), c, v);
                    model.get_mut(&Dev::Snap(id)).unwrap()[c as usize] = v;
                }
                Op::Delete(i) if !live.is_empty() => {
                    let id = live[i % live.len()];
                    p.s.delete_snapshot(id).unwrap();
                    model.remove(&Dev::Snap(id));
                }
                Op::Merge(i) if !live.is_empty() => {
                    // merges of different origins run side by side; a second into
                    // one origin is refused, changing nothing
                    let id = live[i % live.len()];
                    let k = p.s.origin_of(Dev::Snap(id)).unwrap();
                    match p.s.merge_snapshot(id) {
                        Ok(_) => {
                            let m = model.remove(&Dev::Snap(id)).unwrap();
                            model.insert(Dev::Origin(k), m);
                        }
                        Err(Error::Busy(_)) => prop_assert!(p.s.merge_job_of(k).is_some()),
                        Err(e) => prop_assert!(false, "merge: {}", e),
                    }
                }
                Op::Background(b) => {
                    p.s.background_step(b).unwrap();
                    p.s.commit().unwrap();
                }
                Op::Reopen => p = p.reopen(),
                _ => {}
            }
            for (dev, want) in &model {
                for (c, v) in want.iter().enumerate() {
                    prop_assert_eq!(byte(&mut p.s, *dev, c as u64), *v, "{:?} chunk {}", dev, c);
                }
            }
        }
        p.s.run_background(64).unwrap();
        let rep = p.s.check().unwrap();
        prop_assert!(rep.errors.is_empty(), "check: {:?}", rep.errors);
    }
}

#[test]
fn a_group_is_one_commit_of_every_member() {
    let mut p = pool(&[8, 8, 8]);
    for k in 0..3 {
        fill(&mut p.s, Dev::Origin(k), 2, 10 + k as u8);
    }
    let t0 = p.s.txn_id().0;
    let g = p.s.create_group("g", &[2, 0, 1], 5).unwrap();
    assert_eq!(p.s.txn_id().0, t0 + 1, "one commit");
    assert_eq!(g.members.len(), 3);
    assert_eq!(
        g.members.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    for k in 0..3 {
        fill(&mut p.s, Dev::Origin(k), 2, 20 + k as u8);
    }
    for &(k, id) in &g.members {
        assert_eq!(byte(&mut p.s, Dev::Snap(id), 2), 10 + k as u8);
        assert_eq!(p.s.lookup_in(k, "g"), Some(id));
    }
    let mut p = p.reopen();
    let again = p.s.group("g").unwrap();
    assert_eq!((again.id, again.members.clone()), (g.id, g.members.clone()));
    // refused as a whole: one origin twice, one origin, a name taken in one origin
    assert!(matches!(
        p.s.create_group("h", &[0, 0, 1], 5),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        p.s.create_group("h", &[1], 5),
        Err(Error::Invalid(_))
    ));
    p.s.create_origin_snapshot(2, "h", 5).unwrap();
    let n = p.s.snapshots().len();
    assert!(matches!(
        p.s.create_group("h", &[0, 1, 2], 5),
        Err(Error::NameTaken(_))
    ));
    assert_eq!(p.s.snapshots().len(), n, "nothing created");
    assert!(!p.s.is_failed());
    // a second group gets its own id; group() names the newest of a name
    let g2 = p.s.create_group("g2", &[0, 1], 6).unwrap();
    assert!(g2.id > g.id);
    clean(&mut p.s);
}

/// A store device that fails its n-th write or flush during a group create leaves
/// after a crash (every unflushed write lost, or kept) every member or none.
#[test]
fn a_crash_during_a_group_create_leaves_all_members_or_none() {
    use blockdev::{CrashMode, FaultyDevice};
    for n in 0..12u64 {
        for mode in [
            CrashMode::DropAll,
            CrashMode::KeepAll,
            CrashMode::RandomWrites,
        ] {
            let devs: Vec<Arc<MemDevice>> =
                (0..3).map(|_| Arc::new(MemDevice::new(8 * CS))).collect();
            let store_dev = Arc::new(FaultyDevice::new(4096 * CS));
            let mut s = Store::format(
                devs[0].clone(),
                store_dev.clone(),
                CS as u32,
                StoreOptions::default(),
            )
            .unwrap();
            for (k, d) in devs.iter().enumerate().skip(1) {
                s.add_origin(&format!("o{k}"), d.clone(), "", 1).unwrap();
            }
            for k in 0..3 {
                fill(&mut s, Dev::Origin(k), 1, 1);
            }
            s.commit().unwrap();
            {
                let plan = store_dev.plan();
                let mut plan = plan.lock();
                if n % 2 == 0 {
                    plan.fail_write_in = Some(n / 2);
                } else {
                    plan.fail_flush_in = Some(n / 2);
                }
            }
            let made = s.create_group("g", &[0, 1, 2], 1).is_ok();
            drop(s);
            let after = Arc::new(store_dev.crash(mode, n));
            let mut s = Store::open(devs[0].clone(), after, StoreOptions::default()).unwrap();
            let members = s.snapshots().iter().filter(|i| i.name == "g").count();
            assert!(
                members == 0 || members == 3,
                "n {n} {mode:?}: {members} members"
            );
            if made {
                assert_eq!(
                    members, 3,
                    "n {n} {mode:?}: a create that returned Ok is durable"
                );
            }
            let rep = s.check().unwrap();
            assert!(rep.errors.is_empty(), "n {n} {mode:?}: {:?}", rep.errors);
        }
    }
}

/// A snapshot, merge or growth of one origin starts a new copy epoch of that origin
/// only: the others' settled chunks stay settled (`shared::settled`).
#[test]
fn copy_epochs_are_per_origin() {
    let mut p = pool(&[8, 8, 8]);
    let e: Vec<_> = (0..3).map(|k| p.s.copy_epoch(k)).collect();
    let now = |e: &[Arc<std::sync::atomic::AtomicU64>]| -> Vec<u64> {
        e.iter()
            .map(|x| x.load(std::sync::atomic::Ordering::SeqCst))
            .collect()
    };
    let before = now(&e);
    let s0 = p.s.create_origin_snapshot(0, "a", 1).unwrap();
    assert_eq!(now(&e), vec![before[0] + 1, before[1], before[2]]);
    p.s.create_group("g", &[0, 2], 1).unwrap();
    assert_eq!(now(&e), vec![before[0] + 2, before[1], before[2] + 1]);
    p.s.merge_snapshot(s0).unwrap();
    assert_eq!(now(&e), vec![before[0] + 3, before[1], before[2] + 1]);
    p.s.run_background(64).unwrap();
    p.devs[1].extend(16 * CS);
    p.s.grow_origin(1, 16 * CS).unwrap();
    assert_eq!(now(&e), vec![before[0] + 3, before[1] + 1, before[2] + 1]);
}

/// A group's members merged together: every origin reads its member at once, the
/// merges survive a reopen half done and finish, one merge per origin at a time.
#[test]
fn a_group_merges_back_together_across_a_reopen() {
    let mut p = pool(&[8, 8, 8]);
    for k in 0..3 {
        for c in 0..8 {
            fill(&mut p.s, Dev::Origin(k), c, 1 + c as u8 + 10 * k as u8);
        }
    }
    let g = p.s.create_group("g", &[0, 1], 1).unwrap();
    let other = p.s.create_origin_snapshot(2, "o", 1).unwrap();
    for k in 0..3 {
        for c in 0..8 {
            fill(&mut p.s, Dev::Origin(k), c, 100 + c as u8);
        }
    }
    let ids: Vec<SnapId> = g.members.iter().map(|(_, id)| *id).collect();
    // two snapshots of one origin cannot merge together
    let extra = p.s.create_origin_snapshot(0, "x", 2).unwrap();
    assert!(matches!(
        p.s.merge_snapshots(&[ids[0], extra]),
        Err(Error::Busy(_))
    ));
    let t0 = p.s.txn_id().0;
    p.s.merge_snapshots(&ids).unwrap();
    assert_eq!(p.s.txn_id().0, t0 + 1, "one commit for the group");
    let want = |k: u32, c: u64| 1 + c as u8 + 10 * k as u8;
    for k in 0..2 {
        for c in 0..8 {
            assert_eq!(byte(&mut p.s, Dev::Origin(k), c), want(k, c), "at once");
        }
    }
    // one origin is being merged into: another merge into it waits
    assert!(matches!(p.s.merge_snapshot(extra), Err(Error::Busy(_))));
    // a merge of another origin may run beside them
    p.s.merge_snapshot(other).unwrap();
    p.s.background_step(1).unwrap();
    let mut p = p.reopen();
    assert!(p.s.is_merging());
    for k in 0..3 {
        for c in 0..8 {
            assert_eq!(
                byte(&mut p.s, Dev::Origin(k), c),
                want(k, c),
                "after reopen"
            );
        }
    }
    p.s.run_background(64).unwrap();
    assert!(!p.s.is_merging());
    for k in 0..3 {
        for c in 0..8 {
            assert_eq!(byte(&mut p.s, Dev::Origin(k), c), want(k, c), "merged");
        }
    }
    assert_eq!(byte(&mut p.s, Dev::Snap(extra), 3), 103);
    clean(&mut p.s);
}
