//! The client side of the streaming ops (`snapctl send`, `snapctl receive`): the
//! request line, then the stream copied between the socket and a file or pipe.
//! `send` decodes the stream as it passes, so a stream the daemon cut short is an
//! error here too, never a silently short file.
use crate::{
    client::read_reply,
    protocol::{self, to_line, Op, Reply, Request},
    Error, Result,
};
use exception_store::stream::{Decoder, Header, Record};
use std::{
    io::{BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
};

fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|error| Error::NotRunning {
        path: path.to_owned(),
        error,
    })
}

/// Copies what it reads to `out` and counts it.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut dyn Write,
    n: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.out.write_all(&buf[..k])?;
        self.n += k as u64;
        (self.progress)(self.n);
        Ok(k)
    }
}

/// A record as [`send_records`] passes it: the header first, each record, then
/// `End` once the stream checked.
pub enum Event<'a> {
    /// The stream's header.
    Header(&'a Header),
    /// A checked record.
    Record(&'a Record),
    /// The end record checked.
    End,
}

/// `send`: write the stream to `out`; returns the `sending` reply and the stream's
/// length. `progress` gets the stream bytes so far.
pub fn send(
    socket: &Path,
    op: Op,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(protocol::Sending, u64)> {
    send_with(socket, op, out, &mut |_| Ok(()), progress)
}

/// `send`, decoded: `on` gets the header and each checked record (for converters
/// such as `--format rbd-diff`).
pub fn send_records(
    socket: &Path,
    op: Op,
    on: &mut dyn FnMut(Event<'_>) -> std::io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> Result<(protocol::Sending, u64)> {
    send_with(socket, op, &mut std::io::sink(), on, progress)
}

fn send_with(
    socket: &Path,
    op: Op,
    out: &mut dyn Write,
    on: &mut dyn FnMut(Event<'_>) -> std::io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> Result<(protocol::Sending, u64)> {
    let mut conn = connect(socket)?;
    conn.write_all(&to_line(&Request::new(op)))
        .map_err(Error::io("send to", socket))?;
    let mut rd = BufReader::with_capacity(1 << 20, conn);
    let sending = match read_reply(&mut rd, socket)? {
        Reply::Sending(s) => s,
        other => return Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    };
    let mut tee = Tee {
        inner: rd,
        out,
        n: 0,
        progress,
    };
    let check = |e| Error::Invalid(format!("the daemon's stream is bad: {e}"));
    let wr = Error::io("write", "the output");
    let mut dec = Decoder::new(&mut tee).map_err(check)?;
    on(Event::Header(dec.header())).map_err(wr)?;
    while let Some(r) = dec.next_record().map_err(check)? {
        on(Event::Record(&r)).map_err(Error::io("write", "the output"))?;
    }
    on(Event::End).map_err(Error::io("write", "the output"))?;
    let n = tee.n;
    tee.out.flush().map_err(Error::io("write", "the output"))?;
    Ok((sending, n))
}

/// `receive`: copy `input` to the daemon, then read its answer.
pub fn receive(
    socket: &Path,
    force: bool,
    rbd_diff: bool,
    input: &mut dyn Read,
    progress: &mut dyn FnMut(u64),
) -> Result<protocol::Received> {
    let mut conn = connect(socket)?;
    conn.write_all(&to_line(&Request::new(Op::Receive { force, rbd_diff })))
        .map_err(Error::io("send to", socket))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    let mut input_error = None;
    loop {
        let k = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                input_error = Some(e);
                break;
            }
        };
        // The daemon stops reading when it refuses the stream: its reply says why.
        if conn.write_all(&buf[..k]).is_err() {
            break;
        }
        n += k as u64;
        progress(n);
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let r = read_reply(&mut BufReader::new(conn), socket);
    match (r, input_error) {
        (Ok(Reply::Received(r)), _) => Ok(r),
        (Ok(other), _) => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        (Err(e), Some(ie)) => Err(Error::Invalid(format!("reading the stream: {ie}; {e}"))),
        (Err(e), None) => Err(e),
    }
}
