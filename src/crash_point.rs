//! Crash points for the kernel tests: with `UBLK_SNAPD_TEST_CRASH=NAME` in its
//! environment, the daemon aborts (SIGABRT: no destructor, no commit, no reply) when
//! it reaches the point named NAME, as a kill -9 at that instant would. A kill from
//! outside cannot aim at a window between two steps of one request; these points
//! can (`tests/vm/e2e_resize.sh`). Without the variable, or with another name, a
//! point does nothing.
//!
//! Points: `resize-committed`, in `resize-origin` after the store recorded the new
//! size and before the kernel was told (`service::grow`).

/// The environment variable naming the point to crash at.
pub const ENV: &str = "UBLK_SNAPD_TEST_CRASH";

/// Abort here if [`ENV`] names `point`.
pub fn at(point: &str) {
    if std::env::var_os(ENV).is_some_and(|v| v == point) {
        tracing::warn!(point, "{ENV}: aborting at this crash point");
        std::process::abort();
    }
}
