//! `send` and `receive` in the daemon: the streaming ops of the control protocol
//! (see [`crate::protocol::Op::Send`]) over [`exception_store::replicate`], and the
//! replication state file.
//!
//! # State
//! `<state file stem>.repl` in the state directory (or `<store>.repl` without one):
//! the unfinished receive, if any (received snapshots keep their guid in the store), rewritten
//! (temporary file, fsync, rename) before a receive writes anything, at every
//! checkpoint and at its end, so that it survives kill -9.
//!
//! # Invariants
//! - One receive at a time in the pool (the state's lock is held for its duration),
//!   into one origin (`receive --origin`, the first by default); that origin's
//!   device is held open exclusively meanwhile, so nothing mounts it mid-stream.
//! - An unfinished receive belongs to the origin it wrote: only a receive into
//!   that origin resumes it or (`--force`) drops it.
//! - A snapshot being sent cannot be deleted, merged or pruned, and the space policy
//!   spares it (`Service::protected`, [`Replication::is_sending`]).
use super::{claim_origin, Service};
use crate::ublk::target::ReceiveFlag;
use crate::{
    protocol::{self, ErrorCode, Reply, Response},
    Error, Result,
};
use blockdev::ids::SnapId;
use exception_store::replicate::{
    self, parse_resume_token, Pending, ReceiveError, ReceiveOptions, SendSpec,
};
use exception_store::stream::rbd_diff::{Reader, ToStream};
use exception_store::{stream::Header, OriginId, SharedStore};
use parking_lot::Mutex;
use std::{
    collections::BTreeMap,
    io::{BufWriter, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

/// What the daemon keeps for replication.
#[derive(Debug)]
pub struct Replication {
    path: PathBuf,
    state: Mutex<Option<Pending>>,
    /// The rollback snapshot and the mark of the unfinished or running receive (a
    /// copy of the state's, readable while a receive holds `state`): internal, see
    /// [`Replication::is_internal`].
    internal: Mutex<Vec<SnapId>>,
    sending: Mutex<BTreeMap<SnapId, usize>>,
    /// The origin a receive is writing: no writable NBD export of it may be added
    /// meanwhile (set and read under the devices lock), and its ublk device refuses
    /// writes ([`crate::ublk::target::StoreTarget`]).
    receiving: ReceiveFlag,
}

/// The snapshots internal to the receive `p`: its rollback snapshot and its mark.
fn internal_of(p: &Pending) -> Vec<SnapId> {
    std::iter::once(p.rollback).chain(p.mark).collect()
}

fn encode(p: Option<&Pending>) -> String {
    let mut s = String::from("ublk-snap replication state v2\n");
    if let Some(p) = p {
        s += &p.encode();
    }
    s
}

fn decode(text: &str) -> Option<Option<Pending>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    if lines.next()? != "ublk-snap replication state v2" {
        return None;
    }
    let pending = match lines.next() {
        Some(l) => Some(Pending::decode(l)?),
        None => None,
    };
    lines.next().is_none().then_some(pending)
}

fn save_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("repl.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

impl Replication {
    /// Load the state beside the store (`state_dir` as the daemon's state file).
    pub fn load(state_dir: Option<&Path>, store: &Path) -> Result<Replication> {
        let path = match state_dir {
            Some(d) => {
                let f = super::state::StateFile::new(d, store);
                f.path().with_extension("").with_extension("repl")
            }
            None => PathBuf::from(format!("{}.repl", store.display())),
        };
        let state = match std::fs::read_to_string(&path) {
            Ok(t) => decode(&t).ok_or_else(|| {
                Error::Invalid(format!("{}: not a replication state file", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        Ok(Replication {
            path,
            internal: Mutex::new(state.as_ref().map(internal_of).unwrap_or_default()),
            state: Mutex::new(state),
            sending: Mutex::default(),
            receiving: Default::default(),
        })
    }

    /// Whether snapshot `id` is internal to a receive: its rollback snapshot (what
    /// the origin read before it) or its mark (what the origin read when it
    /// stopped, [`replicate::mark`]). Internal snapshots are not listed, not prune
    /// candidates, never deleted by the space policy (marked in use), and no control
    /// op may name them ([`crate::Error::RollbackPoint`]); the receive merges or
    /// deletes them itself.
    pub fn is_internal(&self, id: SnapId) -> bool {
        self.internal.lock().contains(&id)
    }

    /// The snapshots internal to a receive now ([`Replication::is_internal`]).
    pub fn internal(&self) -> Vec<SnapId> {
        self.internal.lock().clone()
    }

    /// Record the pending receive's internal snapshots (`None`: gone) and keep the
    /// space policy off them.
    fn set_internal(&self, store: &SharedStore, p: Option<&Pending>) {
        let new = p.map(internal_of).unwrap_or_default();
        let old = std::mem::replace(&mut *self.internal.lock(), new.clone());
        let mut s = store.lock();
        for o in old.into_iter().filter(|o| !new.contains(o)) {
            s.set_in_use(o, false);
        }
        for n in new {
            s.set_in_use(n, true);
        }
    }

    /// At the daemon's start, before it serves the origin: delete the snapshots a
    /// crash left behind a receive ([`replicate::orphans`]); then a new mark for the
    /// unfinished receive, so that a resume can tell whether the origin was written
    /// since ([`replicate::mark`]); and the space policy kept off its snapshots.
    pub fn take_mark(&self, store: &SharedStore) -> Result<()> {
        let mut st = self.state.lock();
        for (id, name) in replicate::orphans(store, st.as_ref()) {
            tracing::warn!(snapshot = %name, "deleting a receive's snapshot that a crash left behind");
            store.delete_snapshot(id)?;
        }
        let Some(p) = st.as_mut() else {
            return Ok(());
        };
        if !store.lock().origin_attached(p.origin) {
            // its origin is not served: nothing can write it until it is back
            tracing::warn!(
                origin = p.origin,
                name = %p.name,
                "the unfinished receive's origin is missing: no new mark"
            );
            self.set_internal(store, Some(p));
            return Ok(());
        }
        let path = self.path.clone();
        let r = replicate::mark(store, p, crate::now_secs(), &mut |q| {
            save_file(&path, &encode(q))
        });
        self.set_internal(store, Some(p));
        r.map_err(|e| Error::Invalid(format!("the unfinished receive's mark: {e}")))
    }

    /// The origin a receive is writing now, if any.
    pub fn receiving_into(&self) -> Option<OriginId> {
        self.receiving.get()
    }

    /// The flag behind [`Replication::receiving_into`], for the origins' ublk
    /// targets.
    pub fn receiving_flag(&self) -> ReceiveFlag {
        self.receiving.clone()
    }

    /// Whether snapshot `id` is being sent.
    pub fn is_sending(&self, id: SnapId) -> bool {
        self.sending.lock().contains_key(&id)
    }

    /// The unfinished receive's resume token.
    pub fn resume_token(&self) -> Option<String> {
        self.state
            .try_lock()
            .and_then(|s| s.as_ref().map(Pending::token))
    }
}

/// Marks an origin as being written by a receive while alive.
struct Receiving<'a>(&'a Replication);

impl<'a> Receiving<'a> {
    fn new(repl: &'a Replication, k: OriginId) -> Self {
        repl.receiving.set(Some(k));
        Receiving(repl)
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.receiving.set(None);
    }
}

/// Marks a snapshot sent while alive, and in use for the space policy.
struct Sending<'a>(&'a Service, SnapId);

impl<'a> Sending<'a> {
    fn new(svc: &'a Service, id: SnapId) -> Self {
        *svc.repl.sending.lock().entry(id).or_default() += 1;
        svc.store.lock().set_in_use(id, true);
        Sending(svc, id)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        {
            let mut m = self.0.repl.sending.lock();
            if let Some(n) = m.get_mut(&self.1) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.1);
                }
            }
        }
        let devs = self.0.devices.lock();
        self.0.refresh_in_use(&devs, self.1);
    }
}

fn reply_line(conn: &mut UnixStream, r: &Response) {
    let _ = conn.write_all(&protocol::to_line(r));
}

fn err_response(e: &Error) -> Response {
    Response::error(e.code(), e.to_string())
}

fn receive_code(e: &ReceiveError) -> ErrorCode {
    match e {
        ReceiveError::Refused(_) => ErrorCode::Corrupt,
        ReceiveError::Cut { .. } | ReceiveError::State(_) => ErrorCode::Io,
        ReceiveError::Size { .. } | ReceiveError::WrongBase(_) => ErrorCode::Invalid,
        ReceiveError::ResumeMismatch(_) => ErrorCode::Invalid,
        ReceiveError::OriginChanged(_)
        | ReceiveError::Pending { .. }
        | ReceiveError::WrittenSinceCut { .. } => ErrorCode::Busy,
        ReceiveError::NameTaken(_) | ReceiveError::GuidTaken { .. } => ErrorCode::Exists,
        ReceiveError::Store(s) => Error::code_of_store(s),
    }
}

impl Service {
    /// Answer a streaming op on `conn` (`leftover`: bytes read past its line).
    pub fn handle_stream(&self, op: protocol::Op, mut conn: UnixStream, leftover: Vec<u8>) {
        match op {
            protocol::Op::Send { name, from, resume } => {
                if let Err(e) = self.send(&name, from.as_deref(), resume.as_deref(), &mut conn) {
                    tracing::info!(error = %e, "send refused");
                    reply_line(&mut conn, &err_response(&e));
                }
            }
            protocol::Op::Receive {
                force,
                rbd_diff,
                origin,
            } => {
                let r = match origin.as_deref().map(|o| self.origin_id(o)).transpose() {
                    Ok(k) => self.receive(k.unwrap_or(0), force, rbd_diff, &mut conn, leftover),
                    Err(e) => err_response(&e),
                };
                let _ = conn.shutdown(std::net::Shutdown::Read);
                reply_line(&mut conn, &r);
            }
            other => reply_line(
                &mut conn,
                &Response::error(
                    ErrorCode::BadRequest,
                    format!("{other:?} is not a streaming op"),
                ),
            ),
        }
    }

    /// `send`: errors before the stream starts become the reply; after the `sending`
    /// line, a failure just closes the connection (the receiver sees a cut stream).
    fn send(
        &self,
        name: &str,
        from: Option<&str>,
        resume: Option<&str>,
        conn: &mut UnixStream,
    ) -> Result<()> {
        let b = self.lookup(name)?;
        let a = from.map(|a| self.lookup(a)).transpose()?;
        let (stream_id, resume_offset) = match resume {
            Some(t) => {
                let (id, off) = parse_resume_token(t)
                    .ok_or_else(|| Error::Invalid(format!("bad resume token {t:?}")))?;
                (id, Some(off))
            }
            None => (random_id()?, None),
        };
        // What the records will cover: a resumed stream's start at `resume_offset`,
        // up to B's own size (a snapshot taken before a resize-origin is smaller).
        let from_off = resume_offset.unwrap_or(0);
        let b_size = self.store.dev_size(exception_store::Dev::Snap(b))?;
        let covers = match a {
            Some(a) => self
                .store
                .diff(
                    exception_store::Dev::Snap(a),
                    exception_store::Dev::Snap(b),
                    0,
                    b_size,
                )?
                .iter()
                .map(|&(off, len)| (off + len).saturating_sub(off.max(from_off)))
                .sum(),
            None => b_size.saturating_sub(from_off),
        };
        let _held = Sending::new(self, b);
        // Re-check under the hold: a delete may have raced the lookup.
        self.lookup(name)?;
        reply_line(
            conn,
            &Response::new(Reply::Sending(protocol::Sending {
                name: name.to_owned(),
                from: from.map(str::to_owned),
                covers,
            })),
        );
        let spec = SendSpec {
            snap: b,
            from: a,
            stream_id,
            resume_offset,
        };
        let out = BufWriter::with_capacity(
            1 << 20,
            conn.try_clone().map_err(Error::io("clone", "socket"))?,
        );
        match replicate::send(&self.store, &spec, out, &mut |_| {}) {
            Ok(sent) => tracing::info!(name, ?from, bytes = sent.bytes, "sent"),
            Err(e) => tracing::warn!(name, error = %e, "send failed mid-stream"),
        }
        let _ = conn.shutdown(std::net::Shutdown::Both);
        Ok(())
    }

    /// `receive` into origin `k`.
    fn receive(
        &self,
        k: OriginId,
        force: bool,
        rbd_diff: bool,
        conn: &mut UnixStream,
        leftover: Vec<u8>,
    ) -> Response {
        let claim = {
            let devs = self.devices.lock();
            match claim_origin(&devs, exception_store::Dev::Origin(k)) {
                Ok(c) => c,
                Err(device) => {
                    return err_response(&Error::InUse {
                        device,
                        why: "a receive writes the origin",
                    })
                }
            }
        };
        let Some(mut st) = self.repl.state.try_lock() else {
            return Response::error(ErrorCode::Busy, "another receive is running");
        };
        if let Some(p) = st.as_ref().filter(|p| p.origin != k) {
            // resuming or dropping it writes its own origin, not this one
            let names = self.origin_names();
            let name = |o: OriginId| names.get(&o).cloned().unwrap_or_else(|| format!("#{o}"));
            return Response::error(
                ErrorCode::Busy,
                format!(
                    "an unfinished receive of {:?} into origin {:?} is pending: resume it \
                     (`snapctl send --resume {}`, received with --origin {}) or drop it \
                     (a receive into origin {:?} with --force) before receiving into origin {:?}",
                    p.name,
                    name(p.origin),
                    p.token(),
                    name(p.origin),
                    name(p.origin),
                    name(k)
                ),
            );
        }
        // No other writer of the origin: its ublk device is claimed above, and a
        // writable NBD export of it is refused here and kept out until the end.
        let _receiving = {
            let _devs = self.devices.lock();
            if let Some(e) = self
                .exports
                .of(exception_store::Dev::Origin(k))
                .into_iter()
                .find(|e| e.writable)
            {
                return err_response(&Error::InUse {
                    device: format!("NBD export {:?}", e.name),
                    why: "a receive writes the origin: unexport its writable NBD export first",
                });
            }
            Receiving::new(&self.repl, k)
        };
        let pending = &mut *st;
        let mut input = std::io::Cursor::new(leftover)
            .chain(std::io::BufReader::with_capacity(1 << 20, &*conn));
        let path = self.repl.path.clone();
        let opts = ReceiveOptions {
            origin: k,
            force,
            now: crate::now_secs(),
            ..ReceiveOptions::default()
        };
        let mut saved = pending.clone();
        let repl = &self.repl;
        let store = &self.store;
        let mut save = |p: Option<&Pending>| {
            saved = p.cloned();
            repl.set_internal(store, p);
            save_file(&path, &encode(p))
        };
        let r = if rbd_diff {
            let mut ts = match self.rbd_input(k, &mut input) {
                Ok(ts) => ts,
                Err(e) => return err_response(&e),
            };
            let r = replicate::receive(
                &self.store,
                &mut ts,
                pending.clone(),
                opts,
                &mut save,
                &mut |_| {},
            );
            match (r, ts.error.take()) {
                // An rbd diff cannot be resumed: a cut or refused one is rolled back.
                (Err(ReceiveError::Cut { error, .. }), rbd_error) => {
                    let why = rbd_error.map_or_else(|| error.to_string(), |e| e.to_string());
                    if let Some(p) = saved.take() {
                        if let Err(e) = replicate::abandon(&self.store, &p) {
                            return err_response(&e.into());
                        }
                        self.repl.set_internal(&self.store, None);
                        if let Err(e) = save_file(&path, &encode(None)) {
                            return err_response(&Error::io("write", &path)(e));
                        }
                    }
                    *pending = None;
                    drop(claim);
                    return Response::error(
                        ErrorCode::Corrupt,
                        format!("rbd diff refused, the target is unchanged: {why}"),
                    );
                }
                (r, _) => r,
            }
        } else {
            replicate::receive(
                &self.store,
                input,
                pending.clone(),
                opts,
                &mut save,
                &mut |_| {},
            )
        };
        *pending = saved;
        drop(claim);
        match r {
            Ok(got) => {
                tracing::info!(name = got.name, bytes = got.bytes, forced = ?got.forced, "received");
                Response::new(Reply::Received(protocol::Received {
                    name: got.name,
                    id: got.snap.0,
                    bytes: got.bytes,
                    forced: got.forced,
                    txn_id: self.txn(),
                }))
            }
            Err(e) => {
                tracing::info!(error = %e, "receive failed");
                Response::error(receive_code(&e), e.to_string())
            }
        }
    }

    /// Our stream made from an `rbd diff v1` on `input`: B is its `t` snapshot
    /// (created now, a new guid), A the snapshot of origin `k` its `f` names here.
    fn rbd_input<'a, R: Read>(&self, k: OriginId, input: &'a mut R) -> Result<ToStream<&'a mut R>> {
        let rd = Reader::new(input).map_err(|e| Error::Invalid(e.to_string()))?;
        let meta = rd.meta().clone();
        let (snaps, chunk) = {
            let s = self.store.lock();
            (s.snapshots(), s.chunk_size())
        };
        let from_guid = match &meta.from {
            Some(a) => {
                let s = snaps
                    .iter()
                    .find(|x| x.origin == k && x.name == *a)
                    .ok_or_else(|| Error::NoSuchSnapshot(a.clone()))?;
                Some(s.guid)
            }
            None => None,
        };
        exception_store::validate_name(&meta.to).map_err(Error::Invalid)?;
        let header = Header {
            stream_id: random_id()?,
            source_uuid: [0; 16],
            chunk_size: chunk,
            size: meta.size,
            name: meta.to.clone(),
            created: crate::now_secs(),
            guid: random_id()?,
            from_guid,
            resume_offset: None,
        };
        ToStream::new(rd, &header).map_err(Error::io("convert", "the rbd diff"))
    }
}

/// 16 random bytes (a stream's identity).
fn random_id() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(Error::io("read", "/dev/urandom"))?;
    Ok(b)
}
