//! The group snapshot's fence, in process: a writer that writes a counter to origin
//! A, waits for completion, then writes it to origin B, over and over, while group
//! snapshots of A and B are taken; in every group, B's counter is never ahead of
//! A's, and A's at most one ahead of B's (the write to B that was in flight).
use blockdev::MemDevice;
use exception_store::{Dev, SharedStore, Store, StoreOptions};
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

const CS: u64 = 4096;

fn counter(s: &SharedStore, dev: Dev) -> u64 {
    let mut b = [0u8; 8];
    s.read(dev, 0, &mut b).unwrap();
    u64::from_le_bytes(b)
}

#[test]
fn no_group_sees_b_ahead_of_a() {
    let a = Arc::new(MemDevice::new(64 * CS));
    let b = Arc::new(MemDevice::new(64 * CS));
    let store_dev = Arc::new(MemDevice::new(8192 * CS));
    let mut s = Store::format(a, store_dev, CS as u32, StoreOptions::default()).unwrap();
    let kb = s.add_origin("b", b, "", 0).unwrap();
    let shared = Arc::new(SharedStore::new(s));
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let writer = {
        let (shared, stop, rounds) = (shared.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                // a whole chunk each, so that every write may need a copy-out
                let mut data = vec![0u8; CS as usize];
                data[..8].copy_from_slice(&i.to_le_bytes());
                shared.write(Dev::Origin(0), 0, &data).unwrap();
                shared.write(Dev::Origin(kb), 0, &data).unwrap();
                rounds.store(i, Ordering::SeqCst);
            }
            i
        })
    };
    let mut groups = Vec::new();
    for n in 0..60 {
        // each group among the writer's rounds (on a busy machine the writer may
        // not have been scheduled yet): wait for a round past the last group's
        let seen = rounds.load(Ordering::SeqCst);
        let t0 = std::time::Instant::now();
        while rounds.load(Ordering::SeqCst) == seen && t0.elapsed().as_secs() < 10 {
            std::thread::yield_now();
        }
        let g = shared.create_group(&format!("g{n}"), &[0, kb], n).unwrap();
        groups.push(g);
    }
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    let mut ahead = 0;
    for g in &groups {
        let (ca, cb) = (
            counter(&shared, Dev::Snap(g.members[0].1)),
            counter(&shared, Dev::Snap(g.members[1].1)),
        );
        assert!(cb <= ca, "group {}: B {cb} is ahead of A {ca}", g.name);
        assert!(ca <= cb + 1, "group {}: A {ca}, B {cb}", g.name);
        ahead += (ca > cb) as u32;
    }
    assert!(writes > 60, "the writer ran alongside ({writes} rounds)");
    eprintln!(
        "{} groups over {writes} rounds; A one ahead in {ahead} of them",
        groups.len()
    );
}
