//! A full store: the configured policy acts, and nothing is lost. With `Fail`, the
//! origin write that needs a chunk fails with `NoSpace` and changes nothing; with
//! `DeleteOldest`, the oldest snapshots that are not held go first, held ones never;
//! the min-free guard keeps chunks in reserve.
mod common;

use blockdev::FaultyDevice;
use common::*;
use exception_store::{Dev, Error, SpacePolicy, Store, StoreOptions};
use std::{collections::BTreeMap, sync::Arc};

const CS: u64 = 4096;

fn store(
    policy: SpacePolicy,
    min_free: u64,
    store_chunks: u64,
) -> (Arc<FaultyDevice>, Arc<FaultyDevice>, Store) {
    let origin = Arc::new(FaultyDevice::from_vec(pattern(1, (512 * CS) as usize)));
    let dev = Arc::new(FaultyDevice::new(store_chunks * CS));
    let opts = StoreOptions {
        cache_bytes: 1 << 20,
        space_policy: policy,
        min_free_chunks: min_free,
    };
    let s = Store::format(origin.clone(), dev.clone(), CS as u32, opts).unwrap();
    (origin, dev, s)
}

fn chunk(v: u8) -> Vec<u8> {
    vec![v; CS as usize]
}

#[test]
fn fail_policy_refuses_the_write_and_loses_nothing() {
    let (origin, dev, mut s) = store(SpacePolicy::Fail, 0, 400);
    let before = read_all(&mut s, Dev::Origin(0));
    let snap = s.create_snapshot("keep", None, 1).unwrap();
    let mut written = 0;
    let err = loop {
        match s.write(Dev::Origin(0), written * CS, &chunk(0xAB)) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 512, "the store never filled");
    };
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert_eq!(err.errno(), libc_enospc());
    // the refused chunk is untouched on the origin; the snapshot reads everything
    let mut b = chunk(0);
    s.read(Dev::Origin(0), written * CS, &mut b).unwrap();
    assert_eq!(
        b,
        before[(written * CS) as usize..((written + 1) * CS) as usize]
    );
    assert_eq!(read_all(&mut s, Dev::Snap(snap)), before);
    assert!(s.check().unwrap().errors.is_empty());
    // deleting the snapshot gives the space back; the write then succeeds
    s.delete_snapshot(snap).unwrap();
    s.run_background(64).unwrap();
    s.write(Dev::Origin(0), written * CS, &chunk(0xAB)).unwrap();
    s.flush().unwrap();
    let mut s = Store::open(origin, dev, StoreOptions::default()).unwrap();
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn delete_oldest_spares_held_snapshots() {
    let (_o, _d, mut s) = store(SpacePolicy::DeleteOldest, 0, 600);
    let mut model = Model::new(read_all(&mut s, Dev::Origin(0)));
    let mut ids = BTreeMap::new();
    let mut round = 0u8;
    // snapshots every 40 chunks of origin writes, the second one held
    for i in 0..8u32 {
        let id = s
            .create_snapshot(&format!("r{i}"), None, 100 + i as u64)
            .unwrap();
        if i == 1 {
            s.set_hold(id, true).unwrap();
        }
        ids.insert(i, id);
        model
            .devs
            .insert(Dev::Snap(id), model.devs[&Dev::Origin(0)].clone());
        round += 1;
        for a in 0..120u64 {
            s.write(Dev::Origin(0), a * CS, &chunk(round)).unwrap();
            model.write(Dev::Origin(0), a * CS, &chunk(round));
        }
    }
    let left: Vec<_> = s.snapshots().into_iter().map(|x| x.name).collect();
    assert!(
        left.contains(&"r1".to_string()),
        "the held snapshot was deleted: {left:?}"
    );
    assert!(
        !left.contains(&"r0".to_string()),
        "the oldest unheld survived: {left:?}"
    );
    assert!(s.status().auto_deleted > 0);
    // every survivor reads exactly what it did when taken
    for (d, want) in &model.devs {
        if let Dev::Snap(id) = d {
            if !s.exists(*d) {
                continue;
            }
            assert_eq!(&read_all(&mut s, *d), want, "snapshot {id:?}");
        }
    }
    assert_eq!(
        read_all(&mut s, Dev::Origin(0)),
        model.devs[&Dev::Origin(0)]
    );
    assert!(s.check().unwrap().errors.is_empty());
}

/// A snapshot a device serves (in use) is never deleted by the space policy: the
/// oldest unheld snapshot that is not in use goes instead, and when only held or
/// in-use snapshots are left, origin writes that need space fail with ENOSPC.
#[test]
fn delete_oldest_spares_snapshots_in_use() {
    // room for the three snapshots' copies, not for a fourth round of copy-outs
    let (_o, _d, mut s) = store(SpacePolicy::DeleteOldest, 0, 800);
    let mut model = Model::new(read_all(&mut s, Dev::Origin(0)));
    let mut round = 0u8;
    let mut ids = Vec::new();
    for i in 0..3u32 {
        let id = s
            .create_snapshot(&format!("u{i}"), None, 100 + i as u64)
            .unwrap();
        ids.push(id);
        model
            .devs
            .insert(Dev::Snap(id), model.devs[&Dev::Origin(0)].clone());
        round += 1;
        for a in 0..120u64 {
            s.write(Dev::Origin(0), a * CS, &chunk(round)).unwrap();
            model.write(Dev::Origin(0), a * CS, &chunk(round));
        }
    }
    s.set_in_use(ids[0], true);
    s.set_in_use(ids[2], true);
    // copy-outs of fresh addresses until the policy must act: u1 (not in use) goes,
    // then only snapshots in use are left and the write fails
    round += 1;
    let mut stop = None;
    for a in 120..512u64 {
        match s.write(Dev::Origin(0), a * CS, &chunk(round)) {
            Ok(()) => model.write(Dev::Origin(0), a * CS, &chunk(round)),
            Err(e) => {
                assert_eq!(e.errno(), libc_enospc(), "address {a}: {e}");
                stop = Some(a);
                break;
            }
        }
    }
    let stop = stop.expect("the store never filled");
    let left: Vec<_> = s.snapshots().into_iter().map(|x| x.name).collect();
    assert_eq!(left, vec!["u0".to_string(), "u2".to_string()], "{left:?}");
    assert_eq!(s.status().auto_deleted, 1);
    for id in [ids[0], ids[2]] {
        assert_eq!(
            read_all(&mut s, Dev::Snap(id)),
            model.devs[&Dev::Snap(id)],
            "snapshot {id:?}"
        );
    }
    assert_eq!(
        read_all(&mut s, Dev::Origin(0)),
        model.devs[&Dev::Origin(0)]
    );
    // no longer in use: the next write that needs space deletes it
    s.set_in_use(ids[0], false);
    for a in stop..512u64 {
        s.write(Dev::Origin(0), a * CS, &chunk(round)).unwrap();
        model.write(Dev::Origin(0), a * CS, &chunk(round));
    }
    let left: Vec<_> = s.snapshots().into_iter().map(|x| x.name).collect();
    assert_eq!(left, vec!["u2".to_string()], "{left:?}");
    assert_eq!(
        read_all(&mut s, Dev::Snap(ids[2])),
        model.devs[&Dev::Snap(ids[2])]
    );
    assert_eq!(
        read_all(&mut s, Dev::Origin(0)),
        model.devs[&Dev::Origin(0)]
    );
    assert!(s.check().unwrap().errors.is_empty());
}

#[test]
fn min_free_guard_keeps_a_reserve() {
    let (_o, _d, mut s) = store(SpacePolicy::Fail, 100, 400);
    s.create_snapshot("s", None, 1).unwrap();
    let mut n = 0;
    while s.write(Dev::Origin(0), n * CS, &chunk(1)).is_ok() {
        n += 1;
    }
    assert!(s.status().nr_free >= 100, "{:?}", s.status());
}

fn libc_enospc() -> i32 {
    28
}
