//! Daemon mode: detaching from the terminal and telling the parent when the daemon
//! is ready.
//!
//! # Daemon mode
//! The parent re-executes itself with a hidden flag ([`CHILD_FLAG`]) as a detached
//! child (a new session, stdin on `/dev/null`, stdout a pipe back to the parent) —
//! a fresh exec rather than a `fork` of a process that may already run threads. The
//! child writes one readiness line to that pipe, `READY /dev/ublkbN` once the devices
//! and the socket exist or `FAILED <exit code> <message>`, and then points its stdout
//! at `/dev/null`. The parent prints the device (or the message) and exits 0 (or the
//! child's code). Logs go to stderr, which the child inherits (under systemd that is
//! the journal).
use crate::{Error, Result};
use std::{
    cell::Cell,
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
    process::{Command, Stdio},
};

/// The hidden flag that marks the detached child.
pub const CHILD_FLAG: &str = "--daemon-child";

/// How the detached child ended the parent's wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Serving; the origin's device.
    Ready(String),
    /// The child failed before it was ready.
    Failed {
        /// Its exit code.
        code: u8,
        /// Its error.
        message: String,
    },
}

/// Parent side: start the detached child with our own arguments plus [`CHILD_FLAG`]
/// and wait for its readiness line.
pub fn detach() -> Result<Outcome> {
    let exe = std::env::current_exe().map_err(Error::io("find", "/proc/self/exe"))?;
    let mut child = Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .arg(CHILD_FLAG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(Error::io("start", &exe))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        // An error here reads as "no line", handled below.
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if let Some(dev) = line.strip_prefix("READY ") {
        return Ok(Outcome::Ready(dev.trim_end().to_owned()));
    }
    if let Some(rest) = line.strip_prefix("FAILED ") {
        let (code, message) = rest.trim_end().split_once(' ').unwrap_or((rest, ""));
        let _ = child.wait();
        return Ok(Outcome::Failed {
            code: code.parse().unwrap_or(crate::exit::IO),
            message: message.to_owned(),
        });
    }
    let status = child.wait().map_err(Error::io("wait for", &exe))?;
    Ok(Outcome::Failed {
        code: crate::exit::IO,
        message: format!("the daemon exited before it was ready ({status})"),
    })
}

/// Child side: leave the parent's session and working directory.
pub fn enter_child() -> Result<()> {
    nix::unistd::setsid().map_err(|e| Error::io("setsid", "/")(e.into()))?;
    std::env::set_current_dir("/").map_err(Error::io("chdir", "/"))?;
    Ok(())
}

/// Reports readiness: to the waiting parent (daemon mode) or on stdout (foreground).
#[derive(Debug)]
pub struct Readiness {
    child: bool,
    done: Cell<bool>,
}

impl Readiness {
    /// `child`: we are the detached child of [`detach`].
    pub fn new(child: bool) -> Self {
        Readiness {
            child,
            done: Cell::new(false),
        }
    }

    /// Whether the daemon is the detached child.
    pub fn is_child(&self) -> bool {
        self.child
    }

    /// The devices and the socket exist.
    pub fn ready(&self, device: &str) {
        if self.done.replace(true) {
            return;
        }
        let mut out = std::io::stdout().lock();
        let line = if self.child {
            format!("READY {device}\n")
        } else {
            format!("{device}\n")
        };
        // If nobody reads, there is nobody to tell.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        drop(out);
        if self.child {
            if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                if let Err(e) = nix::unistd::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) {
                    tracing::warn!(error = %e, "cannot point stdout at /dev/null");
                }
            }
        }
    }

    /// Startup failed; returns whether the parent was told (so the caller need not
    /// print the error itself).
    pub fn failed(&self, code: u8, message: &str) -> bool {
        if !self.child || self.done.replace(true) {
            return false;
        }
        let line = format!("FAILED {code} {}\n", message.replace('\n', " "));
        let _ = std::io::stdout().write_all(line.as_bytes());
        true
    }
}
