//! The daemon under memory pressure (seed 001's anti-deadlock rule): the process
//! serves the block devices the kernel may have to write dirty pages to in order to
//! free memory, so it must never wait on that same reclaim.
//!
//! [`prepare`] runs once, before the store is opened and before any thread exists
//! (the daemon-mode child calls it after it detached), and does two things:
//!
//! - **`PR_SET_IO_FLUSHER`** (Linux 5.6+, needs `CAP_SYS_RESOURCE`): the kernel sets
//!   `PF_MEMALLOC_NOIO` and `PF_LOCAL_THROTTLE` on the thread, so its allocations
//!   never start I/O to reclaim memory (which could wait on our own devices) and it is
//!   not throttled for the dirty pages of others. The flag is per thread and copied
//!   to every thread created afterwards, hence "before any thread": the control
//!   thread, the queues (libublk also sets it there, ignoring a refusal), the worker,
//!   the NBD threads and the tokio runtime all inherit it. A refusal is logged as a
//!   warning naming the capability, and the daemon runs on.
//! - **`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`** unless `--no-mlock`:
//!   every page the daemon has touched, now or later, stays resident, so serving a
//!   request never faults on a page the kernel dropped to free memory (a fault that
//!   could need the writeback only we can do). `MCL_ONFAULT` (Linux 4.4) locks pages
//!   as they are first touched instead of populating whole mappings: without it,
//!   `MCL_FUTURE` would pin every reservation in full, each thread's 2 MiB stack (up
//!   to 128 NBD connection threads and tokio's blocking pool), every tag buffer of
//!   every device whether used or not (`queues x queue_depth x 512 KiB`, 64 MiB per
//!   device by default) and the allocator's arenas, hundreds of MiB that no request
//!   needs. With it, what is locked is the working set: the tag buffers and stack
//!   pages requests have used, the store's node cache (bounded by `--cache-mb`), the
//!   copy-out buffer (one request's chunks, at most 4 MiB), code and the rings. A page
//!   of the I/O path touched for the first time under pressure is allocated like any
//!   other, but never by writing back to our devices (the I/O-flusher mark above).
//!   A refusal (no `CAP_IPC_LOCK` and `RLIMIT_MEMLOCK` too small, or a kernel without
//!   `MCL_ONFAULT`) is a warning too.
//!
//! # What gets locked
//! Measured in tests/vm/README.md (`e2e_pressure.sh`) and documented in docs/cli.md
//! (`--no-mlock`). Everything the I/O path allocates is bounded: per queue its tag
//! buffers and per-tag bookkeeping sized once by the queue depth; per copy-out one
//! buffer of at most 4 MiB (the store keeps one); per snapshot write that needs a new
//! chunk, one chunk (at most 1 MiB); per NBD connection (at most 128) one request's
//! data, in pieces.
//!
//! # Invariants
//! - Called at most once per process, on the main thread, before other threads start.
//! - Never fails the daemon: what the kernel refuses is logged and reported.
use std::io;

/// `PR_SET_IO_FLUSHER` from `include/uapi/linux/prctl.h` (Linux 5.6).
const PR_SET_IO_FLUSHER: libc::c_int = 57;
/// `PR_GET_IO_FLUSHER`.
const PR_GET_IO_FLUSHER: libc::c_int = 58;
/// `MCL_ONFAULT` from `include/uapi/asm-generic/mman-common.h` (Linux 4.4; the libc
/// crate has it for musl only). Its value differs on powerpc, sparc and alpha.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
))]
const MCL_ONFAULT: libc::c_int = 4;

/// What [`prepare`] obtained from the kernel.
#[derive(Debug)]
pub struct Prepared {
    /// The process is marked as an I/O flusher (`Err`: why not).
    pub io_flusher: io::Result<()>,
    /// Its memory is locked (`None`: `--no-mlock`; `Err`: why not).
    pub mlock: Option<io::Result<()>>,
}

/// Mark the process as an I/O flusher and, with `lock`, lock its memory; log what
/// the kernel granted and refused. See the module documentation.
pub fn prepare(lock: bool) -> Prepared {
    let io_flusher = set_io_flusher();
    match &io_flusher {
        Ok(()) => tracing::info!("marked as an I/O flusher (PR_SET_IO_FLUSHER)"),
        Err(e) => tracing::warn!(
            error = %e,
            "not marked as an I/O flusher (PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE and \
             Linux 5.6): under memory pressure the daemon's own allocations may wait on \
             writeback to its devices"
        ),
    }
    let mlock = lock.then(lock_all);
    match &mlock {
        None => tracing::info!("memory not locked (--no-mlock)"),
        Some(Ok(())) => tracing::info!("memory locked (mlockall current and future, on fault)"),
        Some(Err(e)) => tracing::warn!(
            error = %e,
            "memory not locked (mlockall needs CAP_IPC_LOCK or a large enough \
             RLIMIT_MEMLOCK, and Linux 4.4): pages of the I/O path may be reclaimed \
             under pressure"
        ),
    }
    if let Some((rss, locked)) = resident() {
        tracing::info!(rss_bytes = rss, locked_bytes = locked, "memory at start");
    }
    Prepared { io_flusher, mlock }
}

/// `prctl(PR_SET_IO_FLUSHER, 1)` for the calling thread (and the threads it creates
/// afterwards).
pub fn set_io_flusher() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_IO_FLUSHER takes four integer arguments and touches
    // no memory of ours; an unknown option or a missing capability is an error
    // return (EINVAL, EPERM), never undefined behaviour.
    let rc = unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the calling thread is an I/O flusher (`PR_GET_IO_FLUSHER`).
pub fn is_io_flusher() -> io::Result<bool> {
    // SAFETY: as in `set_io_flusher`: integer arguments only, errors are returns.
    let rc = unsafe { libc::prctl(PR_GET_IO_FLUSHER, 0 as libc::c_ulong, 0, 0, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc == 1)
    }
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
))]
fn lock_all() -> io::Result<()> {
    // SAFETY: mlockall takes flags only and changes no memory contents, only
    // whether pages may be reclaimed; failure is an error return.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | MCL_ONFAULT) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the value of `MCL_ONFAULT` is not known here: not locked.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
)))]
fn lock_all() -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The process's resident and locked memory, in bytes (`VmRSS`, `VmLck` of
/// `/proc/self/status`); `None` where the file or the field is missing.
pub fn resident() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((
        field_kib(&s, "VmRSS:")? << 10,
        field_kib(&s, "VmLck:")? << 10,
    ))
}

/// The value of a `Name:   123 kB` line of `/proc/PID/status`, in KiB.
fn field_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
