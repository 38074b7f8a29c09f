//! What the snapctl integration tests share: running the built binary.
use std::process::{Command, Output};

/// Run the `snapctl` built for this test, without the caller's `RUST_LOG`.
pub fn snapctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}
