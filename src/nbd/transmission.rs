//! The transmission phase of one connection: read a request, check it
//! ([`request::check`]), serve it on the shared store, reply; until the client
//! disconnects, breaks the framing, or its export is removed.
//!
//! Requests are served in order, one at a time per connection (clients that want
//! parallelism open several connections: the export advertises
//! `NBD_FLAG_CAN_MULTI_CONN`, see below). The data path is the ublk devices' own:
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
use std::io::{self, Read, Write};

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

/// Serve requests on `s` for the export `n` negotiated, reading device `dev`.
/// Returns when the client disconnects; an error when the stream broke.
pub fn run<S: Read + Write>(
    s: &mut S,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
) -> io::Result<()> {
    let shape = Shape {
        size: n.export.size,
        writable: n.export.writable,
        structured: n.structured,
        has_contexts: !n.contexts.is_empty(),
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut h = [0u8; REQUEST_LEN];
        match s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let r = request::decode(&h).ok_or_else(|| bad("request without its magic"))?;
        let verdict = request::check(&r, &shape);
        if r.cmd == CMD_WRITE && verdict != Verdict::Fatal {
            buf.resize(r.len as usize, 0);
            s.read_exact(&mut buf)?;
        }
        match verdict {
            Verdict::Fatal => return Err(bad("write larger than the maximum payload")),
            Verdict::Disconnect => return Ok(()),
            Verdict::Error(e) => error(s, n, &r, e, "request refused")?,
            Verdict::Serve => serve(s, store, dev, n, &r, &mut buf)?,
        }
    }
}

fn serve<S: Write>(
    s: &mut S,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
    r: &Request,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let fua = r.flags & CMD_FLAG_FUA != 0;
    let len = u64::from(r.len);
    let done = match r.cmd {
        CMD_READ => return read(s, store, dev, n, r, buf),
        CMD_BLOCK_STATUS => return status(s, store, dev, n, r),
        CMD_WRITE => store.write(dev, r.offset, buf),
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

fn read<S: Write>(
    s: &mut S,
    store: &SharedStore,
    dev: Dev,
    n: &Negotiated,
    r: &Request,
    buf: &mut Vec<u8>,
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
    buf.clear();
    buf.extend_from_slice(&head);
    buf.resize(head.len() + r.len as usize, 0);
    match store.read(dev, r.offset, &mut buf[head.len()..]) {
        Ok(()) => s.write_all(buf),
        Err(e) => {
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
    let runs = block_status::runs(&map, r.flags & CMD_FLAG_REQ_ONE != 0);
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
