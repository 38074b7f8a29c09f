//! The client side of the streaming ops (`snapctl send`, `snapctl receive`): the
//! request line, then the stream copied between the socket and a file or pipe.
//! `send` decodes the stream as it passes, so a stream the daemon cut short is an
//! error here too, never a silently short file.
use super::{
    read_reply,
    scan::{Scan, StreamProgress},
};
use crate::{
    protocol::{self, to_line, Op, Reply, Request},
    Error, Result,
};
use exception_store::stream::{Decoder, Event};
use std::{
    cell::Cell,
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
    n: &'a Cell<u64>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.out.write_all(&buf[..k])?;
        self.n.set(self.n.get() + k as u64);
        Ok(k)
    }
}

/// `send`: write the stream to `out`; returns the `sending` reply and the stream's
/// length. `progress` is called after the header and after each record.
pub fn send(
    socket: &Path,
    op: Op,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(StreamProgress),
) -> Result<(protocol::Sending, u64)> {
    send_with(socket, op, out, &mut |_| Ok(()), progress)
}

/// `send`, decoded: `on` gets the header and each checked record (for converters
/// such as `--format rbd-diff`).
pub fn send_records(
    socket: &Path,
    op: Op,
    on: &mut dyn FnMut(Event<'_>) -> std::io::Result<()>,
    progress: &mut dyn FnMut(StreamProgress),
) -> Result<(protocol::Sending, u64)> {
    send_with(socket, op, &mut std::io::sink(), on, progress)
}

fn send_with(
    socket: &Path,
    op: Op,
    out: &mut dyn Write,
    on: &mut dyn FnMut(Event<'_>) -> std::io::Result<()>,
    progress: &mut dyn FnMut(StreamProgress),
) -> Result<(protocol::Sending, u64)> {
    let mut conn = connect(socket)?;
    conn.write_all(&to_line(&Request::new(op)))
        .map_err(Error::io("send to", socket))?;
    let mut rd = BufReader::with_capacity(1 << 20, conn);
    let sending = match read_reply(&mut rd, socket)? {
        Reply::Sending(s) => s,
        other => return Err(Error::Protocol(format!("unexpected reply {other:?}"))),
    };
    let n = Cell::new(0);
    let mut tee = Tee {
        inner: rd,
        out,
        n: &n,
    };
    let mut p = StreamProgress {
        total: Some(sending.covers),
        ..StreamProgress::default()
    };
    let check = |e| Error::Invalid(format!("the daemon's stream is bad: {e}"));
    let wr = || Error::io("write", "the output");
    let mut dec = Decoder::new(&mut tee).map_err(check)?;
    on(Event::Header(dec.header())).map_err(wr())?;
    p.stream = n.get();
    progress(p);
    while let Some(r) = dec.next_record().map_err(check)? {
        on(Event::Record(&r)).map_err(wr())?;
        p.covered += r.range().1;
        p.stream = n.get();
        progress(p);
    }
    on(Event::End).map_err(wr())?;
    drop(dec);
    tee.out.flush().map_err(wr())?;
    p.stream = n.get();
    progress(p);
    Ok((sending, p.stream))
}

/// `receive`: copy `input` to the daemon, then read its answer. `progress` is
/// called after each piece copied; its `covered` and `total` come from a
/// [`Scan`] of the same bytes (a side thread; the copy does not depend on it).
/// `origin`: the origin received into (`None`: the first).
pub fn receive(
    socket: &Path,
    origin: Option<&str>,
    force: bool,
    rbd_diff: bool,
    input: &mut dyn Read,
    progress: &mut dyn FnMut(StreamProgress),
) -> Result<protocol::Received> {
    let mut scan = Scan::start(rbd_diff);
    let mut conn = connect(socket)?;
    conn.write_all(&to_line(&Request::new(Op::Receive {
        force,
        rbd_diff,
        origin: origin.map(str::to_owned),
    })))
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
        scan.feed(&buf[..k]);
        progress(scan.progress(n));
    }
    progress(scan.finish(n));
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let r = read_reply(&mut BufReader::new(conn), socket);
    match (r, input_error) {
        (Ok(Reply::Received(r)), _) => Ok(r),
        (Ok(other), _) => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        (Err(e), Some(ie)) => Err(Error::Invalid(format!("reading the stream: {ie}; {e}"))),
        (Err(e), None) => Err(e),
    }
}
