//! Writes the seed corpora under fuzz/corpus/ (run from fuzz/: `cargo run --bin gen_corpus`).
//! Seeds are committed; this program says how they were made. The `*-v1` and `*-v2` seeds are
//! what it wrote under format versions 1 and 2 (kept, not regenerated: they drive `open`'s
//! upgrade path).
use blockdev::{BlockDevice, MemDevice};
use exception_store::{Dev, Store, StoreOptions};
use std::{fs, sync::Arc};

fn main() {
    let dir = std::path::Path::new("corpus");
    for t in ["superblock", "records", "store_image", "protocol"] {
        fs::create_dir_all(dir.join(t)).expect("mkdir");
    }
    // a small store with snapshots, a snapshot of a snapshot, holes and a pending delete
    let origin: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(24 * 4096));
    let dev = Arc::new(MemDevice::new(300 * 4096));
    let mut s = Store::format(origin, dev.clone(), 4096, StoreOptions::default()).expect("format");
    let a = s.create_snapshot("a", None, 1).expect("a");
    s.write(Dev::Origin, 0, &[1; 3 * 4096]).expect("w");
    let b = s.create_snapshot("b", Some(a), 2).expect("b");
    s.write(Dev::Snap(b), 4096, &[2; 4096]).expect("w");
    s.write_zeroes(Dev::Snap(a), 8 * 4096, 4096).expect("z");
    let c = s.create_snapshot("c", None, 3).expect("c");
    s.write(Dev::Origin, 5 * 4096, &[3; 4096]).expect("w");
    s.delete_snapshot(c).expect("del");
    s.flush().expect("flush");
    let img = dev.to_vec();
    fs::write(dir.join("store_image/basic"), &img).expect("write");
    fs::write(dir.join("superblock/slot"), &img[4096..8192]).expect("write");
    fs::write(dir.join("superblock/slot0"), &img[..4096]).expect("write");
    // records: a snapshot record, a job, an element
    let rec = exception_store::tables::SnapRec {
        label: blockdev::ids::Label(3),
        hold: true,
        created: 1_700_000_000,
        parent: None,
        name: "daily-2026-11-23".into(),
        guid: [0x5a; 16],
        size: 1 << 30,
    };
    fs::write(dir.join("records/snap"), rec.to_raw().0).expect("write");
    fs::write(dir.join("records/elem"), [7u8, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0])
        .expect("write");
    for (i, line) in [
        r#"{"version":1,"op":"create","name":"nightly"}"#,
        r#"{"version":1,"op":"create","name":"child","from":"nightly"}"#,
        r#"{"version":1,"op":"list"}"#,
        r#"{"version":1,"op":"status"}"#,
        r#"{"version":1,"op":"activate","name":"nightly"}"#,
        r#"{"version":1,"op":"delete","name":"nightly"}"#,
    ]
    .iter()
    .enumerate()
    {
        fs::write(dir.join(format!("protocol/{i}")), line).expect("write");
    }
    println!("corpora written under {}", dir.display());
}
