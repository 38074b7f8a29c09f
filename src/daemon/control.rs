//! The control socket server: a Unix socket, owner-only (0600, in a 0700 directory
//! when it creates one), speaking [`crate::protocol`].
//!
//! # Bounds
//! - Peers must be root or the daemon's own user (`SO_PEERCRED`); others get one
//!   `permission_denied` reply and are disconnected.
//! - A request line is at most [`MAX_REQUEST_BYTES`]; it must arrive within
//!   [`REQUEST_READ_TIMEOUT`]; it runs at most [`REQUEST_HANDLE_TIMEOUT`].
//! - Every client has its own task; handlers run on the blocking pool, so a slow or
//!   silent client delays nobody else.
use crate::{
    protocol::{
        parse_request, to_line, ErrorCode, Op, Reply, Response, MAX_REQUEST_BYTES,
        REQUEST_HANDLE_TIMEOUT, REQUEST_READ_TIMEOUT,
    },
    Error, Result,
};
use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

/// What answers requests.
pub type Handler = Arc<dyn Fn(Op) -> Response + Send + Sync>;

/// What answers the streaming ops ([`Op::is_streaming`]: `send`, `receive`): it gets
/// the op, the connection (blocking) and the bytes already read after the request
/// line, and owns the connection from then on (its protocol is in
/// [`crate::protocol`]). It runs on the blocking pool, without the handle timeout.
pub type StreamHandler = Arc<dyn Fn(Op, std::os::unix::net::UnixStream, Vec<u8>) + Send + Sync>;

/// Time limits of a server (the protocol's, unless a test shortens them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`REQUEST_READ_TIMEOUT`].
    pub read_timeout: Duration,
    /// See [`REQUEST_HANDLE_TIMEOUT`].
    pub handle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            read_timeout: REQUEST_READ_TIMEOUT,
            handle_timeout: REQUEST_HANDLE_TIMEOUT,
        }
    }
}

/// A bound socket that removes its file when dropped.
#[derive(Debug)]
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Bind the control socket at `path` (inside a tokio runtime). A stale socket file is
/// replaced: the caller holds the store lock, so no live daemon of this store owns it.
pub fn bind(path: &Path) -> Result<Socket> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(Error::io("create", dir))?;
        }
    }
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "replaced a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Io {
                what: "remove",
                path: path.to_owned(),
                error: e,
            })
        }
    }
    let listener = UnixListener::bind(path).map_err(Error::io("bind", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(Error::io("chmod", path))?;
    Ok(Socket {
        listener,
        path: path.to_owned(),
    })
}

/// Serve clients until `shutdown` completes (no streaming ops: they get an error).
pub async fn serve(
    socket: Socket,
    handler: Handler,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_with(socket, handler, None, limits, shutdown).await
}

/// [`serve`], with `streams` answering the streaming ops.
pub async fn serve_with(
    socket: Socket,
    handler: Handler,
    streams: Option<StreamHandler>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = socket.listener.accept() => match r {
                Ok((stream, _)) => {
                    let h = handler.clone();
                    let st = streams.clone();
                    tokio::spawn(async move { client(stream, h, st, limits).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Whether a peer with effective uid `uid` may talk to us.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

enum Line {
    Complete,
    Eof,
    TooLong,
}

/// Read one line (without the newline) of at most `max` bytes.
async fn read_line(
    r: &mut (impl AsyncBufRead + Unpin),
    out: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if out.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > max {
            return Ok(Line::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            out.pop();
            return Ok(Line::Complete);
        }
    }
}

/// Hand the connection to the stream handler (with the bytes read past the line).
fn hand_over(
    rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    wr: tokio::net::unix::OwnedWriteHalf,
    op: Op,
    streams: StreamHandler,
) {
    let leftover = rd.buffer().to_vec();
    let stream = match rd.into_inner().reunite(wr) {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot take over a connection"),
    };
    let std = match stream.into_std() {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot take over a connection"),
    };
    if let Err(e) = std.set_nonblocking(false) {
        return tracing::warn!(error = %e, "cannot take over a connection");
    }
    tokio::task::spawn_blocking(move || streams(op, std, leftover));
}

async fn client(
    stream: UnixStream,
    handler: Handler,
    streams: Option<StreamHandler>,
    limits: Limits,
) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            tracing::warn!(error = %e, "no peer credentials; dropping the client");
            return;
        }
    };
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    if !peer_allowed(uid) {
        tracing::warn!(uid, "refused a client of another user");
        let resp = Response::error(
            ErrorCode::PermissionDenied,
            format!("uid {uid} may not control this daemon"),
        );
        let _ = tokio::time::timeout(limits.read_timeout, wr.write_all(&to_line(&resp))).await;
        return;
    }
    loop {
        let mut line = Vec::new();
        let (resp, keep) = match tokio::time::timeout(
            limits.read_timeout,
            read_line(&mut rd, &mut line, MAX_REQUEST_BYTES),
        )
        .await
        {
            Err(_) => (
                Response::error(ErrorCode::Timeout, "no complete request in time; closing"),
                false,
            ),
            Ok(Err(_)) | Ok(Ok(Line::Eof)) => return,
            Ok(Ok(Line::TooLong)) => (
                Response::error(
                    ErrorCode::TooLarge,
                    format!("a request is at most {MAX_REQUEST_BYTES} bytes; closing"),
                ),
                false,
            ),
            Ok(Ok(Line::Complete)) => match (&streams, parse_request(&line)) {
                (Some(st), Ok(req)) if req.op.is_streaming() => {
                    return hand_over(rd, wr, req.op, st.clone());
                }
                _ => (answer(&line, &handler, limits).await, true),
            },
        };
        let sent = tokio::time::timeout(limits.read_timeout, wr.write_all(&to_line(&resp))).await;
        if !keep || !matches!(sent, Ok(Ok(()))) {
            return;
        }
    }
}

async fn answer(line: &[u8], handler: &Handler, limits: Limits) -> Response {
    let req = match parse_request(line) {
        Ok(r) => r,
        Err(e) => return Response::new(Reply::Error(e)),
    };
    tracing::debug!(?req, "request");
    let h = handler.clone();
    let task = tokio::task::spawn_blocking(move || h(req.op));
    match tokio::time::timeout(limits.handle_timeout, task).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "request handler panicked");
            Response::error(ErrorCode::Internal, "the request failed inside the daemon")
        }
        Err(_) => Response::error(
            ErrorCode::Timeout,
            "the request did not finish in time (it may still complete; check list/status)",
        ),
    }
}
