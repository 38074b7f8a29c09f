//! The control protocol, version [`PROTOCOL_VERSION`]: JSON lines over a Unix socket.
//!
//! A client sends one [`Request`] per line (at most [`MAX_REQUEST_BYTES`] bytes with
//! its newline, within [`REQUEST_READ_TIMEOUT`] of connecting or of the previous
//! reply) and gets one [`Response`] line back. A connection may carry any number of
//! requests. Replies to changes carry the store's transaction id (`txn_id`) after
//! the change, which is durable when the reply is sent.
//!
//! ```text
//! -> {"version":1,"op":"create","name":"before-upgrade"}
//! <- {"version":1,"created":{"id":1,"name":"before-upgrade","created":1700000000,"parent":null,"txn_id":7}}
//! -> {"version":1,"op":"activate","name":"nope"}
//! <- {"version":1,"error":{"code":"no_such_snapshot","message":"no snapshot named \"nope\""}}
//! ```
//!
//! A line that is not JSON, lacks `version`, names another version or an unknown
//! `op` gets an `error` reply (`bad_request`, `unsupported_version`) and the
//! connection stays open; a line over the size limit gets `too_large` and the
//! connection is closed (the rest of the line cannot be told from the next request).
//!
//! # Compatibility
//! New ops and new reply fields may be added within a version; clients ignore
//! fields they do not know. Removing or changing a field needs a new version.
//!
//! # Layout
//! This folder is the wire and nothing else: it names nothing of the daemon (no
//! path into the crate), only serde and the store's result types, so the client, the
//! service and the tools all depend on it and it on none of them.
//! - [`op`]: the operations.
//! - [`reply`]: the replies and their bodies.
//! - [`status`]: the reply to `status`.
//! - [`report`]: `check` and `dump` results.
//! - [`inspect`]: `map` and `diff` pages.
//! - [`error`]: error replies and their codes.
//!
//! Every request and reply type is re-exported here, so `protocol::X` names it
//! wherever it lives; the parts of reports stay under [`report`] and [`inspect`].
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub mod error;
pub mod inspect;
pub mod op;
pub mod reply;
pub mod report;
pub mod status;

pub use error::{ErrorCode, ErrorReply};
pub use inspect::{DiffReport, MapReport};
pub use op::{Op, PrunePolicy};
pub use reply::{
    Activated, Changed, Created, GroupCreated, GrownStore, List, Origin, OriginGone, Origins,
    Pruned, PrunedSnapshot, Received, Reply, ResizedOrigin, Sending, Skipped, Snapshot,
};
pub use report::{CheckReport, DumpReport, RepairReport};
pub use status::{ActiveDevice, ExportEntry, Job, NbdStatus, Status, Usage};

/// The protocol version this library speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line, newline included.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest reply line a client accepts.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// How long the daemon waits for (the rest of) a request line.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the daemon lets one request run before answering `timeout` (the
/// operation itself may still complete; `list` or `status` tells).
pub const REQUEST_HANDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request: the version and the operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    /// A request of this library's version.
    pub fn new(op: Op) -> Self {
        Request {
            version: PROTOCOL_VERSION,
            op,
        }
    }
}

/// A reply: the version and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What happened.
    #[serde(flatten)]
    pub reply: Reply,
}

impl Response {
    /// A reply of this library's version.
    pub fn new(reply: Reply) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            reply,
        }
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(Reply::Error(ErrorReply {
            code,
            message: message.into(),
        }))
    }
}

/// Parse one request line (without its newline). The version is checked before the
/// op, so a request of another version gets `unsupported_version` even when its op
/// is unknown here.
pub fn parse_request(line: &[u8]) -> Result<Request, ErrorReply> {
    let v: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, format!("not JSON: {e}")))?;
    let version = v
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::BadRequest,
                "the request has no numeric \"version\"",
            )
        })?;
    if version != u64::from(PROTOCOL_VERSION) {
        return Err(ErrorReply::new(
            ErrorCode::UnsupportedVersion,
            format!("protocol version {version} is not supported; this daemon speaks {PROTOCOL_VERSION}"),
        ));
    }
    serde_json::from_value(v)
        .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, format!("bad request: {e}")))
}

/// One line of JSON, newline-terminated.
pub fn to_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys, no floats.
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|_| {
        br#"{"version":1,"error":{"code":"internal","message":"unencodable reply"}}"#.to_vec()
    });
    v.push(b'\n');
    v
}
