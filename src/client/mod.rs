//! snapctl's end of the control socket: the blocking client `snapctl` uses (connect,
//! send one request, read one reply), and its streaming ops.
//!
//! - this file: [`Client`], [`request`], and the reply reader every op shares.
//! - [`stream`]: `send` and `receive`, the stream copied between the socket and a
//!   file or pipe.
//! - [`scan`]: what `receive --progress` knows of the stream it copies.
//!
//! # Invariants
//! Depends on [`crate::protocol`] and [`crate::Error`] only: nothing here names the
//! service, the daemon or the devices, so what `snapctl` runs can be read without
//! them.
pub mod scan;
pub mod stream;

use crate::{
    protocol::{to_line, Op, Reply, Request, Response, MAX_RESPONSE_BYTES, REQUEST_HANDLE_TIMEOUT},
    Error, Result,
};
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    /// Connect to the daemon's socket.
    pub fn connect(path: &Path) -> Result<Client> {
        let stream = UnixStream::connect(path).map_err(|error| Error::NotRunning {
            path: path.to_owned(),
            error,
        })?;
        let timeout = Some(REQUEST_HANDLE_TIMEOUT + Duration::from_secs(10));
        let io = Error::io("configure", path);
        stream.set_read_timeout(timeout).map_err(io)?;
        stream
            .set_write_timeout(timeout)
            .map_err(Error::io("configure", path))?;
        Ok(Client {
            stream: BufReader::new(stream),
            path: path.to_owned(),
        })
    }

    /// Send `op`; an `error` reply becomes [`Error::Remote`].
    pub fn call(&mut self, op: Op) -> Result<Reply> {
        let line = to_line(&Request::new(op));
        self.stream
            .get_mut()
            .write_all(&line)
            .map_err(Error::io("send to", &self.path))?;
        read_reply(&mut self.stream, &self.path)
    }
}

/// Read one reply line from the daemon at `path`; an `error` reply becomes
/// [`Error::Remote`]. Shared with the streaming ops ([`stream`]).
pub(crate) fn read_reply(r: &mut impl BufRead, path: &Path) -> Result<Reply> {
    let mut buf = Vec::new();
    r.take(MAX_RESPONSE_BYTES as u64)
        .read_until(b'\n', &mut buf)
        .map_err(Error::io("receive from", path))?;
    if buf.last() != Some(&b'\n') {
        return Err(Error::Protocol(if buf.is_empty() {
            "the daemon closed the connection without a reply".into()
        } else {
            "truncated or oversized reply".into()
        }));
    }
    let resp: Response =
        serde_json::from_slice(&buf).map_err(|e| Error::Protocol(format!("bad reply: {e}")))?;
    match resp.reply {
        Reply::Error(e) => Err(Error::Remote {
            code: e.code,
            message: e.message,
        }),
        r => Ok(r),
    }
}

/// Connect to `socket`, send `op`, return the reply.
pub fn request(socket: &Path, op: Op) -> Result<Reply> {
    Client::connect(socket)?.call(op)
}
