//! Damage to metadata: flipping bits anywhere in any metadata block gives an error
//! that names corruption when the store is opened, never wrong data and never a panic.
//! The superblock has two slots: damage to the newest falls back to the previous
//! transaction (as a torn superblock write would); damage to both refuses the open.
mod common;

use blockdev::{BlockDevice, CrashMode, FaultyDevice};
use common::*;
use exception_store::{Dev, Error, Store};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::Arc;

fn build() -> (Harness, Model, Store) {
    let cs = 4096u64;
    let (h, mut s) = Harness::new(256 * cs, 16 << 20, cs as u32, &[7, 1, 9]);
    let mut m = Model::new(read_all(&mut s, Dev::Origin(0)));
    let mut rng = StdRng::seed_from_u64(5);
    let mut snaps = Vec::new();
    for i in 0..40u64 {
        if i % 4 == 0 {
            let parent = if i % 8 == 0 || snaps.is_empty() {
                None
            } else {
                Some(snaps[0])
            };
            let id = s.create_snapshot(&format!("s{i}"), parent, i).unwrap();
            let src = parent.map_or(Dev::Origin(0), Dev::Snap);
            let c = m.devs[&src].clone();
            m.devs.insert(Dev::Snap(id), c);
            snaps.push(id);
        }
        for _ in 0..40 {
            let devs: Vec<Dev> = m.devs.keys().copied().collect();
            let d = devs[rng.gen_range(0..devs.len())];
            let off = rng.gen_range(0..256 * cs - 9000);
            let data = pattern(rng.gen(), rng.gen_range(1..9000));
            s.write(d, off, &data).unwrap();
            m.write(d, off, &data);
        }
    }
    let id = snaps.remove(3);
    s.delete_snapshot(id).unwrap();
    m.devs.remove(&Dev::Snap(id));
    s.run_background(8).unwrap();
    s.flush().unwrap();
    (h, m, s)
}

fn damaged(dev: &FaultyDevice, pos: u64, mask: u8) -> Arc<FaultyDevice> {
    let img = Arc::new(dev.crash(CrashMode::KeepAll, 0));
    img.corrupt_byte(pos, mask);
    img
}

#[test]
fn flipped_bits_in_any_node_are_detected_at_open() {
    let (h, m, mut s) = build();
    let blocks = s.metadata_blocks().unwrap();
    assert!(blocks.len() > 12, "only {} metadata blocks", blocks.len());
    let mut rng = StdRng::seed_from_u64(9);
    for b in &blocks {
        let mut offsets = vec![0usize, 3, 4, 8, 12, 16, 24, 28, 32, 40, 4095];
        offsets.extend((0..6).map(|_| rng.gen_range(0..4096)));
        for off in offsets {
            let img = damaged(&h.dev, b.0 * 4096 + off as u64, 1 << rng.gen_range(0..8));
            match Store::open(h.origin_dyn(), img, opts()) {
                Err(Error::Corrupt(_)) => {}
                Err(e) => panic!("block {b} byte {off}: not a corruption error: {e}"),
                Ok(mut s2) => {
                    // Only possible if the damage is invisible to every check: then
                    // every device must still read exactly right.
                    for (d, want) in &m.devs {
                        let mut got = vec![0u8; want.len()];
                        if s2.read(*d, 0, &mut got).is_ok() {
                            assert_eq!(&got, want, "block {b} byte {off}: wrong data served");
                        }
                    }
                    panic!("block {b} byte {off}: damage went unnoticed");
                }
            }
        }
    }
}

#[test]
fn superblock_damage_falls_back_or_refuses() {
    let (h, _m, s) = build();
    let txn = s.txn_id().0;
    let newest = txn % 2;
    for off in [0u64, 4, 9, 20, 30, 40, 70, 100, 130, 150, 2000, 4095] {
        // newest slot damaged: the previous transaction opens, consistent
        let img = damaged(&h.dev, newest * 4096 + off, 0x40);
        let mut s2 = Store::open(h.origin_dyn(), img.clone(), opts())
            .unwrap_or_else(|e| panic!("newest superblock byte {off}: no fallback: {e}"));
        assert_eq!(s2.txn_id().0, txn - 1);
        assert!(s2.check().unwrap().errors.is_empty());
        // both slots damaged: refused with a clear error
        img.corrupt_byte((1 - newest) * 4096 + off, 0x40);
        match Store::open(h.origin_dyn(), img, opts()) {
            Err(Error::Corrupt(_)) | Err(Error::Unsupported(_)) => {}
            Err(e) => panic!("both slots byte {off}: unexpected error {e}"),
            Ok(_) => panic!("both slots byte {off}: opened a store with no valid superblock"),
        }
    }
}

#[test]
fn wrong_geometry_and_foreign_devices_are_refused() {
    let (h, _m, _s) = build();
    // an origin smaller than the store's (a larger one opens at the store's size:
    // `resize-origin` takes the rest, tests/grow_origin.rs)
    let other = Arc::new(FaultyDevice::new(255 * 4096));
    assert!(matches!(
        Store::open(other, h.dev.clone(), opts()),
        Err(Error::Mismatch { .. })
    ));
    // a truncated store device
    let mut img = h.dev.crash_image(CrashMode::KeepAll, 0);
    img.truncate(img.len() / 2);
    assert!(matches!(
        Store::open(
            h.origin_dyn(),
            Arc::new(FaultyDevice::from_vec(img)),
            opts()
        ),
        Err(Error::Mismatch { .. })
    ));
    // not a store at all
    let blank: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(1 << 20));
    assert!(matches!(
        Store::open(h.origin_dyn(), blank, opts()),
        Err(Error::Corrupt(_))
    ));
    // chunk sizes out of range
    for cs in [0u32, 512, 3000, 2 << 20] {
        let d: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(1 << 22));
        assert!(matches!(
            Store::format(h.origin_dyn(), d, cs, opts()),
            Err(Error::Invalid(_))
        ));
    }
    // a store too small for its chunk size
    let tiny: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(64 * 1024));
    assert!(matches!(
        Store::format(h.origin_dyn(), tiny, 65536, opts()),
        Err(Error::Invalid(_))
    ));
}
