//! The fixed newstyle handshake: the greeting, then options until the client picks
//! an export (`NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`) or leaves.
//!
//! Written over any `Read + Write` and a [`Catalog`] of exports, so that it runs
//! the same on a socket and in the fuzzer. Every length the client sends is checked
//! before anything is allocated for it: an option body longer than
//! [`MAX_OPTION_BYTES`] is read and thrown away (`NBD_REP_ERR_TOO_BIG`), a malformed
//! one gets `NBD_REP_ERR_INVALID`, an unknown one `NBD_REP_ERR_UNSUP`; the client
//! may then try again. A client that breaks the framing (a wrong magic, a missing
//! fixed-newstyle flag) is dropped. At most [`MAX_OPTIONS`] options per connection.
//!
//! # TLS (`NBD_OPT_STARTTLS`)
//! [`options`] runs under a [`TlsPolicy`]. Where TLS is [`TlsPolicy::Required`],
//! every option before `STARTTLS` but `ABORT` gets `NBD_REP_ERR_TLS_REQD`
//! (`EXPORT_NAME`, which cannot be answered, closes the connection), so nothing about
//! the exports is told in the clear. A `STARTTLS` that is acknowledged ends the
//! phase ([`Outcome::StartTls`]): the caller runs the TLS handshake and calls
//! [`options`] again over TLS with [`TlsPolicy::Done`] and a fresh state, so that
//! nothing negotiated before (structured replies, meta contexts, an export) carries
//! over (nbdkit's CVE-2021-3716). A second `STARTTLS` gets `NBD_REP_ERR_INVALID`.
use super::{
    be,
    consts::*,
    dirty::{self, Bitmap, Candidate},
    meta::{self, Context},
};
use std::io::{self, Read, Write};

/// Longest option body kept; longer ones are skipped.
pub const MAX_OPTION_BYTES: u32 = 64 * 1024;
/// Options one connection may send before it is dropped.
pub const MAX_OPTIONS: usize = 4096;
/// Longest payload of a request (and read reply): NBD_INFO_BLOCK_SIZE's maximum.
pub const MAX_PAYLOAD: u32 = 32 << 20;

/// What the handshake needs to know of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// Its name (as listed).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether writes are allowed.
    pub writable: bool,
    /// Preferred I/O size (the store's chunk size).
    pub preferred_block: u32,
    /// For `NBD_INFO_DESCRIPTION`.
    pub description: String,
    /// The snapshots it has a dirty bitmap against ([`dirty`]).
    pub bitmaps: Vec<Candidate>,
}

/// The exports a handshake can pick from.
pub trait Catalog {
    /// The export a client asking for `name` gets.
    fn lookup(&self, name: &str) -> Option<ExportInfo>;
    /// Every export's name, for `NBD_OPT_LIST`.
    fn names(&self) -> Vec<String>;
}

/// A finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The export chosen.
    pub export: ExportInfo,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// The metadata contexts selected for that export, in reply order.
    pub contexts: Vec<Context>,
    /// The dirty bitmaps selected for that export, replied after `contexts`.
    pub bitmaps: Vec<Bitmap>,
    /// The transmission flags sent.
    pub flags: u16,
}

/// The transmission flags of `e`.
pub fn transmission_flags(e: &ExportInfo, structured: bool) -> u16 {
    let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_CACHE | TF_CAN_MULTI_CONN;
    if e.writable {
        f |= TF_SEND_TRIM | TF_SEND_WRITE_ZEROES;
    } else {
        f |= TF_READ_ONLY;
    }
    if structured {
        f |= TF_SEND_DF;
    }
    f
}

/// Whether the client must, may or cannot switch to TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// No TLS here: `STARTTLS` gets `NBD_REP_ERR_POLICY`.
    Off,
    /// The client may start TLS (it may also go on in the clear).
    Offered,
    /// The client must start TLS before anything but `ABORT`.
    Required,
    /// TLS is running: a second `STARTTLS` is invalid.
    Done,
}

/// How an option phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client chose an export.
    Go(Negotiated),
    /// The client aborted or left cleanly.
    Left,
    /// `STARTTLS` was acknowledged: run the TLS handshake, then [`options`] again.
    StartTls,
}

/// What an option phase has negotiated so far; dropped when TLS starts.
struct State {
    tls: TlsPolicy,
    structured: bool,
    no_zeroes: bool,
    /// (export name as asked, contexts, bitmaps) of the last SET_META_CONTEXT
    meta: Option<(String, Vec<Context>, Vec<Bitmap>)>,
}

/// Send the greeting and read the client's flags; returns whether the client asked
/// for no zeroes after `NBD_OPT_EXPORT_NAME`. An error: not a fixed newstyle client.
pub fn greet<S: Read + Write>(s: &mut S) -> io::Result<bool> {
    let mut hello = Vec::with_capacity(18);
    be::put_u64(&mut hello, NBDMAGIC);
    be::put_u64(&mut hello, IHAVEOPT);
    be::put_u16(&mut hello, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    s.write_all(&hello)?;
    s.flush()?;
    let mut cf = [0u8; 4];
    s.read_exact(&mut cf)?;
    let cflags = be::get_u32(&cf, 0);
    if cflags & FLAG_C_FIXED_NEWSTYLE == 0
        || cflags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0
    {
        return Err(bad("client flags without fixed newstyle, or unknown flags"));
    }
    Ok(cflags & FLAG_C_NO_ZEROES != 0)
}

/// Run the whole handshake without TLS. `Ok(None)`: the client aborted or left
/// cleanly; `Err`: it broke the protocol or the connection failed (the caller
/// drops it).
pub fn negotiate<S: Read + Write>(s: &mut S, cat: &dyn Catalog) -> io::Result<Option<Negotiated>> {
    let no_zeroes = greet(s)?;
    match options(s, cat, TlsPolicy::Off, no_zeroes)? {
        Outcome::Go(n) => Ok(Some(n)),
        Outcome::Left => Ok(None),
        Outcome::StartTls => Err(bad("STARTTLS acknowledged without TLS")),
    }
}

/// One phase of options (after [`greet`], or after the TLS handshake with
/// [`TlsPolicy::Done`]), from a fresh state.
pub fn options<S: Read + Write>(
    s: &mut S,
    cat: &dyn Catalog,
    tls: TlsPolicy,
    no_zeroes: bool,
) -> io::Result<Outcome> {
    let mut st = State {
        tls,
        structured: false,
        no_zeroes,
        meta: None,
    };
    for _ in 0..MAX_OPTIONS {
        let mut h = [0u8; 16];
        match s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Outcome::Left),
            Err(e) => return Err(e),
        }
        if be::get_u64(&h, 0) != IHAVEOPT {
            return Err(bad("option without IHAVEOPT"));
        }
        let opt = be::get_u32(&h, 8);
        let len = be::get_u32(&h, 12);
        if len > MAX_OPTION_BYTES {
            io::copy(&mut Read::by_ref(s).take(u64::from(len)), &mut io::sink())?;
            if opt == OPT_EXPORT_NAME {
                return Err(bad("export name too long"));
            }
            reply_err(s, opt, REP_ERR_TOO_BIG, "option too long")?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        if st.tls == TlsPolicy::Required && !matches!(opt, OPT_ABORT | OPT_STARTTLS) {
            if opt == OPT_EXPORT_NAME {
                return Err(bad("EXPORT_NAME before the required STARTTLS"));
            }
            reply_err(s, opt, REP_ERR_TLS_REQD, "TLS is required: send STARTTLS")?;
            continue;
        }
        if opt == OPT_STARTTLS {
            if let Some(o) = starttls(s, &st, &data)? {
                return Ok(o);
            }
            continue;
        }
        if let Some(n) = option(s, cat, &mut st, opt, &data)? {
            return Ok(match n {
                Some(n) => Outcome::Go(n),
                None => Outcome::Left,
            });
        }
    }
    Err(bad("too many options"))
}

/// `NBD_OPT_STARTTLS`; `Some(StartTls)` once acknowledged.
fn starttls<S: Write>(s: &mut S, st: &State, data: &[u8]) -> io::Result<Option<Outcome>> {
    let opt = OPT_STARTTLS;
    match st.tls {
        TlsPolicy::Off => reply_err(s, opt, REP_ERR_POLICY, "TLS is not configured")?,
        TlsPolicy::Done => reply_err(s, opt, REP_ERR_INVALID, "TLS is already running")?,
        TlsPolicy::Offered | TlsPolicy::Required if !data.is_empty() => {
            reply_err(s, opt, REP_ERR_INVALID, "STARTTLS takes no data")?
        }
        TlsPolicy::Offered | TlsPolicy::Required => {
            reply(s, opt, REP_ACK, &[])?;
            return Ok(Some(Outcome::StartTls));
        }
    }
    Ok(None)
}

/// One option; `Some(x)` ends the handshake with `x`.
fn option<S: Read + Write>(
    s: &mut S,
    cat: &dyn Catalog,
    st: &mut State,
    opt: u32,
    data: &[u8],
) -> io::Result<Option<Option<Negotiated>>> {
    match opt {
        OPT_EXPORT_NAME => {
            let name = String::from_utf8_lossy(data);
            // no way to answer an unknown name but to close
            let e = cat.lookup(&name).ok_or_else(|| bad("unknown export"))?;
            let flags = transmission_flags(&e, st.structured);
            let mut out = Vec::with_capacity(134);
            be::put_u64(&mut out, e.size);
            be::put_u16(&mut out, flags);
            if !st.no_zeroes {
                out.resize(out.len() + 124, 0);
            }
            s.write_all(&out)?;
            s.flush()?;
            let (contexts, bitmaps) = contexts_for(st, &name);
            return Ok(Some(Some(Negotiated {
                export: e,
                structured: st.structured,
                contexts,
                bitmaps,
                flags,
            })));
        }
        OPT_ABORT => {
            // the client may already be gone
            let _ = reply(s, opt, REP_ACK, &[]);
            return Ok(Some(None));
        }
        OPT_LIST => {
            if !data.is_empty() {
                return reply_err(s, opt, REP_ERR_INVALID, "LIST takes no data").map(|()| None);
            }
            for n in cat.names() {
                let mut d = Vec::with_capacity(4 + n.len());
                be::put_u32(&mut d, n.len() as u32);
                d.extend_from_slice(n.as_bytes());
                reply(s, opt, REP_SERVER, &d)?;
            }
            reply(s, opt, REP_ACK, &[])?;
        }
        OPT_STRUCTURED_REPLY => {
            if !data.is_empty() {
                return reply_err(s, opt, REP_ERR_INVALID, "takes no data").map(|()| None);
            }
            st.structured = true;
            reply(s, opt, REP_ACK, &[])?;
        }
        OPT_INFO | OPT_GO => return info_or_go(s, cat, st, opt, data),
        OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => meta_context(s, cat, st, opt, data)?,
        OPT_EXTENDED_HEADERS => {
            reply_err(s, opt, REP_ERR_UNSUP, "extended headers are not supported")?
        }
        _ => reply_err(s, opt, REP_ERR_UNSUP, "unknown option")?,
    }
    Ok(None)
}

fn contexts_for(st: &State, export: &str) -> (Vec<Context>, Vec<Bitmap>) {
    match &st.meta {
        Some((name, c, b)) if name == export => (c.clone(), b.clone()),
        _ => (Vec::new(), Vec::new()),
    }
}

/// `NBD_OPT_INFO` / `NBD_OPT_GO`: name length, name, info request count, requests.
fn info_or_go<S: Read + Write>(
    s: &mut S,
    cat: &dyn Catalog,
    st: &mut State,
    opt: u32,
    data: &[u8],
) -> io::Result<Option<Option<Negotiated>>> {
    let mut r = Reader(data);
    let parsed = (|| {
        let name = r.string32()?;
        let n = r.u16()?;
        let mut infos = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            infos.push(r.u16()?);
        }
        r.end()?;
        Some((name, infos))
    })();
    let Some((name, infos)) = parsed else {
        reply_err(s, opt, REP_ERR_INVALID, "malformed INFO/GO request")?;
        return Ok(None);
    };
    let Some(e) = cat.lookup(&name) else {
        reply_err(s, opt, REP_ERR_UNKNOWN, "no such export")?;
        return Ok(None);
    };
    let flags = transmission_flags(&e, st.structured);
    let mut d = Vec::new();
    be::put_u16(&mut d, INFO_EXPORT);
    be::put_u64(&mut d, e.size);
    be::put_u16(&mut d, flags);
    reply(s, opt, REP_INFO, &d)?;
    // Sent whether asked or not (as qemu does); a client that did not ask may use
    // any alignment, which is fine: any byte range is served.
    let mut d = Vec::new();
    be::put_u16(&mut d, INFO_BLOCK_SIZE);
    let min = if infos.contains(&INFO_BLOCK_SIZE) && e.size % 512 == 0 {
        512
    } else {
        1
    };
    be::put_u32(&mut d, min);
    be::put_u32(&mut d, e.preferred_block);
    be::put_u32(&mut d, MAX_PAYLOAD);
    reply(s, opt, REP_INFO, &d)?;
    if infos.contains(&INFO_NAME) {
        let mut d = Vec::new();
        be::put_u16(&mut d, INFO_NAME);
        d.extend_from_slice(e.name.as_bytes());
        reply(s, opt, REP_INFO, &d)?;
    }
    if infos.contains(&INFO_DESCRIPTION) {
        let mut d = Vec::new();
        be::put_u16(&mut d, INFO_DESCRIPTION);
        d.extend_from_slice(e.description.as_bytes());
        reply(s, opt, REP_INFO, &d)?;
    }
    reply(s, opt, REP_ACK, &[])?;
    if opt == OPT_INFO {
        return Ok(None);
    }
    let (contexts, bitmaps) = contexts_for(st, &name);
    Ok(Some(Some(Negotiated {
        export: e,
        structured: st.structured,
        contexts,
        bitmaps,
        flags,
    })))
}

/// `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT`.
fn meta_context<S: Read + Write>(
    s: &mut S,
    cat: &dyn Catalog,
    st: &mut State,
    opt: u32,
    data: &[u8],
) -> io::Result<()> {
    if !st.structured {
        return reply_err(
            s,
            opt,
            REP_ERR_INVALID,
            "negotiate structured replies first",
        );
    }
    let mut r = Reader(data);
    let parsed = (|| {
        let name = r.string32()?;
        let n = r.u32()?;
        let mut queries = Vec::new();
        for _ in 0..n {
            queries.push(r.string32()?);
        }
        r.end()?;
        Some((name, queries))
    })();
    let Some((name, queries)) = parsed else {
        return reply_err(s, opt, REP_ERR_INVALID, "malformed meta context request");
    };
    let Some(e) = cat.lookup(&name) else {
        return reply_err(s, opt, REP_ERR_UNKNOWN, "no such export");
    };
    let (chosen, bitmaps) = if opt == OPT_LIST_META_CONTEXT {
        let listed = dirty::list(&queries, &e.bitmaps).into_iter();
        let b = listed
            .map(|c| Bitmap {
                id: 0,
                snap: c.snap,
                name: dirty::context_name(c),
            })
            .collect();
        (meta::list(&queries), b)
    } else {
        (meta::select(&queries), dirty::select(&queries, &e.bitmaps))
    };
    for c in &chosen {
        let mut d = Vec::new();
        be::put_u32(&mut d, c.id());
        d.extend_from_slice(c.name().as_bytes());
        reply(s, opt, REP_META_CONTEXT, &d)?;
    }
    for b in &bitmaps {
        let mut d = Vec::with_capacity(4 + b.name.len());
        be::put_u32(&mut d, b.id);
        d.extend_from_slice(b.name.as_bytes());
        reply(s, opt, REP_META_CONTEXT, &d)?;
    }
    if opt == OPT_SET_META_CONTEXT {
        st.meta = Some((name, chosen, bitmaps));
    }
    reply(s, opt, REP_ACK, &[])
}

/// A bounds-checked cursor over an option body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| be::get_u16(b, 0))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| be::get_u32(b, 0))
    }
    fn string32(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).ok()
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn reply<S: Write>(s: &mut S, opt: u32, typ: u32, data: &[u8]) -> io::Result<()> {
    let mut h = Vec::with_capacity(20 + data.len());
    be::put_u64(&mut h, REPLY_MAGIC);
    be::put_u32(&mut h, opt);
    be::put_u32(&mut h, typ);
    be::put_u32(&mut h, data.len() as u32);
    h.extend_from_slice(data);
    s.write_all(&h)?;
    s.flush()
}

fn reply_err<S: Write>(s: &mut S, opt: u32, typ: u32, msg: &str) -> io::Result<()> {
    reply(s, opt, typ, msg.as_bytes())
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests;
