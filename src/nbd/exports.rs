//! [`Exports`]: the table of NBD exports (export name -> store device, writable or
//! not) and the connections open on each, shared by the control service (which
//! adds and removes exports) and the NBD server (which looks them up at the
//! handshake).
//!
//! # Invariants
//! - An export name is unique; a store device may have several exports.
//! - Removing an export shuts down every connection open on it (their next read
//!   fails and the connection thread ends); a command in progress finishes first.
use exception_store::Dev;
use parking_lot::Mutex;
use std::{
    collections::BTreeMap,
    net::Shutdown,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

/// One export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The name clients ask for.
    pub name: String,
    /// The device it serves.
    pub dev: Dev,
    /// The snapshot's name (`None`: the origin), for listings.
    pub snapshot: Option<String>,
    /// Whether clients may write.
    pub writable: bool,
}

/// A connection's socket, kept so that it can be shut down from another thread.
#[derive(Debug)]
pub enum Peer {
    /// A Unix-socket client.
    Unix(std::os::unix::net::UnixStream),
    /// A TCP client.
    Tcp(std::net::TcpStream),
}

impl Peer {
    fn shutdown(&self) {
        // An error means the socket is closed already.
        let _ = match self {
            Peer::Unix(s) => s.shutdown(Shutdown::Both),
            Peer::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

#[derive(Debug, Default)]
struct Inner {
    exports: BTreeMap<String, Export>,
    /// connection id -> (export name, or "" during the handshake; its socket)
    conns: BTreeMap<u64, (String, Peer)>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Exports {
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
}

impl Exports {
    /// An empty table.
    pub fn new() -> Arc<Exports> {
        Arc::default()
    }

    /// Add (or replace, with the same name) an export. A replaced export's
    /// connections are shut down (they were opened with the old settings).
    pub fn insert(&self, e: Export) {
        let mut g = self.inner.lock();
        if let Some(old) = g.exports.insert(e.name.clone(), e.clone()) {
            if old != e {
                shutdown_on(&mut g, &e.name);
            }
        }
    }

    /// Remove an export and shut down its connections.
    pub fn remove(&self, name: &str) -> Option<Export> {
        let mut g = self.inner.lock();
        let e = g.exports.remove(name)?;
        shutdown_on(&mut g, name);
        Some(e)
    }

    /// The export named `name`; the empty name selects the only export, if there is
    /// exactly one (what `nbd+unix:///?socket=...` asks for).
    pub fn get(&self, name: &str) -> Option<Export> {
        resolve(&self.inner.lock(), name)
    }

    /// The export named exactly `name`.
    pub fn get_exact(&self, name: &str) -> Option<Export> {
        self.inner.lock().exports.get(name).cloned()
    }

    /// Every export, by name.
    pub fn list(&self) -> Vec<Export> {
        self.inner.lock().exports.values().cloned().collect()
    }

    /// The exports of `dev`.
    pub fn of(&self, dev: Dev) -> Vec<Export> {
        self.list().into_iter().filter(|e| e.dev == dev).collect()
    }

    /// Open connections per export name.
    pub fn connections(&self) -> BTreeMap<String, usize> {
        let g = self.inner.lock();
        let mut m = BTreeMap::new();
        for (name, _) in g.conns.values() {
            *m.entry(name.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Register a new connection (still in its handshake); returns its id.
    pub fn connect(&self, peer: Peer) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().conns.insert(id, (String::new(), peer));
        id
    }

    /// The connection chose `export`: returns it if it still exists (checked and
    /// recorded under one lock, so a concurrent removal shuts this connection down).
    pub fn attach(&self, id: u64, export: &str) -> Option<Export> {
        let mut g = self.inner.lock();
        let e = resolve(&g, export)?;
        if let Some(c) = g.conns.get_mut(&id) {
            c.0 = e.name.clone();
        }
        Some(e)
    }

    /// The connection ended.
    pub fn disconnect(&self, id: u64) {
        self.inner.lock().conns.remove(&id);
    }

    /// Shut down every connection (daemon shutdown).
    pub fn shutdown_all(&self) {
        let g = self.inner.lock();
        for (_, p) in g.conns.values() {
            p.shutdown();
        }
    }
}

fn resolve(g: &Inner, name: &str) -> Option<Export> {
    if name.is_empty() && g.exports.len() == 1 {
        return g.exports.values().next().cloned();
    }
    g.exports.get(name).cloned()
}

fn shutdown_on(g: &mut Inner, export: &str) {
    for (name, p) in g.conns.values() {
        if name == export {
            p.shutdown();
        }
    }
}
