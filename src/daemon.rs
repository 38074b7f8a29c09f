//! Running the daemon: [`serve`] (the foreground loop), and daemon mode.
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
use crate::{
    control::{self, Limits},
    service::{Config, Service},
    worker::Worker,
    Error, Result,
};
use std::{
    cell::Cell,
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
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

/// Run the daemon until SIGTERM or SIGINT: open the store, start (or recover) the
/// devices, serve the socket, then shut down cleanly (stop the devices, commit).
pub fn serve(cfg: Config, socket: &Path, ready: &Readiness) -> Result<()> {
    // NBD's TLS files and the TCP-without-TLS refusal: checked before anything starts
    let nbd_security = crate::nbd::Security::new(
        cfg.nbd_tls.as_ref(),
        cfg.nbd_listen.is_some(),
        cfg.nbd_insecure,
    )?;
    ublk_target::check_available()?;
    let cfg_nbd = (cfg.nbd_socket.clone(), cfg.nbd_listen.clone());
    let service = Arc::new(Service::open(cfg)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("start", "the tokio runtime"))?;
    let (mut term, mut int) = rt
        .block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate())?;
            let int = signal(SignalKind::interrupt())?;
            Ok::<_, std::io::Error>((term, int))
        })
        .map_err(Error::io("install", "signal handlers"))?;
    let sock = rt.block_on(async { control::bind(socket) })?;
    let mut listeners = Vec::new();
    if let Some(p) = &cfg_nbd.0 {
        listeners.push(crate::nbd::Listener::unix(p)?);
    }
    if let Some(a) = &cfg_nbd.1 {
        listeners.push(crate::nbd::Listener::tcp(a)?);
    }
    let origin = match service.start_devices() {
        Ok(p) => p,
        Err(e) => {
            service.abort();
            return Err(e);
        }
    };
    let tick: Box<dyn Fn() + Send> = {
        let s = service.clone();
        Box::new(move || s.start_deferred_merge())
    };
    let worker = Worker::start(service.store().clone(), service.progress().clone(), tick)
        .map_err(Error::io("start", "the worker"));
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            service.abort();
            return Err(e);
        }
    };
    let nbd = crate::nbd::Server::start(
        service.store().clone(),
        service.exports().clone(),
        listeners,
        nbd_security,
    );
    let nbd = match nbd {
        Ok(n) => n,
        Err(e) => {
            worker.stop();
            service.abort();
            return Err(e);
        }
    };
    service.set_nbd_listen(nbd.addresses().to_vec());
    tracing::info!(device = %origin, socket = %socket.display(), nbd = ?nbd.addresses(), "ready");
    ready.ready(&origin);
    let handler: control::Handler = {
        let s = service.clone();
        Arc::new(move |op| s.handle(op))
    };
    let streams: control::StreamHandler = {
        let s = service.clone();
        Arc::new(move |op, conn, leftover| s.handle_stream(op, conn, leftover))
    };
    let limits = Limits::default();
    rt.block_on(control::serve_with(
        sock,
        handler,
        Some(streams),
        limits,
        async {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        },
    ));
    nbd.stop();
    worker.stop();
    let r = service.shutdown();
    drop(rt);
    r
}
