//! Receiving: check the base, take a rollback snapshot, apply records to the origin
//! as they check, and only at a checked end take snapshot B (see the module
//! documentation of [`super`] for the protocol and why it is atomic).
use super::{hex, resume_token};
use crate::{
    stream::{Decoder, Record, StreamError},
    Dev, OriginId, SharedStore,
};
use blockdev::ids::SnapId;
use std::io::Read;
use thiserror::Error;

/// A receive that stopped before its end: enough to resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The stream being received.
    pub stream_id: [u8; 16],
    /// B's name.
    pub name: String,
    /// B's guid.
    pub guid: [u8; 16],
    /// The rollback snapshot taken before the first write.
    pub rollback: SnapId,
    /// Records before this offset are applied and durable.
    pub next_offset: u64,
    /// A snapshot of the origin taken when the receive stopped (a cut, or the
    /// daemon's start with this receive pending: [`mark`]); a resume refuses when
    /// the origin no longer reads it (written in between). `None` in the state of
    /// an older version, which cannot be checked.
    pub mark: Option<SnapId>,
    /// The origin it writes (0, the first, in the state of an older version).
    pub origin: OriginId,
}

impl Pending {
    /// The token `snapctl send --resume` takes.
    pub fn token(&self) -> String {
        resume_token(&self.stream_id, self.next_offset)
    }

    /// Text form (one line; the origin, `origin=K`, only when it is not the first,
    /// so a one-origin store writes what older versions read).
    pub fn encode(&self) -> String {
        let mark = self.mark.map(|m| format!(" {}", m.0)).unwrap_or_default();
        let origin = match self.origin {
            0 => String::new(),
            k => format!(" origin={k}"),
        };
        format!(
            "pending {} {} {} {} {}{mark}{origin}\n",
            hex(&self.stream_id),
            self.name,
            hex(&self.guid),
            self.rollback.0,
            self.next_offset
        )
    }

    /// Parse [`Pending::encode`]'s line.
    pub fn decode(line: &str) -> Option<Pending> {
        let mut w = line.split_whitespace();
        if w.next()? != "pending" {
            return None;
        }
        let mut p = Pending {
            stream_id: super::parse_hex16(w.next()?)?,
            name: w.next()?.to_owned(),
            guid: super::parse_hex16(w.next()?)?,
            rollback: SnapId(w.next()?.parse().ok()?),
            next_offset: w.next()?.parse().ok()?,
            mark: None,
            origin: 0,
        };
        let mut rest = w.peekable();
        if let Some(m) = rest.next_if(|t| !t.starts_with("origin=")) {
            p.mark = Some(SnapId(m.parse().ok()?));
        }
        if let Some(o) = rest.next() {
            p.origin = o.strip_prefix("origin=")?.parse().ok()?;
        }
        rest.next().is_none().then_some(p)
    }
}

/// How to receive.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveOptions {
    /// The origin the stream is applied to (its base is looked up among this
    /// origin's snapshots; B is created in it).
    pub origin: OriginId,
    /// Roll the origin back to A when it changed since A, or drop an unfinished
    /// receive, instead of refusing.
    pub force: bool,
    /// Creation time of the rollback snapshot.
    pub now: u64,
    /// Make applied records durable (and save the resume point) every this many bytes.
    pub checkpoint_bytes: u64,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            origin: 0,
            force: false,
            now: 0,
            checkpoint_bytes: 16 << 20,
        }
    }
}

/// A completed receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Snapshot B on this store.
    pub snap: SnapId,
    /// Its name.
    pub name: String,
    /// Stream bytes read.
    pub bytes: u64,
    /// What `force` did, if anything.
    pub forced: Vec<String>,
}

/// Why a receive failed. Every variant but [`ReceiveError::Cut`] leaves the target as
/// it was (origin rolled back, snapshots untouched, no B).
#[derive(Debug, Error)]
pub enum ReceiveError {
    /// The stream is corrupt; nothing kept.
    #[error("stream refused, the target is unchanged: {0}")]
    Refused(StreamError),
    /// The stream stopped early; what arrived is kept and can be resumed.
    #[error(
        "{error}; received up to offset {offset}: resume with `snapctl send --resume {token} ...`"
    )]
    Cut {
        /// Why it stopped.
        error: StreamError,
        /// Applied and durable up to here.
        offset: u64,
        /// The resume token.
        token: String,
    },
    /// The stream is for another device size.
    #[error(
        "the stream is for a {stream}-byte device, this origin has {here} bytes: a received \
         snapshot has the origin's size (grow a smaller origin here first: snapctl \
         resize-origin --size {stream}; an origin cannot shrink)"
    )]
    Size {
        /// In the stream.
        stream: u64,
        /// Here.
        here: u64,
    },
    /// No snapshot here has A's guid.
    #[error("wrong base: this store holds no snapshot with guid {0} (the stream's from-snapshot)")]
    WrongBase(String),
    /// The origin was written since A.
    #[error("the origin was written since {0} was received; `--force` rolls it back to {0}")]
    OriginChanged(String),
    /// B's name is taken.
    #[error("a snapshot named {0:?} already exists here")]
    NameTaken(String),
    /// The store holds B already (its guid), perhaps of another origin of the pool
    /// or under another name: a store holds a snapshot once.
    #[error(
        "this store holds the stream's snapshot already, as {name:?} (guid {guid}): a \
         snapshot is in a store once (an rbd diff, `--format rbd-diff`, makes a new one)"
    )]
    GuidTaken {
        /// The snapshot here with B's guid.
        name: String,
        /// B's guid.
        guid: String,
    },
    /// Another receive is unfinished.
    #[error("an unfinished receive of {name:?} is pending: resume it (`snapctl send --resume {token}`) or pass `--force` to drop it")]
    Pending {
        /// Its B.
        name: String,
        /// Its token.
        token: String,
    },
    /// A resumed stream does not continue the pending receive.
    #[error("this resumed stream does not continue the pending receive: {0}")]
    ResumeMismatch(String),
    /// The origin was written between the cut and the resume: resuming would give
    /// a snapshot B that differs from the sender's under B's guid.
    #[error(
        "the origin was written since the receive of {name:?} stopped at offset {offset}: it \
         cannot be resumed; send it again from the start and receive with `--force` (which \
         rolls the origin back and drops the unfinished receive)"
    )]
    WrittenSinceCut {
        /// B's name.
        name: String,
        /// Where the receive stopped.
        offset: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// Saving the replication state failed.
    #[error("saving the replication state: {0}")]
    State(std::io::Error),
}

/// Saves the pending receive durably (the daemon: one file,
/// replaced atomically).
pub type SaveState<'a> = dyn FnMut(Option<&Pending>) -> std::io::Result<()> + 'a;

fn rollback_name(id: &[u8; 16], what: &str) -> String {
    format!("recv{what}+{}", &hex(id)[..16])
}

/// Take a new mark of the origin for the pending receive `p` (a snapshot of what
/// the origin reads now), save the state naming it, and delete the old mark. The
/// daemon calls it when it starts with a receive pending, before it serves the
/// origin, so that a resume can tell whether the origin was written since; the
/// receive itself when a stream is cut.
pub fn mark(
    store: &SharedStore,
    p: &mut Pending,
    now: u64,
    save: &mut SaveState<'_>,
) -> Result<(), ReceiveError> {
    let old = p.mark;
    let name = |n: u64| format!("{}.{n}", rollback_name(&p.stream_id, "-mark"));
    let n = store.lock().txn_id().0;
    p.mark = Some(store.create_origin_snapshot(p.origin, &name(n), now)?);
    save(Some(p)).map_err(ReceiveError::State)?;
    Ok(drop_mark(store, old)?)
}

/// Snapshots a receive made for itself that no pending receive names any more:
/// left by a crash between a receive's commit that created one and the save of its
/// state, or between the two commits of `--force`'s rollback (create, merge). Their
/// names are the receive's own (`recv+`, `recv-force+`, `recv-mark+` and 16 hex
/// digits of a stream id), which `validate_name` allows but nothing else makes. The
/// daemon deletes them at start.
pub fn orphans(store: &SharedStore, pending: Option<&Pending>) -> Vec<(SnapId, String)> {
    let named = |id: SnapId| pending.is_some_and(|p| p.rollback == id || p.mark == Some(id));
    store
        .lock()
        .snapshots()
        .into_iter()
        .filter(|s| is_receive_name(&s.name) && !named(s.id))
        .map(|s| (s.id, s.name))
        .collect()
}

/// Whether `name` is one a receive gives its own snapshots (a rollback point, a
/// mark, `--force`'s rollback): `recv+`, `recv-mark+` or `recv-force+` and 16 hex
/// digits of a stream id. Such snapshots are internal: listed by nobody.
pub fn is_receive_name(name: &str) -> bool {
    ["recv+", "recv-force+", "recv-mark+"].iter().any(|prefix| {
        name.strip_prefix(prefix).is_some_and(|rest| {
            let hex = rest.split('.').next().unwrap_or("");
            hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
    })
}

/// Give up the pending receive `p`: the origin reads what it read before the
/// receive began (its rollback snapshot merged), and its mark is deleted. The
/// caller then forgets `p` (saves no state).
pub fn abandon(store: &SharedStore, p: &Pending) -> crate::Result<()> {
    store.merge_snapshot(p.rollback)?;
    drop_mark(store, p.mark)
}

/// Delete mark `m` (a receive's), if there is one and it is still there.
fn drop_mark(store: &SharedStore, m: Option<SnapId>) -> crate::Result<()> {
    if let Some(m) = m {
        if store.lock().exists(Dev::Snap(m)) {
            store.delete_snapshot(m)?;
        }
    }
    Ok(())
}

/// Whether origin `k` reads what snapshot `a` (one of its) reads. The diff lists where they may
/// differ (after a rolled-back receive the origin reads merged copies of A's data,
/// which the element index cannot tell from a write); those ranges are compared.
fn origin_reads(store: &SharedStore, k: OriginId, a: SnapId, size: u64) -> crate::Result<bool> {
    const PIECE: u64 = 1 << 20;
    let mut x = vec![0u8; PIECE as usize];
    let mut y = vec![0u8; PIECE as usize];
    for (off, len) in store.diff(Dev::Origin(k), Dev::Snap(a), 0, size)? {
        let mut p = off;
        while p < off + len {
            let n = (off + len - p).min(PIECE) as usize;
            store.read(Dev::Origin(k), p, &mut x[..n])?;
            store.read(Dev::Snap(a), p, &mut y[..n])?;
            if x[..n] != y[..n] {
                return Ok(false);
            }
            p += n as u64;
        }
    }
    Ok(true)
}

/// Apply the stream read from `input` to origin `opts.origin` of `store`, then take
/// snapshot B of it.
#[allow(clippy::too_many_arguments)]
pub fn receive<R: Read>(
    store: &SharedStore,
    input: R,
    pending: Option<Pending>,
    opts: ReceiveOptions,
    save: &mut SaveState<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<Received, ReceiveError> {
    let mut dec = Decoder::new(input).map_err(ReceiveError::Refused)?;
    let h = dec.header().clone();
    let k = opts.origin;
    let size = store.dev_size(Dev::Origin(k))?;
    // the base is one of this origin's snapshots
    let snaps: Vec<_> = store
        .lock()
        .snapshots()
        .into_iter()
        .filter(|s| s.origin == k)
        .collect();
    if h.size != size {
        return Err(ReceiveError::Size {
            stream: h.size,
            here: size,
        });
    }
    let mut forced = Vec::new();
    let mut state = match (h.resume_offset, pending) {
        (Some(at), Some(p)) => {
            if p.origin != k {
                return Err(ReceiveError::ResumeMismatch(format!(
                    "the pending receive writes origin #{}, this one #{k}",
                    p.origin
                )));
            }
            if p.stream_id != h.stream_id || p.name != h.name || p.guid != h.guid {
                return Err(ReceiveError::ResumeMismatch(format!(
                    "it resumes stream {}, the pending one is {}",
                    hex(&h.stream_id),
                    hex(&p.stream_id)
                )));
            }
            if at > p.next_offset {
                return Err(ReceiveError::ResumeMismatch(format!(
                    "it starts at offset {at}, only {} arrived",
                    p.next_offset
                )));
            }
            if let Some(m) = p.mark {
                if !origin_reads(store, k, m, size)? {
                    return Err(ReceiveError::WrittenSinceCut {
                        name: p.name,
                        offset: p.next_offset,
                    });
                }
            }
            p
        }
        (Some(_), None) => {
            return Err(ReceiveError::ResumeMismatch(
                "no receive is pending here".into(),
            ))
        }
        (None, p) => {
            if let Some(p) = p {
                if !opts.force {
                    return Err(ReceiveError::Pending {
                        token: p.token(),
                        name: p.name,
                    });
                }
                abandon(store, &p)?;
                save(None).map_err(ReceiveError::State)?;
                forced.push(format!(
                    "dropped the unfinished receive of {:?} (origin rolled back)",
                    p.name
                ));
            }
            if store.lock().lookup_in(k, &h.name).is_some() {
                return Err(ReceiveError::NameTaken(h.name));
            }
            // before anything is written: B's guid anywhere in the pool
            if let Some(s) = store
                .lock()
                .snapshots()
                .into_iter()
                .find(|s| s.guid == h.guid)
            {
                return Err(ReceiveError::GuidTaken {
                    name: s.name,
                    guid: hex(&h.guid),
                });
            }
            if let Some(g) = h.from_guid {
                let base = snaps
                    .iter()
                    .find(|s| s.guid == g)
                    .ok_or_else(|| ReceiveError::WrongBase(hex(&g)))?;
                if !origin_reads(store, k, base.id, base.size)? {
                    if !opts.force {
                        return Err(ReceiveError::OriginChanged(base.name.clone()));
                    }
                    let t = store.create_snapshot(
                        &rollback_name(&h.stream_id, "-force"),
                        Some(base.id),
                        opts.now,
                    )?;
                    if let Err(e) = store.merge_snapshot(t) {
                        // never leave the temporary snapshot visible
                        let left = match store.delete_snapshot(t) {
                            Ok(_) => "nothing was changed".to_owned(),
                            Err(d) => format!(
                                "its temporary snapshot {:?} is left, delete it by hand ({d})",
                                rollback_name(&h.stream_id, "-force")
                            ),
                        };
                        return Err(ReceiveError::Store(crate::Error::Invalid(format!(
                            "rolling the origin back to {} failed: {e}; {left}",
                            base.name
                        ))));
                    }
                    forced.push(format!("rolled the origin back to {}", base.name));
                }
            }
            let rollback =
                store.create_origin_snapshot(k, &rollback_name(&h.stream_id, ""), opts.now)?;
            let p = Pending {
                stream_id: h.stream_id,
                name: h.name.clone(),
                guid: h.guid,
                rollback,
                next_offset: 0,
                mark: None,
                origin: k,
            };
            save(Some(&p)).map_err(ReceiveError::State)?;
            p
        }
    };
    let abort = |store: &SharedStore, state: &Pending, save: &mut SaveState<'_>| {
        abandon(store, state)?;
        save(None).map_err(ReceiveError::State)
    };
    let mut applied = 0u64;
    let mut since = 0u64;
    let mut last_end = 0u64;
    loop {
        let rec = match dec.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(error) if error.is_cut() => {
                // Everything applied is durable after this flush: resume after it,
                // once the origin is known unwritten since (the mark).
                store.flush(Dev::Origin(k))?;
                state.next_offset = state.next_offset.max(last_end);
                mark(store, &mut state, opts.now, save)?;
                return Err(ReceiveError::Cut {
                    error,
                    offset: state.next_offset,
                    token: state.token(),
                });
            }
            Err(e) => {
                abort(store, &state, save)?;
                return Err(ReceiveError::Refused(e));
            }
        };
        let (off, len) = rec.range();
        let r = match &rec {
            Record::Data { offset, data } => store.write(Dev::Origin(k), *offset, data),
            Record::Zero { offset, len } => store.write_zeroes(Dev::Origin(k), *offset, *len),
        };
        if let Err(e) = r {
            abort(store, &state, save)?;
            return Err(e.into());
        }
        applied += len;
        since += len;
        last_end = off + len;
        progress(applied);
        if since >= opts.checkpoint_bytes {
            store.flush(Dev::Origin(k))?;
            state.next_offset = off + len;
            save(Some(&state)).map_err(ReceiveError::State)?;
            since = 0;
        }
    }
    store.flush(Dev::Origin(k))?;
    let snap = match store.create_origin_snapshot_as(k, &h.name, h.created, h.guid) {
        Ok(s) => s,
        Err(e) => {
            // B cannot be taken: the origin goes back to what it read before
            abort(store, &state, save)?;
            return Err(e.into());
        }
    };
    store.delete_snapshot(state.rollback)?;
    drop_mark(store, state.mark)?;
    save(None).map_err(ReceiveError::State)?;
    Ok(Received {
        snap,
        name: h.name,
        bytes: dec.position(),
        forced,
    })
}
