//! Repair through the real path: stores left with unfinished passes (closed early, or
//! cut by a power loss mid-pass), finished by [`repair`]; stores with errors or
//! corruption refused and left byte-identical.
use super::*;
use crate::testing::contents;
use crate::Dev;
use blockdev::{CrashMode, FaultyDevice, MemDevice};

const CS: u32 = 4096;
const NR_ADDRS: u64 = 64;

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    blockdev::pattern(seed, len)
}

/// A store with a chain of snapshots, a snapshot of a snapshot, and writes to all.
fn build(origin: Arc<dyn BlockDevice>, dev: Arc<dyn BlockDevice>) -> Store {
    let mut s = Store::format(origin, dev, CS, StoreOptions::default()).unwrap();
    let len = NR_ADDRS * CS as u64;
    s.write(Dev::Origin(0), 0, &bytes(1, len as usize)).unwrap();
    let mut seed = 10;
    let mut ids = Vec::new();
    for i in 0..4u64 {
        let from = (i == 2).then(|| ids[0]);
        let id = s.create_snapshot(&format!("s{i}"), from, i).unwrap();
        ids.push(id);
        for d in [Dev::Origin(0), Dev::Snap(id), Dev::Snap(ids[0])] {
            for k in 0..6 {
                seed += 1;
                let off = (seed * 7 + k * 13) % (NR_ADDRS - 2) * CS as u64 + 100;
                s.write(d, off, &bytes(seed, 5000)).unwrap();
            }
        }
    }
    s.flush().unwrap();
    s
}

fn mem(len: u64) -> Arc<MemDevice> {
    Arc::new(MemDevice::new(len))
}

fn origin() -> Arc<MemDevice> {
    mem(NR_ADDRS * CS as u64)
}

#[test]
fn finishes_unfinished_delete_passes() {
    for steps in [0, 3] {
        let (o, dev) = (origin(), mem(8 << 20));
        let mut s = build(o.clone(), dev.clone());
        for name in ["s1", "s2"] {
            let id = s.lookup(name).unwrap();
            s.delete_snapshot(id).unwrap();
        }
        // part of the pass done and committed: the cursor is persistent
        s.background_step(steps).unwrap();
        s.commit().unwrap();
        assert!(s.has_background_work());
        let want = contents(&mut s);
        drop(s);

        let r = repair(dev.clone(), None, RepairOptions::default()).unwrap();
        assert_eq!(r.outcome, Outcome::Repaired, "{r:?}");
        assert_eq!(r.passes.len(), 2);
        assert!(r.passes.iter().all(|p| p.kind == "delete"));
        assert!(r.is_clean(), "{r:?}");
        assert!(r.txn_after > r.txn_before);

        let mut s = Store::open(o.clone(), dev.clone(), StoreOptions::default()).unwrap();
        assert!(!s.has_background_work());
        assert!(s.check().unwrap().is_clean());
        assert_eq!(contents(&mut s), want, "steps {steps}");
        // a second repair has nothing to do and writes nothing
        drop(s);
        let img = dev.to_vec();
        let r = repair(dev.clone(), None, RepairOptions::default()).unwrap();
        assert_eq!(r.outcome, Outcome::NothingToDo);
        assert!(r.is_clean());
        assert_eq!(dev.to_vec(), img);
    }
}

#[test]
fn dry_run_writes_nothing() {
    let (o, dev) = (origin(), mem(8 << 20));
    let mut s = build(o, dev.clone());
    let id = s.lookup("s1").unwrap();
    s.delete_snapshot(id).unwrap();
    drop(s);
    let img = dev.to_vec();
    let r = repair(dev.clone(), None, RepairOptions { dry_run: true }).unwrap();
    assert_eq!(r.outcome, Outcome::WouldRepair);
    assert_eq!(r.passes.len(), 1);
    assert!(r.after.is_none());
    assert_eq!(r.before.nr_leaked_chunks + r.before.nr_leaked_blocks, 0);
    assert_eq!(dev.to_vec(), img);
}

#[test]
fn power_cut_mid_pass_then_repair() {
    let o = origin();
    let dev = Arc::new(FaultyDevice::new(8 << 20));
    let mut s = build(o.clone(), dev.clone());
    let id = s.lookup("s1").unwrap();
    s.delete_snapshot(id).unwrap();
    let want = contents(&mut s);
    drop(s);
    let base = dev.crash_image(CrashMode::KeepAll, 0);
    let mut cut_mid_pass = 0;
    for (i, cut) in [1u64, 2, 4, 7, 11, 16].into_iter().enumerate() {
        let mode = [CrashMode::DropAll, CrashMode::TornSectors][i % 2];
        let dev = Arc::new(FaultyDevice::from_vec(base.clone()));
        let mut s = Store::open(o.clone(), dev.clone(), StoreOptions::default()).unwrap();
        dev.plan().lock().power_cut_in = Some(cut);
        // one address per commit, so the cut lands between and inside commits
        assert!(s.run_background(1).is_err(), "cut {cut}");
        drop(s);
        let img: Arc<dyn BlockDevice> = Arc::new(dev.crash(mode, cut));
        let pending = !Store::open_offline(img.clone())
            .unwrap()
            .status()
            .jobs
            .is_empty();
        cut_mid_pass += pending as u32;
        let r = repair(img.clone(), None, RepairOptions::default()).unwrap();
        assert!(r.is_clean(), "cut {cut}: {r:?}");
        assert_eq!(r.outcome == Outcome::Repaired, pending);
        let mut s = Store::open(o.clone(), img, StoreOptions::default()).unwrap();
        assert!(!s.has_background_work());
        assert_eq!(contents(&mut s), want, "cut {cut}");
    }
    assert!(cut_mid_pass > 0, "no cut left a pass unfinished");
}

#[test]
fn unfinished_merge_needs_the_origin() {
    let (o, dev) = (origin(), mem(8 << 20));
    let mut s = build(o.clone(), dev.clone());
    let mut want = contents(&mut s);
    let id = s.lookup("s1").unwrap();
    s.merge_snapshot(id).unwrap();
    assert!(s.is_merging());
    drop(s);
    // the origin reads s1 from now on; s1 is gone
    let merged = want.remove("s1").unwrap();
    want.insert(String::new(), merged);

    let (img, origin_img) = (dev.to_vec(), o.to_vec());
    let r = repair(dev.clone(), None, RepairOptions { dry_run: true }).unwrap();
    assert_eq!(r.outcome, Outcome::WouldRepair);
    assert_eq!(r.passes[0].kind, "merge");
    match repair(dev.clone(), None, RepairOptions::default()) {
        Err(Error::Invalid(m)) => assert!(m.contains("origin"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(dev.to_vec(), img, "refused: nothing written");
    assert_eq!(o.to_vec(), origin_img);

    let origin_dyn: Arc<dyn BlockDevice> = o.clone();
    let r = repair(dev.clone(), Some(origin_dyn), RepairOptions::default()).unwrap();
    assert_eq!(r.outcome, Outcome::Repaired);
    assert!(r.is_clean(), "{r:?}");
    let mut s = Store::open(o.clone(), dev, StoreOptions::default()).unwrap();
    assert!(!s.is_merging() && !s.has_background_work());
    assert_eq!(contents(&mut s), want);
    // the origin device itself now holds the merged data
    assert_eq!(o.to_vec(), want[""]);
}

#[test]
fn refuses_a_store_with_errors() {
    let (o, dev) = (origin(), mem(8 << 20));
    let mut s = build(o, dev.clone());
    let id = s.lookup("s1").unwrap();
    s.delete_snapshot(id).unwrap();
    // Lose the pass (as a bug would): a thin ghost is left with no pass pending.
    let ids: Vec<u32> = s.jobs.keys().copied().collect();
    s.jobs.clear();
    s.dirty_jobs.extend(ids);
    s.changed = true;
    s.commit().unwrap();
    drop(s);
    let img = dev.to_vec();
    let r = repair(dev.clone(), None, RepairOptions::default()).unwrap();
    assert_eq!(r.outcome, Outcome::Refused);
    assert!(!r.is_clean());
    assert!(r.before.errors.iter().any(|e| e.contains("ghost")), "{r:?}");
    assert_eq!(dev.to_vec(), img, "refused: nothing written");
}

#[test]
fn refuses_corrupt_metadata() {
    let (o, dev) = (origin(), Arc::new(FaultyDevice::new(8 << 20)));
    let mut s = build(o, dev.clone());
    let id = s.lookup("s1").unwrap();
    s.delete_snapshot(id).unwrap();
    let blocks = s.metadata_blocks().unwrap();
    drop(s);
    for b in [
        blocks[0],
        blocks[blocks.len() / 2],
        blocks[blocks.len() - 1],
    ] {
        let img = Arc::new(dev.crash(CrashMode::KeepAll, 0));
        img.corrupt_byte(b.0 * 4096 + 200, 0x10);
        let bytes_before = img.crash_image(CrashMode::KeepAll, 0);
        match repair(img.clone(), None, RepairOptions::default()) {
            Err(Error::Corrupt(_)) => {}
            other => panic!("block {b:?}: {other:?}"),
        }
        assert_eq!(img.crash_image(CrashMode::KeepAll, 0), bytes_before);
        assert_eq!(img.counts().1, 0, "no write at all");
    }
}

#[test]
fn rebuilds_a_label_index_that_disagrees_with_the_elements() {
    for with_pass in [false, true] {
        let (o, dev) = (origin(), mem(8 << 20));
        let mut s = build(o.clone(), dev.clone());
        if with_pass {
            let id = s.lookup("s1").unwrap();
            s.delete_snapshot(id).unwrap();
        }
        let want = contents(&mut s);
        // Damage the index as a bug would: a region the label does not hold, and a
        // count off by one.
        let l = s.snapshots()[0].label;
        s.label_index
            .adjust(&mut s.cache, &mut s.alloc, l, 50 * 64, 1)
            .unwrap();
        let l2 = s.snapshots()[1].label;
        s.label_index
            .adjust(&mut s.cache, &mut s.alloc, l2, 0, 1)
            .unwrap();
        s.changed = true;
        s.commit().unwrap();
        drop(s);

        let img = dev.to_vec();
        let r = repair(dev.clone(), None, RepairOptions { dry_run: true }).unwrap();
        assert_eq!(r.outcome, Outcome::WouldRepair, "{r:?}");
        assert!(r.rebuild_label_index);
        assert_eq!(r.before.nr_index_errors, 2, "{r:?}");
        assert_eq!(dev.to_vec(), img, "dry run: nothing written");

        let r = repair(dev.clone(), None, RepairOptions::default()).unwrap();
        assert_eq!(r.outcome, Outcome::Repaired, "{r:?}");
        assert!(r.is_clean(), "{r:?}");
        let mut s = Store::open(o.clone(), dev.clone(), StoreOptions::default()).unwrap();
        assert!(!s.has_background_work());
        assert!(s.check().unwrap().is_clean());
        assert_eq!(contents(&mut s), want, "with_pass {with_pass}");
    }
}
