//! `snapctl map` and `snapctl diff` as programs, offline (`--store`), on a store
//! whose contents are known: the JSON they print is checked against the store's own
//! reads (a map read back piece by piece from the files equals the snapshot), and
//! the human output carries the summary a user reads.
mod common;

use blockdev::{BlockDevice, FileDevice};
use common::snapctl;
use exception_store::{Dev, Store, StoreOptions};
use std::{path::Path, process::Output, sync::Arc};

const CS: u64 = 16 << 10;
const ORIGIN_LEN: u64 = 1 << 20;

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Snapshots a (old), b (new), c (of a); origin writes between them.
fn build(dir: &Path) -> (String, String, Store) {
    let (origin, store) = (dir.join("o.img"), dir.join("s.img"));
    let o = Arc::new(FileDevice::create(&origin, ORIGIN_LEN).unwrap());
    let d: Arc<dyn BlockDevice> = Arc::new(FileDevice::create(&store, 16 << 20).unwrap());
    let mut s = Store::format(o, d, CS as u32, StoreOptions::default()).unwrap();
    s.write(
        Dev::Origin(0),
        0,
        &blockdev::pattern(1, ORIGIN_LEN as usize),
    )
    .unwrap();
    let a = s.create_snapshot("a", None, 1).unwrap();
    s.write(
        Dev::Origin(0),
        2 * CS,
        &blockdev::pattern(2, 3 * CS as usize),
    )
    .unwrap();
    let _b = s.create_snapshot("b", None, 2).unwrap();
    s.write(Dev::Origin(0), 40 * CS + 7, &blockdev::pattern(3, 10))
        .unwrap();
    let c = s.create_snapshot("c", Some(a), 3).unwrap();
    s.write(Dev::Snap(c), 10 * CS, &blockdev::pattern(4, CS as usize))
        .unwrap();
    s.write_zeroes(Dev::Snap(c), 20 * CS, 2 * CS).unwrap();
    s.flush().unwrap();
    (
        origin.to_str().unwrap().into(),
        store.to_str().unwrap().into(),
        s,
    )
}

#[test]
fn map_json_reads_back_as_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store, mut s) = build(dir.path());
    let want = {
        let id = s.lookup("c").unwrap();
        let mut v = vec![0u8; ORIGIN_LEN as usize];
        s.read(Dev::Snap(id), 0, &mut v).unwrap();
        v
    };
    drop(s);
    let m = json(&snapctl(&["map", "c", "--store", &store, "--json"]));
    let (o, st) = (
        std::fs::read(&origin).unwrap(),
        std::fs::read(&store).unwrap(),
    );
    let mut got = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for e in m["extents"].as_array().unwrap() {
        let (off, len) = (
            e["offset"].as_u64().unwrap(),
            e["len"].as_u64().unwrap() as usize,
        );
        let kind = e["kind"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "origin" => got.extend_from_slice(&o[off as usize..off as usize + len]),
            "own" | "inherited" => {
                let at = e["store_offset"].as_u64().unwrap() as usize;
                got.extend_from_slice(&st[at..at + len]);
            }
            "zero" => got.extend(std::iter::repeat_n(0u8, len)),
            k => panic!("kind {k}"),
        }
        if kind == "inherited" {
            // a's copy-outs (depth 2) and b's (depth 3), both above c
            let from = (e["from"].as_str().unwrap(), e["depth"].as_u64().unwrap());
            assert!(from == ("a", 2) || from == ("b", 3), "{e}");
        }
        kinds.insert(kind);
    }
    assert!(got == want, "the map of c reads back as c");
    assert_eq!(
        kinds.len(),
        4,
        "own, inherited, origin and zero runs: {kinds:?}"
    );
    let layers: Vec<_> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["snapshot"].clone())
        .collect();
    assert_eq!(
        layers,
        vec!["c".into(), "a".into(), "b".into(), serde_json::Value::Null]
    );
    assert_eq!(
        m["unshared_bytes"], CS,
        "c's own written chunk (holes use no space)"
    );

    let human = snapctl(&["map", "c", "--store", &store]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("deleting it frees 16.0 KiB"), "{text}");
    // a part of the device, and the origin
    let m = json(&snapctl(&[
        "map", "-", "--store", &store, "--json", "--offset", "4K", "--length", "8K",
    ]));
    assert_eq!(m["extents"][0]["offset"], 4096);
    assert_eq!(m["extents"][0]["len"], 8192);
    assert_eq!(m["extents"][0]["kind"], "origin");
    // errors: a name that does not exist, a range past the end
    assert_eq!(
        snapctl(&["map", "nope", "--store", &store]).status.code(),
        Some(6)
    );
    assert_ne!(
        snapctl(&["map", "c", "--store", &store, "--offset", "2M"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn diff_lists_the_chunks_written_between_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (_origin, store, _s) = build(dir.path());
    drop(_s);
    let d = json(&snapctl(&["diff", "a", "b", "--store", &store, "--json"]));
    assert_eq!(
        d["ranges"],
        serde_json::json!([{"offset": 2 * CS, "len": 3 * CS}])
    );
    assert_eq!(d["bytes"], 3 * CS);
    let d = json(&snapctl(&["diff", "b", "-", "--store", &store, "--json"]));
    assert_eq!(
        d["ranges"],
        serde_json::json!([{"offset": 40 * CS, "len": CS}])
    );
    let d = json(&snapctl(&["diff", "c", "a", "--store", &store, "--json"]));
    assert_eq!(
        d["ranges"],
        serde_json::json!([{"offset": 10 * CS, "len": CS}, {"offset": 20 * CS, "len": 2 * CS}])
    );
    let out = snapctl(&["diff", "a", "-", "--store", &store, "--summary"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 ranges, 64.0 KiB (65536 bytes) may differ between a and origin\n"
    );
}
