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
//! # Any request size, bounded memory
//! READ and WRITE may be as long as the export (whatever `NBD_INFO_BLOCK_SIZE`
//! said; a WRITE longer than the export drops the connection). Data moves in
//! pieces of at most [`PIECE`] bytes:
//! - a READ is read and sent piece by piece (a structured reply sends one
//!   `OFFSET_DATA` chunk per piece, or one chunk for all with `NBD_CMD_FLAG_DF`,
//!   its data still sent piece by piece; a reply whose read fails after a header
//!   promised the data drops the connection, as the protocol requires);
//! - a WRITE of at most [`PIECE`] bytes is read whole, then queued for the workers
//!   while the connection's queued payloads stay under [`QUEUED_MAX`]; any other
//!   WRITE is streamed: the reading thread writes each piece to the store as it
//!   arrives (a client that vanishes in the middle may leave part of it written,
//!   which an unacknowledged write may do);
//! - TRIM and WRITE_ZEROES run in steps of [`STEP_CHUNKS`] chunks, each one store
//!   call (the store's lock is let go between steps); CACHE and zeroing with
//!   `NO_HOLE` in pieces; a BLOCK_STATUS asks the store in windows of
//!   [`WINDOW_CHUNKS`] chunks and stops once it has [`STATUS_MAX_EXTENTS`]
//!   extents (the client asks again for the rest).
//!
//! So a connection holds at most: [`QUEUED_MAX`] of queued write payloads, one
//! piece on its reading thread, one piece per worker, and per worker a BLOCK_STATUS
//! reply of at most about [`STATUS_MAX_EXTENTS`] extents per context plus one
//! window's map; about 3 MiB (docs/cli.md).
//!
//! A reply that cannot be written (the socket's write timeout, a client that
//! stopped reading) marks the connection broken: the `shutdown` callback closes
//! the socket, the reading thread stops at once, and the workers write nothing
//! more.
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
    dirty,
    handshake::Negotiated,
    request::{self, Request, Shape, Verdict, REQUEST_LEN},
};
use exception_store::{Dev, SharedStore};
use parking_lot::Mutex;
use std::{
    io::{self, Read, Write},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
};

/// Largest piece of data a connection handles at once (a READ's or a streamed
/// WRITE's piece, CACHE's and NO_HOLE zeroing's buffer).
pub const PIECE: usize = 256 << 10;
/// Write payloads queued for a connection's workers, at most (bytes).
pub const QUEUED_MAX: usize = 1 << 20;
/// TRIM and WRITE_ZEROES run in steps of this many chunks.
pub const STEP_CHUNKS: u64 = 1024;
/// BLOCK_STATUS asks the store about at most this many chunks per call (so per
/// hold of its lock).
pub const WINDOW_CHUNKS: u64 = 4096;
/// A BLOCK_STATUS reply stops asking for more windows once a context has this
/// many extents (its memory).
pub const STATUS_MAX_EXTENTS: usize = 4096;

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

/// What the reading thread and the workers of one connection share.
struct Conn<'a, W> {
    w: Mutex<W>,
    store: &'a SharedStore,
    dev: Dev,
    n: &'a Negotiated,
    /// The export's chunk size (steps are whole chunks).
    chunk: u64,
    /// A reply could not be written: write nothing more, read nothing more.
    broken: AtomicBool,
    /// Bytes of write payloads queued or being served by the workers.
    queued: AtomicUsize,
    shutdown: &'a (dyn Fn() + Sync),
}

impl<W: Write> Conn<'_, W> {
    /// Write a whole reply (unless the connection is broken).
    fn send(&self, out: &[u8]) -> io::Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(gone());
        }
        let r = self.w.lock().write_all(out);
        r.inspect_err(|_| self.fail())
    }

    fn fail(&self) {
        if !self.broken.swap(true, Ordering::SeqCst) {
            (self.shutdown)();
        }
    }
}

/// Serve requests read from `r` for the export `n` negotiated, on device `dev`,
/// replies written to `w`. Up to [`WORKERS`] requests are served at once (the
/// protocol lets replies come in any order; each reply is written whole under one
/// lock). `shutdown` closes the connection's socket (called once, when a reply
/// cannot be written). Returns when the client disconnects (after the requests in
/// flight are answered); an error when the stream broke.
pub fn run<R: Read, W: Write + Send>(
    r: &mut R,
    w: W,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
    shutdown: &(dyn Fn() + Sync),
) -> io::Result<()> {
    let c = Conn {
        w: Mutex::new(w),
        store,
        dev,
        n,
        chunk: u64::from(n.export.preferred_block.max(1)),
        broken: AtomicBool::new(false),
        queued: AtomicUsize::new(0),
        shutdown,
    };
    let (tx, rx) = mpsc::sync_channel::<(Request, Vec<u8>)>(WORKERS * 4);
    let rx = Mutex::new(rx);
    std::thread::scope(|sc| {
        for _ in 0..WORKERS {
            sc.spawn(|| loop {
                let job = rx.lock().recv();
                let Ok((req, payload)) = job else {
                    return;
                };
                if !c.broken.load(Ordering::Relaxed) {
                    // an error has marked the connection broken already
                    let _ = serve(&c, &req, &payload);
                }
                c.queued.fetch_sub(payload.len(), Ordering::Relaxed);
            });
        }
        let res = read_loop(r, &c, &tx);
        drop(tx);
        res
    })
}

/// Read requests until the client leaves; hand each to the workers (or stream it).
fn read_loop<R: Read, W: Write>(
    r: &mut R,
    c: &Conn<'_, W>,
    tx: &mpsc::SyncSender<(Request, Vec<u8>)>,
) -> io::Result<()> {
    let n = c.n;
    let shape = Shape {
        size: n.export.size,
        writable: n.export.writable,
        structured: n.structured,
        has_contexts: !n.contexts.is_empty() || !n.bitmaps.is_empty(),
    };
    loop {
        if c.broken.load(Ordering::Relaxed) {
            return Err(gone());
        }
        let mut h = [0u8; REQUEST_LEN];
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let req = request::decode(&h).ok_or_else(|| bad("request without its magic"))?;
        let len = req.len as usize;
        match request::check(&req, &shape) {
            Verdict::Fatal => return Err(bad("a write longer than the export")),
            Verdict::Disconnect => return Ok(()),
            Verdict::Error(e) => {
                if req.cmd == CMD_WRITE {
                    // the payload is read and dropped (apply = false: nothing written)
                    let _ = stream_write(r, c, &req, false)?;
                }
                let mut out = Vec::new();
                error(&mut out, n, &req, e, "request refused")?;
                c.send(&out)?;
            }
            Verdict::Serve if req.cmd == CMD_WRITE => {
                let queued = c.queued.load(Ordering::Relaxed);
                if len > PIECE || queued + len > QUEUED_MAX {
                    let res = stream_write(r, c, &req, true)?;
                    let mut out = Vec::new();
                    reply(&mut out, c, &req, res)?;
                    c.send(&out)?;
                    continue;
                }
                let mut payload = vec![0u8; len];
                r.read_exact(&mut payload)?;
                c.queued.fetch_add(len, Ordering::Relaxed);
                if tx.send((req, payload)).is_err() {
                    return Err(bad("the workers are gone"));
                }
            }
            Verdict::Serve => {
                if tx.send((req, Vec::new())).is_err() {
                    return Err(bad("the workers are gone"));
                }
            }
        }
    }
}

/// Read a WRITE's payload piece by piece; with `apply`, write each piece to the
/// store (after a failure the rest is read and dropped). Returns the store's
/// verdict; an error only when the stream broke.
fn stream_write<R: Read, W>(
    r: &mut R,
    c: &Conn<'_, W>,
    req: &Request,
    apply: bool,
) -> io::Result<exception_store::Result<()>> {
    let total = u64::from(req.len);
    let mut buf = vec![0u8; PIECE.min(req.len as usize)];
    let mut res = Ok(());
    let mut done = 0u64;
    while done < total {
        let k = (total - done).min(PIECE as u64) as usize;
        r.read_exact(&mut buf[..k])?;
        if apply && res.is_ok() {
            res = c.store.write(c.dev, req.offset + done, &buf[..k]);
        }
        done += k as u64;
    }
    Ok(res)
}

fn serve<W: Write>(c: &Conn<'_, W>, r: &Request, payload: &[u8]) -> io::Result<()> {
    let (store, dev) = (c.store, c.dev);
    let done = match r.cmd {
        CMD_READ => return read(c, r),
        CMD_BLOCK_STATUS => return status(c, r),
        CMD_WRITE => store.write(dev, r.offset, payload),
        CMD_FLUSH => store.flush(dev).map(drop),
        CMD_TRIM => stepped(c, r, |o, l| store.discard(dev, o, l)),
        CMD_WRITE_ZEROES if r.flags & CMD_FLAG_NO_HOLE != 0 => zero_data(store, dev, r),
        CMD_WRITE_ZEROES => stepped(c, r, |o, l| store.write_zeroes(dev, o, l)),
        CMD_CACHE => cache(store, dev, r),
        _ => {
            let mut out = Vec::new();
            error(&mut out, c.n, r, EINVAL, "unknown command")?;
            return c.send(&out);
        }
    };
    let mut out = Vec::new();
    reply(&mut out, c, r, done)?;
    c.send(&out)
}

/// The reply to a request other than READ and BLOCK_STATUS, after a FUA flush.
fn reply<W>(
    out: &mut Vec<u8>,
    c: &Conn<'_, W>,
    r: &Request,
    done: exception_store::Result<()>,
) -> io::Result<()> {
    let fua = r.flags & CMD_FLAG_FUA != 0;
    let done = match done {
        Ok(()) if fua => c.store.flush(c.dev).map(drop),
        other => other,
    };
    match done {
        Ok(()) => out.write_all(&request::simple_reply(r.cookie, 0)),
        Err(e) => {
            tracing::warn!(dev = ?c.dev, cmd = r.cmd, offset = r.offset, error = %e, "NBD request failed");
            error(out, c.n, r, nbd_errno(&e), &e.to_string())
        }
    }
}

/// `f` over the request's range in steps of [`STEP_CHUNKS`] chunks, cut at
/// multiples of the step (so at chunk boundaries: the same result as one call).
fn stepped(
    c: &Conn<'_, impl Sized>,
    r: &Request,
    f: impl Fn(u64, u64) -> exception_store::Result<()>,
) -> exception_store::Result<()> {
    let step = STEP_CHUNKS * c.chunk;
    let end = r.offset + u64::from(r.len);
    let mut at = r.offset;
    while at < end {
        let next = (at / step + 1) * step;
        let e = next.min(end);
        f(at, e - at)?;
        at = e;
    }
    Ok(())
}

/// A READ, sent piece by piece under the writer's lock (taken once the first
/// piece is read, so that an error before any data is a plain error reply).
fn read<W: Write>(c: &Conn<'_, W>, r: &Request) -> io::Result<()> {
    let n = c.n;
    if r.len == 0 {
        let out = if n.structured {
            request::chunk_header(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0)
        } else {
            request::simple_reply(r.cookie, 0)
        };
        return c.send(&out);
    }
    // NBD_CMD_FLAG_DF: one OFFSET_DATA chunk, its data still sent piece by piece
    let one_chunk = n.structured && r.flags & CMD_FLAG_DF != 0;
    if one_chunk && r.len > u32::MAX - 8 {
        let mut out = Vec::new();
        error(&mut out, n, r, EOVERFLOW, "too long for one chunk")?;
        return c.send(&out);
    }
    let total = u64::from(r.len);
    let mut buf = vec![0u8; PIECE.min(r.len as usize)];
    let mut w: Option<parking_lot::MutexGuard<'_, W>> = None;
    let mut done = 0u64;
    while done < total {
        let k = (total - done).min(PIECE as u64) as usize;
        let at = r.offset + done;
        if let Err(e) = c.store.read(c.dev, at, &mut buf[..k]) {
            tracing::warn!(dev = ?c.dev, offset = at, error = %e, "NBD read failed");
            if done > 0 && (!n.structured || one_chunk) {
                // the reply's header promised the data
                c.fail();
                return Err(bad("a read failed after its reply began"));
            }
            let mut out = Vec::new();
            error(&mut out, n, r, nbd_errno(&e), &e.to_string())?;
            return match w.as_mut() {
                Some(g) => write_or_fail(c, &mut **g, &out),
                None => c.send(&out),
            };
        }
        if c.broken.load(Ordering::Relaxed) {
            return Err(gone());
        }
        let g = w.get_or_insert_with(|| c.w.lock());
        let mut head = if one_chunk && done == 0 {
            let mut h =
                request::chunk_header(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, r.len + 8);
            crate::nbd::be::put_u64(&mut h, r.offset);
            h
        } else if one_chunk {
            Vec::new()
        } else if n.structured {
            let last = done + k as u64 == total;
            let flags = if last { REPLY_FLAG_DONE } else { 0 };
            let mut h =
                request::chunk_header(r.cookie, flags, REPLY_TYPE_OFFSET_DATA, k as u32 + 8);
            crate::nbd::be::put_u64(&mut h, at);
            h
        } else if done == 0 {
            request::simple_reply(r.cookie, 0)
        } else {
            Vec::new()
        };
        head.extend_from_slice(&buf[..k]);
        write_or_fail(c, &mut **g, &head)?;
        done += k as u64;
    }
    Ok(())
}

fn write_or_fail<W: Write>(c: &Conn<'_, W>, g: &mut W, b: &[u8]) -> io::Result<()> {
    g.write_all(b).inspect_err(|_| c.fail())
}

fn status<W: Write>(c: &Conn<'_, W>, r: &Request) -> io::Result<()> {
    match status_reply(c, r) {
        Ok(out) => c.send(&out),
        Err(e) => {
            // (a bitmap's snapshot deleted since the handshake, an I/O error): an
            // error is the whole reply
            let mut out = Vec::new();
            error(&mut out, c.n, r, nbd_errno(&e), &e.to_string())?;
            c.send(&out)
        }
    }
}

/// The request's range in windows of [`WINDOW_CHUNKS`] chunks, cut at multiples
/// of the window: `(offset, len)`.
fn windows(offset: u64, len: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let step = WINDOW_CHUNKS * chunk;
    let end = offset + len;
    let mut at = offset;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let e = ((at / step + 1) * step).min(end);
            let w = (at, e - at);
            at = e;
            w
        })
    })
}

/// A BLOCK_STATUS reply: the fixed contexts from the store's map, then the dirty
/// bitmaps from its diff, each walked in windows (one store call, one lock hold,
/// each) until the range ends or [`STATUS_MAX_EXTENTS`] extents were found (or
/// the first window, with `REQ_ONE`); the reply then covers less than asked, as
/// the protocol allows.
fn status_reply<W>(c: &Conn<'_, W>, r: &Request) -> exception_store::Result<Vec<u8>> {
    let n = c.n;
    let req_one = r.flags & CMD_FLAG_REQ_ONE != 0;
    let len = u64::from(r.len);
    let mut runs = Vec::new();
    let mut covered = len;
    if !n.contexts.is_empty() {
        covered = 0;
        for (o, l) in windows(r.offset, len, c.chunk) {
            let map = c.store.map(c.dev, o, l)?;
            block_status::extend_runs(&mut runs, &map, &n.contexts);
            covered = o + l - r.offset;
            if req_one || runs.len() >= STATUS_MAX_EXTENTS {
                break;
            }
        }
        runs.truncate(if req_one {
            1
        } else {
            block_status::MAX_EXTENTS
        });
    }
    let mut out = Vec::new();
    let total = n.contexts.len() + n.bitmaps.len();
    for (i, ctx) in n.contexts.iter().enumerate() {
        let done = i + 1 == total;
        let d = block_status::descriptors(&runs, *ctx);
        out.extend_from_slice(&request::block_status_chunk(r.cookie, done, ctx.id(), &d));
    }
    for (i, b) in n.bitmaps.iter().enumerate() {
        let done = n.contexts.len() + i + 1 == total;
        let mut dirty = Vec::new();
        let mut seen = 0;
        for (o, l) in windows(r.offset, covered, c.chunk) {
            dirty.extend(dirty::dirty_runs(c.store, c.dev, b, o, l)?);
            seen = o + l - r.offset;
            if req_one || dirty.len() >= STATUS_MAX_EXTENTS / 2 {
                break;
            }
        }
        let d = dirty::cover(&dirty, r.offset, seen, req_one);
        out.extend_from_slice(&request::block_status_chunk(r.cookie, done, b.id, &d));
    }
    Ok(out)
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

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "a reply could not be written")
}
