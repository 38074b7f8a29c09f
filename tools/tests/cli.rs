//! snapctl as a program: golden `--help` texts and exit codes (no daemon, no kernel).
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p tools`.
mod common;

use common::snapctl;
use std::path::{Path, PathBuf};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(
        actual, want,
        "{name}: --help changed (UPDATE_GOLDEN=1 to accept)"
    );
}

#[test]
fn help_is_golden() {
    let out = snapctl(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    golden("snapctl", &String::from_utf8_lossy(&out.stdout));
    for cmd in [
        "format",
        "grow-store",
        "create",
        "list",
        "status",
        "activate",
        "deactivate",
        "delete",
        "merge",
        "hold",
        "release",
        "prune",
        "check",
        "dump",
        "map",
        "diff",
        "export",
        "unexport",
        "origin",
        "send",
        "receive",
        "systemd-units",
    ] {
        let out = snapctl(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        golden(
            &format!("snapctl-{cmd}"),
            &String::from_utf8_lossy(&out.stdout),
        );
    }
}

fn code(args: &[&str]) -> i32 {
    snapctl(args).status.code().unwrap_or(-1)
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&[]), 2);
    assert_eq!(code(&["frobnicate"]), 2);
    assert_eq!(code(&["create"]), 2);
    assert_eq!(code(&["format", "--origin", "x"]), 2);
    assert_eq!(
        code(&[
            "format",
            "--origin",
            "x",
            "--store",
            "y",
            "--chunk-size",
            "12Q"
        ]),
        2
    );
}

#[test]
fn no_daemon_exits_5_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let sock = sock.to_str().unwrap();
    for cmd in [
        &["list"][..],
        &["status"],
        &["create", "x"],
        &["activate", "x"],
        &["deactivate", "x"],
        &["delete", "x"],
        &["merge", "x"],
        &["hold", "x"],
        &["release", "x"],
        &["prune", "--keep-last", "1"],
        &["check"],
        &["dump"],
        &["export", "x"],
        &["unexport", "x"],
    ] {
        let mut args = vec!["--socket", sock];
        args.extend_from_slice(cmd);
        assert_eq!(code(&args), 5, "{cmd:?}");
    }
    let out = snapctl(&["--socket", sock, "--json", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["exit_code"], 5);
}

#[test]
fn prune_without_a_rule_is_a_usage_error() {
    // refused before any request: a typo cannot delete everything
    assert_eq!(code(&["--socket", "/nonexistent.sock", "prune"]), 2);
    assert_eq!(code(&["prune", "--dry-run"]), 2);
    assert_eq!(code(&["prune", "--keep-last", "x"]), 2);
}

#[test]
fn systemd_units_are_shell_free_and_validated() {
    let out = snapctl(&[
        "--json",
        "systemd-units",
        "--every",
        "5min",
        "--snapctl",
        "/usr/bin/snapctl",
        "--prune",
        "--hourly 24 --daily 7",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let svc = v["service"].as_str().unwrap();
    assert!(svc.contains("ExecStart=/usr/bin/snapctl create --auto-name auto\n"));
    assert!(svc.contains("ExecStart=/usr/bin/snapctl prune --prefix auto- --hourly 24 --daily 7\n"));
    assert!(v["timer"]
        .as_str()
        .unwrap()
        .contains("OnUnitActiveSec=5min\n"));
    // no rule, a typo, or an unsafe word: usage
    assert_eq!(code(&["systemd-units", "--prune", "--dry-run"]), 2);
    assert_eq!(code(&["systemd-units", "--prune", "--kep-last 3"]), 2);
    assert_eq!(code(&["systemd-units", "--every", "5 min"]), 2);
    assert_eq!(code(&["systemd-units", "--prefix", "bad name"]), 2);
    // a pool: each snapshot a group of the origins named
    let out = snapctl(&[
        "--json",
        "systemd-units",
        "--snapctl",
        "/usr/bin/snapctl",
        "--origins",
        "db,wal",
        "--freeze",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["service"].as_str().unwrap().contains(
        "ExecStart=/usr/bin/snapctl create --auto-name auto --origins db,wal --freeze\n"
    ));
    assert_eq!(code(&["systemd-units", "--origins", "db,a@b"]), 2);
    assert_eq!(code(&["systemd-units", "--origins", "db,bad name"]), 2);
    // --dir writes the two files
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        code(&["systemd-units", "--snapctl", "/bin/snapctl", "--dir", d]),
        0
    );
    assert!(dir.path().join("ublk-snap-snapshot.service").exists());
    assert!(dir.path().join("ublk-snap-snapshot.timer").exists());
}

#[test]
fn check_and_dump_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (o, s) = (dir.path().join("o.img"), dir.path().join("s.img"));
    sparse(&o, 8 << 20);
    sparse(&s, 16 << 20);
    let (os, ss) = (o.to_str().unwrap(), s.to_str().unwrap());
    assert_eq!(code(&["format", "--origin", os, "--store", ss]), 0);
    let out = snapctl(&["check", "--store", ss]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": clean"));
    let out = snapctl(&["--json", "dump", "--store", ss, "--elements"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["superblock"]["chunk_size"], 65536);
    assert!(v["elements"].is_array());
    // a missing store: I/O; a store that is not one (zeros): corruption
    assert_eq!(code(&["check", "--store", "/nonexistent/s"]), 3);
    let z = dir.path().join("zero.img");
    sparse(&z, 16 << 20);
    assert_eq!(code(&["check", "--store", z.to_str().unwrap()]), 4);
    assert_eq!(code(&["dump", "--store", z.to_str().unwrap()]), 4);
    // a daemon (its lock) holds the store: conflict
    let _lock = ublk_snapd::lock::StoreLock::acquire(&s).unwrap();
    assert_eq!(code(&["check", "--store", ss]), 7);
    assert_eq!(code(&["dump", "--store", ss]), 7);
}

fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn format_offline_and_refused_when_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (o, s) = (dir.path().join("o.img"), dir.path().join("s.img"));
    sparse(&o, 8 << 20);
    sparse(&s, 16 << 20);
    let (os, ss) = (o.to_str().unwrap(), s.to_str().unwrap());
    let out = snapctl(&[
        "--json",
        "format",
        "--origin",
        os,
        "--store",
        ss,
        "--chunk-size",
        "16K",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chunk_size"], 16384);
    assert_eq!(v["size_bytes"], 8 << 20);
    // bad chunk size: usage
    assert_eq!(
        code(&[
            "format",
            "--origin",
            os,
            "--store",
            ss,
            "--chunk-size",
            "3K"
        ]),
        2
    );
    // missing origin: I/O
    assert_eq!(
        code(&["format", "--origin", "/nonexistent/o", "--store", ss]),
        3
    );
    // a daemon (here: the lock it takes) holds the store: conflict
    let _lock = ublk_snapd::lock::StoreLock::acquire(&s).unwrap();
    assert_eq!(code(&["format", "--origin", os, "--store", ss]), 7);
}

/// Blocks the file really has, in bytes.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn format_preallocates_and_grow_store_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (o, s, t) = (
        dir.path().join("o.img"),
        dir.path().join("s.img"),
        dir.path().join("t.img"),
    );
    sparse(&o, 8 << 20);
    sparse(&s, 16 << 20);
    sparse(&t, 16 << 20);
    let (os, ss, ts) = (
        o.to_str().unwrap(),
        s.to_str().unwrap(),
        t.to_str().unwrap(),
    );
    let out = snapctl(&["--json", "format", "--origin", os, "--store", ss]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let preallocated = v["storage"] == "preallocated";
    if preallocated {
        assert!(
            allocated(&s) >= 16 << 20,
            "{} bytes allocated",
            allocated(&s)
        );
    } else {
        // a filesystem without fallocate: said so, on stderr too
        assert!(
            v["storage"].as_str().unwrap().starts_with("sparse ("),
            "{v}"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    }
    let out = snapctl(&[
        "--json", "format", "--origin", os, "--store", ts, "--sparse",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["storage"], "sparse");
    assert!(allocated(&t) < 4 << 20, "{} bytes allocated", allocated(&t));
    // not grown: a usage error, nothing changed
    let out = snapctl(&["grow-store", "--store", ss]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not grow"));
    // extended: taken, preallocated
    std::fs::OpenOptions::new()
        .write(true)
        .open(&s)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let out = snapctl(&["--json", "grow-store", "--store", ss]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["old_bytes"], 16 << 20);
    assert_eq!(v["new_bytes"], 48 << 20);
    assert_eq!(v["added_chunks"], (32 << 20) / 65536);
    if preallocated {
        assert_eq!(v["storage"], "preallocated");
        assert!(allocated(&s) >= 48 << 20);
    }
    let out = snapctl(&["--json", "dump", "--store", ss]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["superblock"]["store_len"], 48 << 20);
    assert_eq!(code(&["check", "--store", ss]), 0);
    // shrunk below the store: refused, and check says the store does not fit
    std::fs::OpenOptions::new()
        .write(true)
        .open(&s)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    assert_ne!(code(&["grow-store", "--store", ss]), 0);
    // a daemon (its lock) holds the store: conflict
    let _lock = ublk_snapd::lock::StoreLock::acquire(&t).unwrap();
    assert_eq!(code(&["grow-store", "--store", ts]), 7);
}
