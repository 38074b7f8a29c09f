//! [`Server`]: the NBD listeners (a Unix socket, and TCP when asked) and one thread
//! per connection (handshake, then [`transmission::run`]).
//!
//! # Bounds
//! - At most [`MAX_CONNECTIONS`] connections at once; more are closed at accept.
//! - The handshake must progress within [`HANDSHAKE_TIMEOUT`] per read; the
//!   transmission phase has no timeout (an idle client is a normal client).
//! - A connection that fails (garbage, a vanished client) ends alone; nothing it
//!   did is undone and nobody else notices.
//!
//! # Stopping
//! [`Server::stop`] stops accepting, shuts every connection's socket down (a request
//! being served completes first: its thread only notices at its next read) and
//! joins the threads; then the daemon commits and exits.
use super::{
    exports::{Exports, Peer},
    handshake::{self, Catalog, ExportInfo},
    transmission,
};
use crate::{Error, Result};
use exception_store::{Dev, SharedStore};
use parking_lot::Mutex;
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
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest wait for the next bytes of a handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

    fn fd(&self) -> RawFd {
        match self {
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix(l, _) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                // small replies must not wait for Nagle
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
    }
}

/// A client's socket.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }
    fn set_blocking(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(false),
            Stream::Tcp(s) => s.set_nonblocking(false),
        }
    }
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    fn peer(&self) -> io::Result<Peer> {
        Ok(match self {
            Stream::Unix(s) => Peer::Unix(s.try_clone()?),
            Stream::Tcp(s) => Peer::Tcp(s.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The handshake's view of the export table.
struct StoreCatalog<'a> {
    exports: &'a Exports,
    store: &'a SharedStore,
    chunk: u32,
}

impl Catalog for StoreCatalog<'_> {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        let e = self.exports.get(name)?;
        // the device's size now: an origin grown since an earlier connection shows
        // its new size to this one (fixed for the connection's life)
        let size = self.store.dev_size(e.dev).ok()?;
        Some(ExportInfo {
            description: match &e.snapshot {
                Some(s) => format!("ublk-snap snapshot {s}"),
                None => "ublk-snap origin".into(),
            },
            name: e.name,
            size,
            writable: e.writable,
            preferred_block: self.chunk,
        })
    }
    fn names(&self) -> Vec<String> {
        self.exports.list().into_iter().map(|e| e.name).collect()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    exports: Arc<Exports>,
    acceptors: Vec<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    addresses: Vec<String>,
    unix_paths: Vec<PathBuf>,
}

impl Server {
    /// Serve `exports` of `store` on `listeners`, each from its own thread.
    pub fn start(
        store: Arc<SharedStore>,
        exports: Arc<Exports>,
        listeners: Vec<Listener>,
    ) -> Result<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let addresses = listeners.iter().map(Listener::address).collect();
        let unix_paths = listeners
            .iter()
            .filter_map(|l| match l {
                Listener::Unix(_, p) => Some(p.clone()),
                Listener::Tcp(_) => None,
            })
            .collect();
        let mut acceptors = Vec::new();
        for l in listeners {
            l.set_nonblocking()
                .map_err(Error::io("configure", l.address()))?;
            let (stop, store, exports, conns) =
                (stop.clone(), store.clone(), exports.clone(), conns.clone());
            let t = std::thread::Builder::new()
                .name("nbd-accept".into())
                .spawn(move || accept_loop(&l, &stop, &store, &exports, &conns))
                .map_err(Error::io("start", "the NBD accept thread"))?;
            acceptors.push(t);
        }
        Ok(Server {
            stop,
            exports,
            acceptors,
            conns,
            addresses,
            unix_paths,
        })
    }

    /// Where the server listens (`unix:PATH`, `tcp:HOST:PORT`).
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// See the module documentation.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.acceptors {
            let _ = t.join();
        }
        self.exports.shutdown_all();
        let conns = std::mem::take(&mut *self.conns.lock());
        for t in conns {
            let _ = t.join();
        }
        for p in &self.unix_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Wait up to 200 ms for `fd` to be readable.
fn wait_readable(fd: RawFd) {
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

fn accept_loop(
    l: &Listener,
    stop: &AtomicBool,
    store: &Arc<SharedStore>,
    exports: &Arc<Exports>,
    conns: &Mutex<Vec<JoinHandle<()>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        wait_readable(l.fd());
        let s = match l.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!(listener = %l.address(), error = %e, "NBD accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let mut c = conns.lock();
        c.retain(|t| !t.is_finished());
        if c.len() >= MAX_CONNECTIONS {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "too many NBD connections; closing a new one"
            );
            continue;
        }
        let (store, exports) = (store.clone(), exports.clone());
        let t = std::thread::Builder::new()
            .name("nbd-conn".into())
            .spawn(move || connection(s, &store, &exports));
        match t {
            Ok(t) => c.push(t),
            Err(e) => tracing::warn!(error = %e, "cannot start an NBD connection thread"),
        }
    }
}

fn connection(mut s: Stream, store: &SharedStore, exports: &Exports) {
    let peer = match s.set_blocking().and_then(|()| s.peer()) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "NBD connection setup failed");
            return;
        }
    };
    let id = exports.connect(peer);
    if let Err(e) = session(&mut s, store, exports, id) {
        tracing::info!(error = %e, "NBD connection dropped");
    }
    exports.disconnect(id);
}

fn session(s: &mut Stream, store: &SharedStore, exports: &Exports, id: u64) -> io::Result<()> {
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let chunk = u32::try_from(store.lock().chunk_size()).unwrap_or(u32::MAX);
    let cat = StoreCatalog {
        exports,
        store,
        chunk,
    };
    let Some(n) = handshake::negotiate(s, &cat)? else {
        return Ok(());
    };
    // recorded under the table's lock: an unexport from now on shuts us down
    let Some(e) = exports.attach(id, &n.export.name) else {
        return Ok(());
    };
    let dev: Dev = e.dev;
    s.set_read_timeout(None)?;
    tracing::debug!(export = %e.name, structured = n.structured, contexts = n.contexts.len(), "NBD client attached");
    let w = s.try_clone()?;
    transmission::run(s, w, store, dev, &n)
}
