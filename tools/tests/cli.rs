//! snapctl as a program: golden `--help` texts and exit codes (no daemon, no kernel).
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p tools`.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn snapctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

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
        "create",
        "list",
        "status",
        "activate",
        "deactivate",
        "delete",
        "merge",
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
fn merge_is_reserved() {
    assert_eq!(code(&["merge", "x"]), 10);
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
