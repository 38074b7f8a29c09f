//! Opening stores written by older format versions: version 1 (no label index: `open`
//! builds it from the elements), version 2 (snapshot records without guid and size:
//! `open` rewrites the table) and version 3 (no origin table: `open` makes it with
//! origin 0; snapshot records without origin and group: rewritten). The first commit
//! writes version 4, and nothing a device reads changes. The old images are the fuzz
//! seeds that `fuzz/gen_corpus.rs` wrote under those versions
//! (`fuzz/corpus/store_image/basic-v1`, `basic-v2`, `basic-v3`, kept as written); the
//! same operations on a fresh store give the contents they must read.
use blockdev::{BlockDevice, MemDevice};
use exception_store::{
    format::{BLOCK_SIZE, FORMAT_VERSION},
    superblock::read_superblock,
    tables::default_guid,
    testing::contents,
    Dev, Store, StoreOptions,
};
use std::sync::Arc;

const CS: u32 = 4096;
/// Superblock offset of the format version (docs/format.md).
const VERSION_AT: usize = 32;

/// What `fuzz/gen_corpus.rs` does to its store, on devices of the same sizes.
fn corpus_ops(s: &mut Store) {
    let a = s.create_snapshot("a", None, 1).unwrap();
    s.write(Dev::Origin(0), 0, &[1; 3 * 4096]).unwrap();
    let b = s.create_snapshot("b", Some(a), 2).unwrap();
    s.write(Dev::Snap(b), 4096, &[2; 4096]).unwrap();
    s.write_zeroes(Dev::Snap(a), 8 * 4096, 4096).unwrap();
    let c = s.create_snapshot("c", None, 3).unwrap();
    s.write(Dev::Origin(0), 5 * 4096, &[3; 4096]).unwrap();
    s.delete_snapshot(c).unwrap();
    s.flush().unwrap();
}

fn upgrade_from(image: &str, version: u32) {
    let path = format!(
        "{}/fuzz/corpus/store_image/{image}",
        env!("CARGO_MANIFEST_DIR")
    );
    let img = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let origin_len = 24 * 4096;
    // the origin as the corpus store left it, and the contents every device must read
    let fresh_origin = Arc::new(MemDevice::new(origin_len));
    let fresh_dev = Arc::new(MemDevice::new(img.len() as u64));
    let mut fresh =
        Store::format(fresh_origin.clone(), fresh_dev, CS, StoreOptions::default()).unwrap();
    corpus_ops(&mut fresh);
    let want = contents(&mut fresh);
    let mut o = vec![0u8; origin_len as usize];
    fresh_origin.read_at(&mut o, 0).unwrap();

    let origin = Arc::new(MemDevice::from_vec(o));
    let dev = Arc::new(MemDevice::from_vec(img));
    let sb = read_superblock(&*dev).unwrap();
    assert_eq!(sb.format_version, version, "{image}");
    let mut s = Store::open(origin.clone(), dev.clone(), StoreOptions::default()).unwrap();
    assert_eq!(
        contents(&mut s),
        want,
        "{image}: contents after the upgrade"
    );
    assert!(s.check().unwrap().is_clean(), "{image}");
    for i in s.snapshots() {
        assert_eq!(i.guid, default_guid(&sb.uuid, i.id), "{image}: {}", i.name);
        assert_eq!(i.size, origin_len);
    }
    let names: Vec<_> = s
        .snapshots()
        .into_iter()
        .map(|i| (i.name, i.created, i.parent))
        .collect();
    assert_eq!(
        names,
        vec![("a".into(), 1, None), ("b".into(), 2, Some("a".into()))]
    );
    s.commit().unwrap();
    let sb = read_superblock(&*dev).unwrap();
    assert_ne!(sb.label_index_root.0, 0, "the first commit names the index");
    assert_ne!(
        sb.origins_root.0, 0,
        "the first commit names the origin table"
    );
    let origins = s.origins();
    assert_eq!(origins.len(), 1, "{image}: one origin");
    assert_eq!((origins[0].id, origins[0].name.as_str()), (0, "origin"));
    assert_eq!(origins[0].size, origin_len);
    for i in s.snapshots() {
        assert_eq!((i.origin, i.group), (0, 0), "{image}: {}", i.name);
    }
    let mut b = vec![0u8; BLOCK_SIZE as usize];
    dev.read_at(&mut b, (sb.txn_id.0 % 2) * BLOCK_SIZE).unwrap();
    assert_eq!(b[VERSION_AT..VERSION_AT + 4], FORMAT_VERSION.to_le_bytes());
    assert!(
        s.check().unwrap().is_clean(),
        "{image}: after the commit (no leak)"
    );

    // the upgraded store works: a new snapshot, a delete pass over the built index
    let a = s.snapshots()[0].id;
    let n = s.create_snapshot("n", None, 9).unwrap();
    s.write(Dev::Origin(0), 0, &[7; 4096]).unwrap();
    s.delete_snapshot(a).unwrap();
    s.run_background(16).unwrap();
    let want = contents(&mut s);
    assert!(s.check().unwrap().is_clean());
    drop(s);
    let mut s = Store::open(origin, dev, StoreOptions::default()).unwrap();
    assert_eq!(contents(&mut s), want);
    assert!(s.check().unwrap().is_clean());
    assert!(s
        .snapshots()
        .iter()
        .any(|i| i.id == n && i.size == origin_len));
}

#[test]
fn a_version1_store_is_upgraded_at_open() {
    upgrade_from("basic-v1", 1);
}

#[test]
fn a_version2_store_is_upgraded_at_open() {
    upgrade_from("basic-v2", 2);
}

#[test]
fn a_version3_store_is_upgraded_at_open() {
    upgrade_from("basic-v3", 3);
}

/// The superblock records a clean stop, and the next open reports it; a store that
/// was not stopped cleanly (a crash: no `commit_clean_shutdown`) says so.
#[test]
fn a_clean_shutdown_is_recorded_and_reported() {
    let origin = Arc::new(MemDevice::new(64 * CS as u64));
    let dev = Arc::new(MemDevice::new(4 << 20));
    let mut s = Store::format(origin.clone(), dev.clone(), CS, StoreOptions::default()).unwrap();
    s.write(Dev::Origin(0), 0, &[1; 4096]).unwrap();
    s.create_snapshot("a", None, 0).unwrap();
    s.write(Dev::Origin(0), 0, &[2; 4096]).unwrap();
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
