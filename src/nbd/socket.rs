//! The NBD server's sockets: [`Listener`] (a Unix socket, mode 0600, or TCP) and a
//! client's `Stream`, whose reads can be given a deadline (the handshake's,
//! total, however the client spreads its bytes).
//!
//! # Invariants
//! - A stream's clones share the socket (and its timeouts) but each has its own
//!   deadline; a read past the deadline fails with `TimedOut` without reading.
use crate::{Error, Result};
use std::{
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    os::{
        fd::{AsRawFd, RawFd},
        unix::{
            fs::PermissionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::exports::Peer;

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// A Unix socket (removed when the server stops).
    Unix(UnixListener, PathBuf),
    /// A TCP socket.
    Tcp(TcpListener),
}

impl Listener {
    /// Bind the Unix socket `path` (mode 0600; a stale socket file is replaced; its
    /// directory is created, mode 0700).
    pub fn unix(path: &Path) -> Result<Listener> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(Error::io("create", dir))?;
            }
        }
        // the caller holds the store lock: no live daemon of this store owns it
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(path = %path.display(), "replaced a stale NBD socket"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", path)(e)),
        }
        let l = UnixListener::bind(path).map_err(Error::io("bind", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io("chmod", path))?;
        Ok(Listener::Unix(l, path.to_owned()))
    }

    /// Bind TCP `addr` (`HOST:PORT`).
    pub fn tcp(addr: &str) -> Result<Listener> {
        TcpListener::bind(addr)
            .map(Listener::Tcp)
            .map_err(Error::io("bind", addr))
    }

    /// Where it listens, for `status` (`unix:PATH` or `tcp:HOST:PORT`).
    pub fn address(&self) -> String {
        match self {
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |a| format!("tcp:{a}")),
        }
    }

    pub(super) fn fd(&self) -> RawFd {
        match self {
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    pub(super) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix(l, _) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }

    pub(super) fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Sock::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                // small replies must not wait for Nagle
                let _ = s.set_nodelay(true);
                Sock::Tcp(s)
            }),
        }
        .map(|sock| Stream {
            sock,
            deadline: None,
        })
    }
}

/// A client's socket, and the deadline of its reads (the handshake's).
#[derive(Debug)]
pub(super) struct Stream {
    sock: Sock,
    deadline: Option<Instant>,
}

#[derive(Debug)]
pub(super) enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match &self.sock {
            Sock::Unix(s) => s.set_read_timeout(t),
            Sock::Tcp(s) => s.set_read_timeout(t),
        }
    }
    pub(super) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match &self.sock {
            Sock::Unix(s) => s.set_write_timeout(t),
            Sock::Tcp(s) => s.set_write_timeout(t),
        }
    }
    /// Every read from now on must end by `d` (`None`: reads wait forever).
    pub(super) fn set_deadline(&mut self, d: Option<Instant>) -> io::Result<()> {
        self.deadline = d;
        if d.is_none() {
            self.set_read_timeout(None)?;
        }
        Ok(())
    }
    pub(super) fn set_blocking(&self) -> io::Result<()> {
        match &self.sock {
            Sock::Unix(s) => s.set_nonblocking(false),
            Sock::Tcp(s) => s.set_nonblocking(false),
        }
    }
    pub(super) fn try_clone(&self) -> io::Result<Stream> {
        let sock = match &self.sock {
            Sock::Unix(s) => Sock::Unix(s.try_clone()?),
            Sock::Tcp(s) => Sock::Tcp(s.try_clone()?),
        };
        Ok(Stream {
            sock,
            deadline: self.deadline,
        })
    }
    /// After a refused TLS handshake: stop sending, then read (and drop) what the
    /// client still sends, for at most a second or 1 MiB, so that it reads our
    /// alert instead of a reset.
    pub(super) fn drain_and_close(&mut self) {
        let _ = match &self.sock {
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
        self.deadline = Some(Instant::now() + Duration::from_secs(1));
        let _ = io::copy(&mut Read::by_ref(self).take(1 << 20), &mut io::sink());
    }
    /// Close both directions (another thread's blocked read or write returns).
    pub(super) fn shutdown(&self) {
        let _ = match &self.sock {
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
    pub(super) fn peer(&self) -> io::Result<Peer> {
        Ok(match &self.sock {
            Sock::Unix(s) => Peer::Unix(s.try_clone()?),
            Sock::Tcp(s) => Peer::Tcp(s.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the handshake took too long",
                ));
            }
            self.set_read_timeout(Some(left))?;
        }
        match &mut self.sock {
            Sock::Unix(s) => s.read(b),
            Sock::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match &mut self.sock {
            Sock::Unix(s) => s.write(b),
            Sock::Tcp(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wait up to 200 ms for `fd` to be readable.
pub(super) fn wait_readable(fd: RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call, and nfds is 1.
    unsafe {
        libc::poll(&mut p, 1, 200);
    }
}
