use super::*;
use crate::StoreOptions;
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
            .write(Dev::Origin, a * cs, &vec![a as u8; cs as usize])
            .unwrap();
    }
    let snap = shared.create_snapshot("s", None, 0).unwrap();
    let t0 = shared.lock().txn_id();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let sh = shared.clone();
            std::thread::spawn(move || {
                for a in (t..256).step_by(8) {
                    sh.write(Dev::Origin, a * cs, &vec![0xEE; cs as usize])
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
        shared.read(Dev::Origin, a * cs, &mut b).unwrap();
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
    let t0 = shared.flush().unwrap();
    assert_eq!(shared.flush().unwrap(), t0);
    shared.write(Dev::Origin, 0, &[1; 4096]).unwrap();
    assert_eq!(
        shared.commit().unwrap(),
        t0,
        "no snapshot: an origin write changes no metadata"
    );
    let id = shared.create_snapshot("a", None, 0).unwrap();
    shared.write(Dev::Snap(id), 0, &[2; 4096]).unwrap();
    assert!(shared.flush().unwrap() > t0);
    assert_eq!(shared.commit().unwrap(), shared.lock().txn_id());
}
