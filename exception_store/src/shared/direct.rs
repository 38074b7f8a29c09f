//! Reads and origin writes done by someone else: the plan of a read with the
//! descriptors to read it from ([`SharedStore::read_plan`]), and origin writes whose
//! data another party writes to the origin itself
//! ([`SharedStore::origin_write_direct_start`]). The ublk queues use them for zero
//! copy: the request's pages go straight between the kernel and the backing files.
//!
//! # Why a plan stays true while it is carried out
//! A plan is taken under the store lock and carried out without it, so it must stay
//! what [`SharedStore::read`] would return until its reads land:
//! - Origin reads outside a merge are the origin's bytes, as in `read`: a write
//!   racing them may or may not be seen, as with any concurrent write. No plan
//!   during a merge (origin addresses not merged yet read as the snapshot).
//! - A snapshot's origin pieces are checked: an origin chunk a snapshot reads may be
//!   copied out and overwritten right after the lock is dropped (the copy-out, its
//!   commit and the origin write need nothing from the reader), and the snapshot
//!   would then read the origin's new data. Such a plan carries the store's count of
//!   moves ([`Store::moves`](crate::Store::moves)) taken with it; every copy-out
//!   counts a move before its origin write may start, so when the count is the same
//!   after the reads landed ([`SharedStore::plan_holds`]) no origin byte the plan
//!   names has changed. If it moved, the reader reads again through
//!   [`read`](SharedStore::read).
//! - A snapshot's store pieces are checked too: a chunk is freed when no version
//!   reads it any more (a discard or overwrite of that snapshot range racing the
//!   read, or a delete) and may be reused for another address right after that
//!   commit, so the read could return another address's data. Every commit that
//!   makes freed chunks allocatable counts a free first
//!   ([`Store::frees`](crate::Store::frees)); a plan with store pieces carries that
//!   count, and [`SharedStore::plan_holds`] checks it as it checks moves. Frees are
//!   rare (a copy-out frees nothing), so this rarely costs a second read.
//!
//! # Origin writes
//! [`SharedStore::origin_write_direct_start`] is
//! [`SharedStore::origin_write_start`] without the data: it enters the origin gate,
//! copies out, and says whether a commit must come first. The caller then writes
//! the data to the origin descriptor itself and calls
//! [`SharedStore::origin_write_direct_end`] once it is written (or failed), which
//! leaves the gate: so a snapshot is never created between a copy-out decision and
//! its data landing, as for the other origin writes.
use super::SharedStore;
use crate::{Dev, OriginId, ReadSource, Result};
use blockdev::ids::TxnId;
use std::{os::fd::RawFd, sync::atomic::Ordering};

/// Where one piece of a planned read is read from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DirectSource {
    /// This descriptor, from this byte offset.
    Fd(RawFd, u64),
    /// Zeros.
    Zeroes,
}

/// One piece of a planned read: `len` bytes for the buffer at `buf_off`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DirectPiece {
    /// Offset in the request's buffer.
    pub buf_off: u64,
    /// Bytes.
    pub len: u64,
    /// Where they are read from.
    pub src: DirectSource,
}

/// A read's pieces ([`SharedStore::read_plan`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirectPlan {
    /// The pieces, covering the read in order.
    pub pieces: Vec<DirectPiece>,
    /// Some pieces are a snapshot's origin or store chunks: once every piece has
    /// landed, [`SharedStore::plan_holds`] with this says whether they still were.
    pub check: Option<u64>,
}

/// The top bit of a plan's check: set when the plan names no origin chunk, so
/// only frees can change what it reads; the other bits are the count of frees.
/// Clear: the count of moves plus the count of frees.
const FREES_ONLY: u64 = 1 << 63;

/// What [`SharedStore::origin_write_direct_start`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DirectStarted {
    /// Nothing: the gate is closed for now (as [`super::Started::Busy`]).
    Busy,
    /// Copied out, nothing to commit: write the data to this descriptor at the
    /// write's offset, then [`SharedStore::origin_write_direct_end`].
    Ready(RawFd),
    /// Copied out: make the transaction durable first
    /// ([`SharedStore::wait_durable`]), then write as for `Ready`; if it cannot be
    /// made durable, end without writing.
    Wait(TxnId, RawFd),
}

impl SharedStore {
    /// The plan of a read of `len` bytes of `dev` at `offset`, with the descriptor of
    /// each piece, when one can be carried out without the store lock (module docs);
    /// `None`: read through [`read`](Self::read).
    pub fn read_plan(&self, dev: Dev, offset: u64, len: u64) -> Option<DirectPlan> {
        let mut s = self.store.lock();
        if s.is_merging() {
            return None;
        }
        let plan = s.read_plan(dev, offset, len).ok()?;
        let k = s.origin_of(dev).ok()?;
        // Read with the plan, under the lock (moves are counted under it): every
        // move counted before this is in the plan; any after it fails `plan_holds`.
        let (moves, frees) = self.counts();
        drop(s);
        let origin = self.side(k).ok().and_then(|o| o.dev.raw_fd());
        let store = self.store_fd;
        let (mut origin_pieces, mut store_pieces) = (false, false);
        let pieces = plan
            .into_iter()
            .map(|p| {
                let src = match p.src {
                    ReadSource::Origin(at) => {
                        origin_pieces |= !matches!(dev, Dev::Origin(_));
                        DirectSource::Fd(origin?, at)
                    }
                    ReadSource::Store(at) => {
                        store_pieces = true;
                        DirectSource::Fd(store?, at)
                    }
                    ReadSource::Zeroes => DirectSource::Zeroes,
                };
                Some(DirectPiece {
                    buf_off: p.buf_off,
                    len: p.len,
                    src,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let check = if origin_pieces {
            Some(moves.wrapping_add(frees) & !FREES_ONLY)
        } else if store_pieces {
            Some(frees | FREES_ONLY)
        } else {
            None
        };
        Some(DirectPlan { pieces, check })
    }

    /// The counts of moves and frees now.
    fn counts(&self) -> (u64, u64) {
        (
            self.moves.load(Ordering::SeqCst),
            self.frees.load(Ordering::SeqCst) & !FREES_ONLY,
        )
    }

    /// Whether the reads of a plan whose `check` is `check`, all landed now, read
    /// what the plan meant: no move (origin pieces) and no free since it was taken
    /// (module docs). False: read
    /// through [`read`](Self::read) instead.
    pub fn plan_holds(&self, check: u64) -> bool {
        let (moves, frees) = self.counts();
        if check & FREES_ONLY != 0 {
            frees | FREES_ONLY == check
        } else {
            moves.wrapping_add(frees) & !FREES_ONLY == check
        }
    }

    /// Whether writes to origin `k` can be done by the caller
    /// ([`origin_write_direct_start`](Self::origin_write_direct_start)): the origin
    /// has a descriptor.
    pub fn origin_writes_direct(&self, k: OriginId) -> bool {
        self.side(k).is_ok_and(|o| o.dev.raw_fd().is_some())
    }

    /// First half of an origin write of `len` bytes at `offset` whose data the caller
    /// writes itself (module docs). Every `Ready` or `Wait` is matched by exactly one
    /// [`origin_write_direct_end`](Self::origin_write_direct_end).
    pub fn origin_write_direct_start(
        &self,
        k: OriginId,
        offset: u64,
        len: u64,
    ) -> Result<DirectStarted> {
        let o = self.side(k)?;
        let Some(fd) = o.dev.raw_fd() else {
            return Err(crate::Error::Invalid(
                "the origin has no descriptor for direct writes".into(),
            ));
        };
        if !o.gate.try_enter() {
            return Ok(DirectStarted::Busy);
        }
        match self.copy_out(k, &o, offset, len) {
            Ok(Some(t)) => Ok(DirectStarted::Wait(t, fd)),
            Ok(None) => Ok(DirectStarted::Ready(fd)),
            Err(e) => {
                o.gate.leave();
                Err(e)
            }
        }
    }

    /// The data of a write to origin `k` started with
    /// [`origin_write_direct_start`](Self::origin_write_direct_start) is written, or
    /// will not be: leave the gate.
    pub fn origin_write_direct_end(&self, k: OriginId) {
        if let Ok(o) = self.side(k) {
            o.gate.leave();
        }
    }
}

#[cfg(test)]
mod tests;
