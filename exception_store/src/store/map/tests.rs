use crate::{
    map::{MapExtent, Owner},
    Dev, Store, StoreOptions,
};
use blockdev::{ids::Label, MemDevice};
use std::sync::Arc;

const CS: u64 = 4096;

fn store(chunks: u64) -> Store {
    let origin = Arc::new(MemDevice::new(chunks * CS));
    let dev = Arc::new(MemDevice::new(4 << 20));
    Store::format(origin, dev, CS as u32, StoreOptions::default()).unwrap()
}

fn kinds(m: &[MapExtent]) -> Vec<(u64, u64, &'static str, u32)> {
    m.iter()
        .map(|e| {
            let k = match e.owner {
                Owner::Origin => "origin",
                Owner::Chunk { .. } => "data",
                Owner::Hole { .. } => "hole",
            };
            (e.offset / CS, e.len, k, e.depth)
        })
        .collect()
}

#[test]
fn a_snapshot_maps_its_copies_its_parents_and_the_origin() {
    let mut s = store(16);
    let old = s.create_snapshot("old", None, 0).unwrap();
    s.write(Dev::Origin(0), 2 * CS, &[1; CS as usize]).unwrap(); // copied out for old
    let new = s.create_snapshot("new", None, 0).unwrap();
    s.write(Dev::Origin(0), 5 * CS, &[2; CS as usize]).unwrap(); // copied out for new
    s.write_zeroes(Dev::Snap(old), 9 * CS, 2 * CS).unwrap(); // old's own holes
    let m = s.map(Dev::Snap(old), 0, 16 * CS).unwrap();
    assert_eq!(
        kinds(&m),
        vec![
            (0, 2 * CS, "origin", 3),
            (2, CS, "data", 1),
            (3, 2 * CS, "origin", 3),
            (5, CS, "data", 2),
            (6, 3 * CS, "origin", 3),
            (9, 2 * CS, "hole", 1),
            (11, 5 * CS, "origin", 3),
        ]
    );
    let layers = s.layers(Dev::Snap(old)).unwrap();
    let ids: Vec<_> = layers.iter().map(|l| (l.depth, l.snapshot)).collect();
    assert_eq!(ids, vec![(1, Some(old)), (2, Some(new)), (3, None)]);
    // the origin is one layer, everything its own
    let m = s.map(Dev::Origin(0), 100, 16 * CS - 200).unwrap();
    assert_eq!(kinds(&m), vec![(0, 16 * CS - 200, "origin", 1)]);
}

#[test]
fn unshared_chunks_are_what_only_the_snapshot_reads() {
    let mut s = store(8);
    let old = s.create_snapshot("old", None, 0).unwrap();
    s.write(Dev::Origin(0), 0, &[1; 2 * CS as usize]).unwrap(); // old owns 2, alone
    let new = s.create_snapshot("new", None, 0).unwrap();
    s.write(Dev::Origin(0), 4 * CS, &[2; CS as usize]).unwrap(); // new owns 1, old inherits
    assert_eq!(s.unshared_chunks(Dev::Snap(old)).unwrap(), 2);
    assert_eq!(s.unshared_chunks(Dev::Snap(new)).unwrap(), 0);
    assert_eq!(s.unshared_chunks(Dev::Origin(0)).unwrap(), 0);
    let free = s.status().nr_free;
    s.delete_snapshot(old).unwrap();
    s.run_background(1024).unwrap();
    s.commit().unwrap();
    assert_eq!(
        s.status().nr_free,
        free + 2,
        "deleting it gave back what it said"
    );
}

#[test]
fn a_map_honours_unaligned_bounds_and_covers_the_range_exactly() {
    let mut s = store(8);
    let a = s.create_snapshot("a", None, 0).unwrap();
    s.write(Dev::Origin(0), 0, &[7; 3 * CS as usize]).unwrap();
    let m = s.map(Dev::Snap(a), 100, 3 * CS).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].offset, m[0].len), (100, 3 * CS - 100));
    assert!(matches!(m[0].owner, Owner::Chunk { .. }));
    assert_eq!((m[1].offset, m[1].len), (3 * CS, 100));
    assert!(s.map(Dev::Snap(a), 0, 9 * CS).is_err());
}

#[test]
fn a_deleted_snapshots_data_counts_as_the_layer_that_reads_it() {
    let mut s = store(8);
    let old = s.create_snapshot("old", None, 0).unwrap();
    let mid = s.create_snapshot("mid", None, 0).unwrap();
    s.write(Dev::Origin(0), 0, &[1; CS as usize]).unwrap(); // mid's element; old inherits
    let _new = s.create_snapshot("new", None, 0).unwrap();
    s.write(Dev::Snap(old), CS, &[3; CS as usize]).unwrap();
    s.delete_snapshot(mid).unwrap(); // its element stays until the pass moves it
    let m = s.map(Dev::Snap(old), 0, 2 * CS).unwrap();
    assert!(m.iter().all(|e| e.depth == 1), "{m:?}");
    s.run_background(1024).unwrap();
    let m = s.map(Dev::Snap(old), 0, 2 * CS).unwrap();
    let old_label = s.snapshots().iter().find(|i| i.id == old).unwrap().label;
    assert!(
        m.iter()
            .all(|e| e.owner.label() == old_label && e.depth == 1),
        "the pass handed mid's chunk to old: {m:?}"
    );
}

#[test]
fn diff_lists_what_was_written_between_two_snapshots_and_nothing_else() {
    let mut s = store(32);
    let a = s.create_snapshot("a", None, 0).unwrap();
    s.write(Dev::Origin(0), 3 * CS, &[1; 2 * CS as usize])
        .unwrap();
    let b = s.create_snapshot("b", None, 0).unwrap();
    s.write(Dev::Origin(0), 20 * CS, &[2; CS as usize]).unwrap();
    let c = s.create_snapshot("c", None, 0).unwrap();
    let size = s.size();
    assert_eq!(
        s.diff(Dev::Snap(a), Dev::Snap(b), 0, size).unwrap(),
        vec![(3 * CS, 2 * CS)]
    );
    assert_eq!(
        s.diff(Dev::Snap(b), Dev::Snap(a), 0, size).unwrap(),
        vec![(3 * CS, 2 * CS)]
    );
    assert_eq!(
        s.diff(Dev::Snap(a), Dev::Snap(c), 0, size).unwrap(),
        vec![(3 * CS, 2 * CS), (20 * CS, CS)]
    );
    assert_eq!(
        s.diff(Dev::Snap(c), Dev::Origin(0), 0, size).unwrap(),
        vec![]
    );
    s.write(Dev::Origin(0), 31 * CS + 5, b"x").unwrap();
    assert_eq!(
        s.diff(Dev::Snap(c), Dev::Origin(0), 0, size).unwrap(),
        vec![(31 * CS, CS)]
    );
    // a sub-range is cut to its bounds
    assert_eq!(
        s.diff(Dev::Snap(a), Dev::Snap(b), 4 * CS + 10, 10).unwrap(),
        vec![(4 * CS + 10, 10)]
    );
    // branches: a writable child of a, and b
    let child = s.create_snapshot("child", Some(a), 0).unwrap();
    s.write(Dev::Snap(child), 10 * CS, &[9; 10]).unwrap();
    assert_eq!(
        s.diff(Dev::Snap(child), Dev::Snap(b), 0, size).unwrap(),
        vec![(3 * CS, 2 * CS), (10 * CS, CS)]
    );
    assert_eq!(
        s.diff(Dev::Snap(child), Dev::Snap(child), 0, size).unwrap(),
        vec![]
    );
    let _ = Label(0);
}

#[test]
fn two_holes_read_the_same_and_are_not_listed() {
    let mut s = store(8);
    let a = s.create_snapshot("a", None, 0).unwrap();
    let b = s.create_snapshot("b", Some(a), 0).unwrap();
    s.write_zeroes(Dev::Snap(a), 0, CS).unwrap();
    // b shared a's data when a was written: the split gives b its own element
    let d = s.diff(Dev::Snap(a), Dev::Snap(b), 0, s.size()).unwrap();
    assert_eq!(d, vec![(0, CS)]);
    s.write_zeroes(Dev::Snap(b), 0, CS).unwrap();
    assert_eq!(
        s.diff(Dev::Snap(a), Dev::Snap(b), 0, s.size()).unwrap(),
        vec![]
    );
}
