//! Opening a store written by format version 1 (no label index): `open` builds the
//! index from the elements, the first commit writes version 2, and nothing a device
//! reads changes. The version 1 image is made from a fresh store by rewriting its
//! superblocks as version 1 wrote them (docs/format.md, "Version history").
use blockdev::{BlockDevice, MemDevice};
use exception_store::{
    format::{BLOCK_SIZE, SUPERBLOCK_CSUM_SALT},
    superblock::read_superblock,
    testing::contents,
    Dev, Store, StoreOptions,
};
use std::sync::Arc;

const CS: u32 = 4096;
const NR_ADDRS: u64 = 300;
/// Superblock offsets of docs/format.md.
const VERSION_AT: usize = 32;
const LABEL_INDEX_ROOT_AT: usize = 160;

/// Rewrite both superblock slots as format version 1 did.
fn make_version1(dev: &MemDevice) {
    for slot in 0..2u64 {
        let mut b = vec![0u8; BLOCK_SIZE as usize];
        dev.read_at(&mut b, slot * BLOCK_SIZE).unwrap();
        b[VERSION_AT..VERSION_AT + 4].copy_from_slice(&1u32.to_le_bytes());
        b[LABEL_INDEX_ROOT_AT..LABEL_INDEX_ROOT_AT + 8].fill(0);
        let c = crc32fast::hash(&b[4..]) ^ SUPERBLOCK_CSUM_SALT;
        b[0..4].copy_from_slice(&c.to_le_bytes());
        dev.write_at(&b, slot * BLOCK_SIZE).unwrap();
    }
}

#[test]
fn a_version1_store_is_upgraded_at_open() {
    let origin = Arc::new(MemDevice::new(NR_ADDRS * CS as u64));
    let dev = Arc::new(MemDevice::new(16 << 20));
    let mut s = Store::format(origin.clone(), dev.clone(), CS, StoreOptions::default()).unwrap();
    s.write(
        Dev::Origin,
        0,
        &blockdev::pattern(1, (NR_ADDRS * CS as u64) as usize),
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push(s.create_snapshot(&format!("s{i}"), None, i).unwrap());
        // origin writes spread over several regions of the index
        for k in 0..8 {
            let off = (i * 37 + k * 71) % (NR_ADDRS - 1) * CS as u64;
            s.write(Dev::Origin, off, &blockdev::pattern(10 * i + k, 6000))
                .unwrap();
        }
        s.write(
            Dev::Snap(ids[0]),
            i * 40 * CS as u64,
            &blockdev::pattern(99 + i, 5000),
        )
        .unwrap();
    }
    s.flush().unwrap();
    let want = contents(&mut s);
    drop(s);
    make_version1(&dev);
    assert_eq!(read_superblock(&*dev).unwrap().label_index_root.0, 0);

    let mut s = Store::open(origin.clone(), dev.clone(), StoreOptions::default()).unwrap();
    assert_eq!(contents(&mut s), want);
    assert!(s.check().unwrap().is_clean());
    s.commit().unwrap();
    let sb = read_superblock(&*dev).unwrap();
    assert_ne!(sb.label_index_root.0, 0, "the first commit names the index");
    let mut b = vec![0u8; BLOCK_SIZE as usize];
    dev.read_at(&mut b, (sb.txn_id.0 % 2) * BLOCK_SIZE).unwrap();
    assert_eq!(b[VERSION_AT..VERSION_AT + 4], 2u32.to_le_bytes());

    // the upgraded store works: delete passes use the built index
    s.delete_snapshot(ids[2]).unwrap();
    s.delete_snapshot(ids[0]).unwrap();
    s.run_background(16).unwrap();
    let mut want = want;
    want.remove("s0");
    want.remove("s2");
    assert_eq!(contents(&mut s), want);
    assert!(s.check().unwrap().is_clean());
    drop(s);
    let mut s = Store::open(origin, dev, StoreOptions::default()).unwrap();
    assert_eq!(contents(&mut s), want);
    assert!(s.check().unwrap().is_clean());
}

/// The superblock records a clean stop, and the next open reports it; a store that
/// was not stopped cleanly (a crash: no `commit_clean_shutdown`) says so.
#[test]
fn a_clean_shutdown_is_recorded_and_reported() {
    let origin = Arc::new(MemDevice::new(64 * CS as u64));
    let dev = Arc::new(MemDevice::new(4 << 20));
    let mut s = Store::format(origin.clone(), dev.clone(), CS, StoreOptions::default()).unwrap();
    s.write(Dev::Origin, 0, &[1; 4096]).unwrap();
    s.create_snapshot("a", None, 0).unwrap();
    s.write(Dev::Origin, 0, &[2; 4096]).unwrap();
    s.flush().unwrap();
    drop(s); // no clean stop
    let mut s = Store::open(origin.clone(), dev.clone(), StoreOptions::default()).unwrap();
    assert!(!s.status().last_shutdown_clean);
    s.commit_clean_shutdown().unwrap();
    assert!(read_superblock(&*dev).unwrap().clean_shutdown);
    drop(s);
    let mut s = Store::open(origin.clone(), dev.clone(), StoreOptions::default()).unwrap();
    assert!(s.status().last_shutdown_clean);
    // the first commit after the open (one that changes metadata) clears it
    s.create_snapshot("b", None, 1).unwrap();
    assert!(!read_superblock(&*dev).unwrap().clean_shutdown);
    drop(s);
    let s = Store::open(origin, dev, StoreOptions::default()).unwrap();
    assert!(!s.status().last_shutdown_clean);
}
