//! `snapctl check --repair` as a program and `offline::repair` as a library, on store
//! files left with unfinished background passes (a delete, a merge) by a store closed
//! before its passes ran; every device must read the same before and after, and
//! anything refused must leave the files byte-identical.
mod common;

use blockdev::{BlockDevice, FileDevice};
use common::snapctl;
use exception_store::{testing::contents, Dev, Store, StoreOptions};
use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::Arc,
};

const CS: u32 = 16 << 10;
const ORIGIN_LEN: u64 = 1 << 20;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    blockdev::pattern(seed, len)
}

struct Files {
    _dir: tempfile::TempDir,
    origin: PathBuf,
    store: PathBuf,
}

impl Files {
    fn o(&self) -> &str {
        self.origin.to_str().unwrap()
    }
    fn s(&self) -> &str {
        self.store.to_str().unwrap()
    }
    fn open(&self) -> Store {
        let o = Arc::new(FileDevice::open(&self.origin).unwrap());
        let d = Arc::new(FileDevice::open(&self.store).unwrap());
        Store::open(o, d, StoreOptions::default()).unwrap()
    }
    fn images(&self) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(&self.origin).unwrap(),
            std::fs::read(&self.store).unwrap(),
        )
    }
}

/// Origin and store files with snapshots a, b (of the origin), c (of a), and writes
/// to every device; the store is closed with everything committed.
fn build() -> (Files, Store) {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store) = (dir.path().join("o.img"), dir.path().join("s.img"));
    let o = Arc::new(FileDevice::create(&origin, ORIGIN_LEN).unwrap());
    let d: Arc<dyn BlockDevice> = Arc::new(FileDevice::create(&store, 16 << 20).unwrap());
    let mut s = Store::format(o, d, CS, StoreOptions::default()).unwrap();
    s.write(Dev::Origin(0), 0, &bytes(1, ORIGIN_LEN as usize))
        .unwrap();
    let a = s.create_snapshot("a", None, 1).unwrap();
    let b = s.create_snapshot("b", None, 2).unwrap();
    let c = s.create_snapshot("c", Some(a), 3).unwrap();
    let mut seed = 100;
    for d in [Dev::Origin(0), Dev::Snap(a), Dev::Snap(b), Dev::Snap(c)] {
        for k in 0..8u64 {
            seed += 1;
            let off = (seed * 11 + k * 5) % 60 * CS as u64 + 300;
            s.write(d, off, &bytes(seed, 20_000)).unwrap();
        }
    }
    s.flush().unwrap();
    let f = Files {
        _dir: dir,
        origin,
        store,
    };
    (f, s)
}

#[test]
fn repair_finishes_an_unfinished_delete_pass() {
    let (f, mut s) = build();
    let b = s.lookup("b").unwrap();
    s.delete_snapshot(b).unwrap();
    assert!(s.has_background_work());
    let want = contents(&mut s);
    drop(s); // closed before the pass ran

    // refused online, and while the daemon (its lock) holds the store
    let out = snapctl(&["--socket", "/nonexistent.sock", "check", "--repair"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("offline"));
    {
        let _lock = ublk_snapd::lock::StoreLock::acquire(&f.store).unwrap();
        assert_eq!(
            snapctl(&["check", "--repair", "--store", f.s()])
                .status
                .code(),
            Some(7)
        );
    }
    // --dry-run says what it would do and writes nothing
    let imgs = f.images();
    let out = snapctl(&["--json", "check", "--repair", "--dry-run", "--store", f.s()]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["outcome"], "would_repair");
    assert_eq!(v["passes"][0]["kind"], "delete");
    assert_eq!(v["leaked"], 0);
    assert_eq!(f.images(), imgs, "a dry run writes nothing");
    let out = snapctl(&["check", "--repair", "--dry-run", "--store", f.s()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("would finish"));

    let out = snapctl(&["--json", "check", "--repair", "--store", f.s()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["outcome"], "repaired");
    assert_eq!(v["clean"], true);
    assert_eq!(v["after"]["clean"], true);
    assert!(v["after"]["txn_id"].as_u64() > v["before"]["txn_id"].as_u64());

    let out = snapctl(&["--json", "dump", "--store", f.s()]);
    assert_eq!(json(&out)["jobs"], serde_json::json!([]));
    assert_eq!(snapctl(&["check", "--store", f.s()]).status.code(), Some(0));
    let mut s = f.open();
    assert!(!s.has_background_work());
    assert_eq!(contents(&mut s), want);
    drop(s);

    // nothing left: the same command writes nothing and says so
    let imgs = f.images();
    let out = snapctl(&["check", "--repair", "--store", f.s()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to repair"));
    assert_eq!(f.images(), imgs);
}

#[test]
fn repair_through_the_library() {
    let (f, mut s) = build();
    for n in ["a", "b"] {
        let id = s.lookup(n).unwrap();
        s.delete_snapshot(id).unwrap();
    }
    s.background_step(2).unwrap();
    s.commit().unwrap();
    let want = contents(&mut s);
    drop(s);
    let r = ublk_snapd::offline::repair(&ublk_snapd::offline::RepairOptions {
        store: f.store.clone(),
        origin: None,
        dry_run: false,
    })
    .unwrap();
    assert_eq!(r.outcome, "repaired");
    assert!(r.clean, "{r:?}");
    assert_eq!(r.passes.len(), 2);
    let mut s = f.open();
    assert!(!s.has_background_work());
    assert!(s.check().unwrap().is_clean());
    assert_eq!(contents(&mut s), want);
}

#[test]
fn repair_of_a_merge_needs_the_origin() {
    let (f, mut s) = build();
    let mut want = contents(&mut s);
    let a = s.lookup("a").unwrap();
    s.merge_snapshot(a).unwrap();
    drop(s); // the merge's copy has not run
    let merged = want.remove("a").unwrap();
    want.insert(String::new(), merged);

    let imgs = f.images();
    let out = snapctl(&["check", "--repair", "--store", f.s()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("origin"));
    assert_eq!(f.images(), imgs, "refused: nothing written");
    let out = snapctl(&["check", "--repair", "--dry-run", "--store", f.s()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("needs --origin"));
    assert_eq!(
        out.status.code(),
        Some(2),
        "a dry run exits as the real run would"
    );

    let out = snapctl(&["check", "--repair", "--store", f.s(), "--origin", f.o()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = f.open();
    assert!(!s.is_merging() && !s.has_background_work());
    assert_eq!(contents(&mut s), want);
    drop(s);
    assert_eq!(std::fs::read(&f.origin).unwrap(), want[""]);
}

#[test]
fn repair_refuses_a_corrupt_store_and_writes_nothing() {
    let (f, mut s) = build();
    let b = s.lookup("b").unwrap();
    s.delete_snapshot(b).unwrap();
    let blocks = s.metadata_blocks().unwrap();
    drop(s);
    let mut img = std::fs::read(&f.store).unwrap();
    let pos = (blocks[blocks.len() / 2].0 * 4096 + 100) as usize;
    img[pos] ^= 0x04;
    std::fs::write(&f.store, &img).unwrap();
    let imgs = f.images();
    for args in [
        &["check", "--repair", "--store", f.s()][..],
        &["check", "--repair", "--store", f.s(), "--origin", f.o()],
    ] {
        let out = snapctl(args);
        assert_eq!(out.status.code(), Some(4), "{args:?}");
        assert_eq!(f.images(), imgs, "refused: nothing written");
    }
}

/// A regular file given as --origin is not claimed; a missing one is an I/O error.
#[test]
fn repair_with_a_missing_origin_is_an_io_error() {
    let (f, s) = build();
    drop(s);
    let missing = Path::new("/nonexistent/origin").to_str().unwrap();
    let out = snapctl(&["check", "--repair", "--store", f.s(), "--origin", missing]);
    assert_eq!(out.status.code(), Some(3));
}
