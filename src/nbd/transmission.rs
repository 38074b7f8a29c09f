//! The transmission phase of one connection: read a request, check it
//! ([`request::check`]), serve it on the shared store, reply; until the client
//! disconnects, breaks the framing, or its export is removed.
//!
//! Up to [`WORKERS`] requests of a connection are served at once, replies in
//! completion order (as the protocol allows; clients match them by cookie), and
//! clients may open several connections: the export advertises
//! `NBD_FLAG_CAN_MULTI_CONN`, see below. The data path is the ublk devices' own:
//! [`SharedStore::read`], [`SharedStore::write`] (origin writes copy out first),
//! [`SharedStore::discard`], [`SharedStore::write_zeroes`], and a FLUSH is
//! [`SharedStore::flush`]: one commit of the whole store plus a flush of the origin.
//!
//! # Multiple connections
//! Every connection writes through the same store and the same origin descriptor,
//! and a FLUSH commits the store's single open transaction (every completed write's
//! mapping) and flushes the origin file (every completed write's data): so a FLUSH
//! on any connection makes every connection's completed writes durable, which is
//! what `NBD_FLAG_CAN_MULTI_CONN` promises (test `nbd_multi_conn_flush`).
use super::{
    block_status,
    consts::*,
    handshake::Negotiated,
    request::{self, Request, Shape, Verdict, REQUEST_LEN},
};
use exception_store::{Dev, SharedStore};
use parking_lot::Mutex;
use std::{
    io::{self, Read, Write},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

/// Largest piece a CACHE or a NO_HOLE WRITE_ZEROES handles at once.
const PIECE: usize = 1 << 20;

/// The NBD error for a store error.
pub fn nbd_errno(e: &exception_store::Error) -> u32 {
    match e.errno() {
        libc::ENOSPC => ENOSPC,
        libc::EINVAL => EINVAL,
        libc::EPERM | libc::EROFS => EPERM,
        libc::ENOMEM => ENOMEM,
        libc::EOPNOTSUPP => ENOTSUP,
        _ => EIO,
    }
}

/// Requests of one connection served at once (each on its own thread).
pub const WORKERS: usize = 4;

/// Serve requests read from `r` for the export `n` negotiated, on device `dev`,
/// replies written to `w`. Up to [`WORKERS`] requests are served at once (the
/// protocol lets replies come in any order; each reply is written whole under one
/// lock). Returns when the client disconnects (after the requests in flight are
/// answered); an error when the stream broke.
pub fn run<R: Read, W: Write + Send>(
    r: &mut R,
    w: W,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
) -> io::Result<()> {
    let w = Mutex::new(w);
    let broken = AtomicBool::new(false);
    let (tx, rx) = mpsc::sync_channel::<(Request, Vec<u8>)>(WORKERS * 4);
    let rx = Mutex::new(rx);
    std::thread::scope(|sc| {
        for _ in 0..WORKERS {
            sc.spawn(|| loop {
                let job = rx.lock().recv();
                let Ok((req, payload)) = job else {
                    return;
                };
                let mut out = Vec::new();
                // writing into a Vec cannot fail
                let _ = serve(&mut out, store, dev, n, &req, &payload);
                if !broken.load(Ordering::Relaxed) && w.lock().write_all(&out).is_err() {
                    broken.store(true, Ordering::Relaxed);
                }
            });
        }
        let res = read_loop(r, &w, &tx, n);
        drop(tx);
        res
    })
}

/// Read requests until the client leaves; hand each to the workers.
fn read_loop<R: Read, W: Write>(
    r: &mut R,
    w: &Mutex<W>,
    tx: &mpsc::SyncSender<(Request, Vec<u8>)>,
    n: &Negotiated,
) -> io::Result<()> {
    let shape = Shape {
        size: n.export.size,
        writable: n.export.writable,
        structured: n.structured,
        has_contexts: !n.contexts.is_empty(),
    };
    loop {
        let mut h = [0u8; REQUEST_LEN];
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let req = request::decode(&h).ok_or_else(|| bad("request without its magic"))?;
        let verdict = request::check(&req, &shape);
        let mut payload = Vec::new();
        if req.cmd == CMD_WRITE && verdict != Verdict::Fatal {
            payload.resize(req.len as usize, 0);
            r.read_exact(&mut payload)?;
        }
        match verdict {
            Verdict::Fatal => return Err(bad("write larger than the maximum payload")),
            Verdict::Disconnect => return Ok(()),
            Verdict::Error(e) => {
                let mut out = Vec::new();
                error(&mut out, n, &req, e, "request refused")?;
                w.lock().write_all(&out)?;
            }
            Verdict::Serve => {
                if tx.send((req, payload)).is_err() {
                    return Err(bad("the workers are gone"));
                }
            }
        }
    }
}

fn serve(
    s: &mut Vec<u8>,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
    r: &Request,
    payload: &[u8],
) -> io::Result<()> {
    let fua = r.flags & CMD_FLAG_FUA != 0;
    let len = u64::from(r.len);
    let done = match r.cmd {
        CMD_READ => return read(s, store, dev, n, r),
        CMD_BLOCK_STATUS => return status(s, store, dev, n, r),
        CMD_WRITE => store.write(dev, r.offset, payload),
        CMD_FLUSH => store.flush().map(drop),
        CMD_TRIM => store.discard(dev, r.offset, len),
        CMD_WRITE_ZEROES if r.flags & CMD_FLAG_NO_HOLE != 0 => zero_data(store, dev, r),
        CMD_WRITE_ZEROES => store.write_zeroes(dev, r.offset, len),
        CMD_CACHE => cache(store, dev, r),
        _ => return error(s, n, r, EINVAL, "unknown command"),
    };
    let done = match done {
        Ok(()) if fua => store.flush().map(drop),
        other => other,
    };
    match done {
        Ok(()) => s.write_all(&request::simple_reply(r.cookie, 0)),
        Err(e) => {
            tracing::warn!(?dev, cmd = r.cmd, offset = r.offset, error = %e, "NBD request failed");
            error(s, n, r, nbd_errno(&e), &e.to_string())
        }
    }
}

/// A read's reply, built in `s` (the data read straight into it).
fn read(
    s: &mut Vec<u8>,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
    r: &Request,
) -> io::Result<()> {
    if r.len == 0 && n.structured {
        let done = request::chunk_header(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0);
        return s.write_all(&done);
    }
    let head = if n.structured {
        request::offset_data_header(r.cookie, r.offset, r.len)
    } else {
        request::simple_reply(r.cookie, 0)
    };
    let at = s.len();
    s.extend_from_slice(&head);
    s.resize(at + head.len() + r.len as usize, 0);
    match store.read(dev, r.offset, &mut s[at + head.len()..]) {
        Ok(()) => Ok(()),
        Err(e) => {
            s.truncate(at);
            tracing::warn!(?dev, offset = r.offset, error = %e, "NBD read failed");
            error(s, n, r, nbd_errno(&e), &e.to_string())
        }
    }
}

fn status<S: Write>(
    s: &mut S,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
    r: &Request,
) -> io::Result<()> {
    let map = match store.map(dev, r.offset, u64::from(r.len)) {
        Ok(m) => m,
        Err(e) => return error(s, n, r, nbd_errno(&e), &e.to_string()),
    };
    let runs = block_status::runs(&map, &n.contexts, r.flags & CMD_FLAG_REQ_ONE != 0);
    let mut out = Vec::new();
    for (i, c) in n.contexts.iter().enumerate() {
        let done = i + 1 == n.contexts.len();
        let d = block_status::descriptors(&runs, *c);
        out.extend_from_slice(&request::block_status_chunk(r.cookie, done, c.id(), &d));
    }
    s.write_all(&out)
}

/// WRITE_ZEROES with NO_HOLE: write zero data, so the range stays allocated.
fn zero_data(store: &SharedStore, dev: Dev, r: &Request) -> exception_store::Result<()> {
    let zeros = vec![0u8; PIECE.min(r.len as usize)];
    let mut done = 0u64;
    while done < u64::from(r.len) {
        let n = (u64::from(r.len) - done).min(PIECE as u64) as usize;
        store.write(dev, r.offset + done, &zeros[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// CACHE: read the range (into a scratch buffer), which loads its metadata into the
/// store's cache and its data into the page cache.
fn cache(store: &SharedStore, dev: Dev, r: &Request) -> exception_store::Result<()> {
    let mut scratch = vec![0u8; PIECE.min(r.len as usize)];
    let mut done = 0u64;
    while done < u64::from(r.len) {
        let n = (u64::from(r.len) - done).min(PIECE as u64) as usize;
        store.read(dev, r.offset + done, &mut scratch[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// Answer `r` with error `e`: a structured error chunk for reads and block status
/// when structured replies are on, else a simple reply.
fn error<S: Write>(s: &mut S, n: &Negotiated, r: &Request, e: u32, msg: &str) -> io::Result<()> {
    if n.structured && matches!(r.cmd, CMD_READ | CMD_BLOCK_STATUS) {
        s.write_all(&request::error_chunk(r.cookie, e, msg))
    } else {
        s.write_all(&request::simple_reply(r.cookie, e))
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}
