//! Bad input at the daemon's edges, through `Service::open` (what `ublk-snapd` runs
//! before it creates any device): an origin that shrank since `format` (one that
//! grew opens at the recorded size, for `resize-origin`), a
//! truncated store, a store formatted for another origin, a file that is no store.
//! Each is refused with an error that names the problem and maps to a documented
//! exit code, and neither file changes by a byte. (A read-only origin needs a
//! read-only mount or device, which root on the host cannot make: the VM test
//! `tests/vm/e2e_daemon.sh` covers it.)
mod common;

use common::daemon::{config, format_store};
use std::path::{Path, PathBuf};
use ublk_snapd::{exit, service::Service};

const STORE_LEN: u64 = 16 << 20;

/// An origin of `origin_len` bytes of a pattern and a store formatted for it.
fn files(dir: &Path, origin_len: u64) -> (PathBuf, PathBuf) {
    let origin = dir.join("origin.img");
    let pattern: Vec<u8> = (0..origin_len).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&origin, pattern).unwrap();
    let store = format_store(dir, &origin, STORE_LEN);
    (origin, store)
}

/// Open must fail, with `want` in the message and exit code `code`, leaving both
/// files byte-identical.
fn refused(origin: &Path, store: &Path, want: &str, code: u8) {
    let before = (
        std::fs::read(origin).unwrap(),
        std::fs::read(store).unwrap(),
    );
    let err = match Service::open(config(origin, store)) {
        Ok(_) => panic!("opened, expected an error containing {want:?}"),
        Err(e) => anyhow::Error::from(e),
    };
    let msg = format!("{err:#}");
    assert!(msg.contains(want), "{msg:?} does not say {want:?}");
    assert_eq!(exit::exit_code(err.chain()), code, "exit code for {msg:?}");
    let after = (
        std::fs::read(origin).unwrap(),
        std::fs::read(store).unwrap(),
    );
    assert!(before.0 == after.0, "the origin changed");
    assert!(before.1 == after.1, "the store changed");
}

#[test]
fn an_origin_that_shrank_is_refused_one_that_grew_opens_at_its_old_size() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store) = files(dir.path(), 4 << 20);
    assert!(
        Service::open(config(&origin, &store)).is_ok(),
        "the good pair opens"
    );
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&origin)
        .unwrap();
    f.set_len(3 << 20).unwrap();
    refused(&origin, &store, "origin size", exit::USAGE);
    // grown: it opens at the size the store records (`resize-origin` takes the rest)
    f.set_len(5 << 20).unwrap();
    let svc = Service::open(config(&origin, &store)).unwrap();
    assert_eq!(svc.store().size(), 4 << 20);
    drop(svc);
}

#[test]
fn a_truncated_or_foreign_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, store) = files(dir.path(), 4 << 20);
    // formatted for another origin (of another size)
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (origin2, _) = files(&other, 2 << 20);
    refused(&origin2, &store, "origin size", exit::USAGE);
    // truncated
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap();
    f.set_len(1 << 20).unwrap();
    refused(&origin, &store, "store", exit::USAGE);
    // not a store at all
    std::fs::write(&store, vec![0x5a; 1 << 20]).unwrap();
    refused(
        &origin,
        &store,
        "superblock at block 0: bad magic",
        exit::CORRUPT,
    );
}
