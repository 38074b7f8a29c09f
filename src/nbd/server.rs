//! [`Server`]: the NBD listeners (a Unix socket, and TCP when asked) and one thread
//! per connection (handshake, then [`transmission::run`]).
//!
//! # Bounds
//! - At most [`MAX_CONNECTIONS`] connections at once; more are closed at accept.
//! - The whole handshake (options, TLS, options over TLS) must end within
//!   [`HANDSHAKE_TIMEOUT`] of the connection's start, however the client spreads
//!   its bytes; the transmission phase has no read timeout (an idle client is a
//!   normal client).
//! - A write that cannot progress for [`WRITE_TIMEOUT`] (a client that stopped
//!   reading its replies) fails, and the connection ends.
//!
//! # Security
//! [`Security`] is checked before anything listens: a TCP listener needs TLS
//! unless the operator said `insecure`. With TLS configured, TCP clients must
//! `STARTTLS` first ([`TlsPolicy::Required`]); the Unix socket (mode 0600) offers it
//! ([`TlsPolicy::Offered`], for `nbds+unix://`) without requiring it.
//! - A client whose handshake named an export is attached to it only if the export
//!   is still the one it looked up (same device, same writability): an unexport or
//!   re-export in between drops the client rather than serve it with stale flags.
//! - A connection that fails (garbage, a vanished client) ends alone; nothing it
//!   did is undone and nobody else notices.
//!
//! # Stopping
//! [`Server::stop`] stops accepting, shuts every connection's socket down (a request
//! being served completes first: its thread only notices at its next read) and
//! joins the threads; then the daemon commits and exits.
use super::{
    exports::{Export, Exports},
    handshake::{self, Catalog, ExportInfo, Negotiated, Outcome, TlsPolicy},
    socket::{wait_readable, Listener, Stream},
    tls::{self, Tls, TlsFiles},
    transmission,
};
use crate::{Error, Result};
use exception_store::{Dev, SharedStore};
use parking_lot::Mutex;
use std::{
    io::{self, Read, Write},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest handshake, from accept to the export chosen (TLS included).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a write to a client may be blocked.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection timeouts ([`HANDSHAKE_TIMEOUT`], [`WRITE_TIMEOUT`] by default;
/// tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest handshake, from accept to the export chosen.
    pub handshake: Duration,
    /// Longest a write to a client may be blocked.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            handshake: HANDSHAKE_TIMEOUT,
            write: WRITE_TIMEOUT,
        }
    }
}

/// Who may connect how: TLS, and whether TCP may go without it.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// The TLS configuration (`None`: no TLS).
    pub tls: Option<Tls>,
    /// TCP without TLS was asked for explicitly.
    pub insecure_tcp: bool,
}

impl Security {
    /// Load `tls` and check the combination: a TCP listener (`tcp`) without TLS is
    /// refused unless `insecure_tcp`.
    pub fn new(tls: Option<&TlsFiles>, tcp: bool, insecure_tcp: bool) -> Result<Security> {
        let tls = tls.map(Tls::load).transpose()?;
        if tcp && tls.is_none() && !insecure_tcp {
            return Err(Error::Invalid(
                "NBD on TCP needs TLS (--nbd-tls-cert and --nbd-tls-key); to serve it in \
                 the clear on a trusted network, add --nbd-listen-insecure"
                    .into(),
            ));
        }
        Ok(Security { tls, insecure_tcp })
    }

    fn policy(&self, l: &Listener) -> TlsPolicy {
        match (l, &self.tls) {
            (_, None) => TlsPolicy::Off,
            (Listener::Unix(..), Some(_)) => TlsPolicy::Offered,
            (Listener::Tcp(_), Some(_)) => TlsPolicy::Required,
        }
    }
}

/// The handshake's view of the export table.
struct StoreCatalog<'a> {
    exports: &'a Exports,
    store: &'a SharedStore,
    chunk: u32,
    /// The export each name was last looked up as (what the client was told).
    seen: Mutex<Vec<Export>>,
}

impl StoreCatalog<'_> {
    /// What the client was told about the export it chose.
    fn told(&self, name: &str) -> Option<Export> {
        self.seen
            .lock()
            .iter()
            .rev()
            .find(|e| e.name == name)
            .cloned()
    }
}

impl Catalog for StoreCatalog<'_> {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        let e = self.exports.get(name)?;
        // the device's size now: an origin grown since an earlier connection shows
        // its new size to this one (fixed for the connection's life)
        let size = self.store.dev_size(e.dev).ok()?;
        {
            let mut seen = self.seen.lock();
            // bounded: a handshake has at most MAX_OPTIONS lookups, keep the last few
            if seen.len() >= 16 {
                seen.remove(0);
            }
            seen.push(e.clone());
        }
        Some(ExportInfo {
            description: match &e.snapshot {
                Some(s) => format!("ublk-snap snapshot {s}"),
                None => "ublk-snap origin".into(),
            },
            bitmaps: super::dirty::candidates(self.store, e.dev),
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
    /// Serve `exports` of `store` on `listeners`, each from its own thread, as
    /// `security` says (checked again here: TCP without TLS needs `insecure_tcp`).
    pub fn start(
        store: Arc<SharedStore>,
        exports: Arc<Exports>,
        listeners: Vec<Listener>,
        security: Security,
    ) -> Result<Server> {
        Server::start_with(store, exports, listeners, security, Timeouts::default())
    }

    /// [`Server::start`] with other timeouts.
    pub fn start_with(
        store: Arc<SharedStore>,
        exports: Arc<Exports>,
        listeners: Vec<Listener>,
        security: Security,
        timeouts: Timeouts,
    ) -> Result<Server> {
        let tcp = listeners.iter().any(|l| matches!(l, Listener::Tcp(_)));
        if tcp && security.tls.is_none() && !security.insecure_tcp {
            return Err(Error::Invalid(
                "NBD on TCP without TLS needs --nbd-listen-insecure".into(),
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        // `tls:HOST:PORT` for a TCP listener that requires TLS (`nbds://` URIs)
        let addresses = listeners
            .iter()
            .map(|l| match security.policy(l) {
                TlsPolicy::Required => l.address().replacen("tcp:", "tls:", 1),
                _ => l.address(),
            })
            .collect();
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
            let ctx = Arc::new(Ctx {
                store: store.clone(),
                exports: exports.clone(),
                policy: security.policy(&l),
                tls: security.tls.clone(),
                timeouts,
            });
            let (stop, conns) = (stop.clone(), conns.clone());
            let t = std::thread::Builder::new()
                .name("nbd-accept".into())
                .spawn(move || accept_loop(&l, &stop, &ctx, &conns))
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

    /// Where the server listens (`unix:PATH`, `tcp:HOST:PORT`, or `tls:HOST:PORT`
    /// for TCP with TLS required).
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

/// What a listener's connections share.
struct Ctx {
    store: Arc<SharedStore>,
    exports: Arc<Exports>,
    policy: TlsPolicy,
    tls: Option<Tls>,
    timeouts: Timeouts,
}

fn accept_loop(
    l: &Listener,
    stop: &AtomicBool,
    ctx: &Arc<Ctx>,
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
        let ctx = ctx.clone();
        let t = std::thread::Builder::new()
            .name("nbd-conn".into())
            .spawn(move || connection(s, &ctx));
        match t {
            Ok(t) => c.push(t),
            Err(e) => tracing::warn!(error = %e, "cannot start an NBD connection thread"),
        }
    }
}

fn connection(mut s: Stream, ctx: &Ctx) {
    // (never fails with a deadline: no syscall)
    let _ = s.set_deadline(Some(Instant::now() + ctx.timeouts.handshake));
    let peer = match s
        .set_blocking()
        .and_then(|()| s.set_write_timeout(Some(ctx.timeouts.write)))
        .and_then(|()| s.peer())
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "NBD connection setup failed");
            return;
        }
    };
    let id = ctx.exports.connect(peer);
    if let Err(e) = session(&mut s, ctx, id) {
        tracing::info!(error = %e, "NBD connection dropped");
    }
    ctx.exports.disconnect(id);
}

fn session(s: &mut Stream, ctx: &Ctx, id: u64) -> io::Result<()> {
    let chunk = u32::try_from(ctx.store.lock().chunk_size()).unwrap_or(u32::MAX);
    let cat = StoreCatalog {
        exports: &ctx.exports,
        store: &ctx.store,
        chunk,
        seen: Mutex::new(Vec::new()),
    };
    let no_zeroes = handshake::greet(s)?;
    match handshake::options(s, &cat, ctx.policy, no_zeroes)? {
        Outcome::Left => Ok(()),
        Outcome::Go(n) => {
            s.set_deadline(None)?;
            let w = s.try_clone()?;
            let killer = s.try_clone()?;
            attach_and_run(s, w, &killer, ctx, &cat, id, &n)
        }
        Outcome::StartTls => {
            let tls = ctx
                .tls
                .as_ref()
                .ok_or_else(|| bad("STARTTLS acknowledged without TLS"))?;
            let mut d = match tls::accept(tls, s.try_clone()?, s.try_clone()?) {
                Ok(d) => d,
                Err(e) => {
                    s.drain_and_close();
                    return Err(e);
                }
            };
            match handshake::options(&mut d, &cat, TlsPolicy::Done, no_zeroes)? {
                Outcome::Go(n) => {
                    d.r.raw_mut().set_deadline(None)?;
                    let killer = s.try_clone()?;
                    attach_and_run(&mut d.r, d.w, &killer, ctx, &cat, id, &n)
                }
                Outcome::Left => Ok(()),
                Outcome::StartTls => Err(bad("a second STARTTLS acknowledged")),
            }
        }
    }
}

/// Attach connection `id` to the export it chose, if that is still what the
/// handshake told the client; then serve it.
fn attach_and_run<R: Read, W: Write + Send>(
    r: &mut R,
    w: W,
    killer: &Stream,
    ctx: &Ctx,
    cat: &StoreCatalog<'_>,
    id: u64,
    n: &Negotiated,
) -> io::Result<()> {
    // recorded under the table's lock: an unexport from now on shuts us down
    let Some(e) = ctx.exports.attach(id, &n.export.name) else {
        return Ok(());
    };
    if !still_told(cat, &e, n) {
        tracing::info!(export = %e.name, "NBD export changed during the handshake; dropping the client");
        return Ok(());
    }
    let dev: Dev = e.dev;
    tracing::debug!(export = %e.name, structured = n.structured, contexts = n.contexts.len(), "NBD client attached");
    transmission::run(r, w, &ctx.store, dev, n, &|| killer.shutdown())
}

/// Whether export `e` (what the client is about to be attached to) is still the one
/// the handshake told it about: same device, same writability.
fn still_told(cat: &StoreCatalog<'_>, e: &Export, n: &Negotiated) -> bool {
    cat.told(&n.export.name).as_ref() == Some(e) && e.writable == n.export.writable
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests;
