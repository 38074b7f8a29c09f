//! The commit I/O baton: superblocks are written one at a time, in transaction
//! order, and this is where the store learns which transaction is durable.
//!
//! A commit has a part that needs the store's state (persist the tables, write the
//! dirty nodes, build the superblock, open the next transaction) and a part that
//! does not (flush the store, write the superblock, flush again). The second part
//! may run without the store lock ([`Store::commit_begin`](super::Store::commit_begin),
//! [`CommitJob::run`], [`Store::commit_end`](super::Store::commit_end)), so that the
//! other origins' copy-outs are planned and linked while it flushes.
//!
//! # Invariants
//! - At most one holder of the baton ([`Baton`]) at a time; every superblock is
//!   written by a holder. A commit takes the baton before it builds its superblock,
//!   so superblock N+1 is never written before N is durable (with two slots, N+1
//!   overwrites N-1: were N not durable, a torn N+1 would leave N-2).
//! - `durable` is the newest transaction whose superblock and everything before it
//!   are on stable storage; `failed` says a commit's I/O failed: nothing after it
//!   may become durable, and the store latches when it learns it.
//! - Lock order: the store lock, then the baton's state. A holder running without
//!   the store lock gives the baton back before it takes the store lock again.
use super::store_io;
use crate::{superblock::write_superblock, superblock::Superblock, Error, Result};
use blockdev::{ids::TxnId, BlockDevice};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;

#[derive(Debug)]
struct State {
    busy: bool,
    durable: TxnId,
    failed: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct CommitIo {
    state: Mutex<State>,
    free: Condvar,
}

impl CommitIo {
    /// `durable`: the transaction found committed at open.
    pub(crate) fn new(durable: TxnId) -> Arc<Self> {
        Arc::new(CommitIo {
            state: Mutex::new(State {
                busy: false,
                durable,
                failed: false,
            }),
            free: Condvar::new(),
        })
    }

    /// Take the baton, waiting for a holder's superblock I/O to end.
    pub(crate) fn acquire(self: &Arc<Self>) -> Baton {
        let mut st = self.state.lock();
        while st.busy {
            self.free.wait(&mut st);
        }
        st.busy = true;
        Baton {
            io: self.clone(),
            durable: st.durable,
            failed: st.failed,
        }
    }
}

/// The right to write the next superblock (module documentation); given back when
/// dropped. Carries what was durable, and whether a commit failed, when it was taken.
#[derive(Debug)]
pub(crate) struct Baton {
    io: Arc<CommitIo>,
    pub(crate) durable: TxnId,
    pub(crate) failed: bool,
}

impl Baton {
    fn outcome(&mut self, r: &Result<TxnId>) {
        let mut st = self.io.state.lock();
        match r {
            Ok(t) => st.durable = st.durable.max(*t),
            Err(_) => st.failed = true,
        }
        self.durable = st.durable;
        self.failed = st.failed;
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        self.io.state.lock().busy = false;
        self.io.free.notify_all();
    }
}

/// The I/O of a commit whose superblock is built: flush the store, write the
/// superblock, flush again. Holds the baton; run it with or without the store lock.
#[derive(Debug)]
pub struct CommitJob {
    pub(crate) baton: Baton,
    pub(crate) dev: Arc<dyn BlockDevice>,
    /// `None`: nothing to commit, a flush of the store only (the durable
    /// transaction stays what it is).
    pub(crate) sb: Option<Superblock>,
    /// Whether the store is flushed before the superblock (false when the caller
    /// flushed it already).
    pub(crate) flush_first: bool,
}

impl CommitJob {
    /// Do the I/O and record the outcome with the baton (a failure marks the store
    /// failed for every later commit); returns the transaction now durable.
    pub fn run(mut self) -> Result<TxnId> {
        let r = self.io();
        self.baton.outcome(&r);
        r
    }

    fn io(&self) -> Result<TxnId> {
        if self.baton.failed {
            return Err(Error::PreviousIo);
        }
        if self.flush_first || self.sb.is_none() {
            self.dev.flush().map_err(store_io(0))?;
        }
        let Some(sb) = &self.sb else {
            return Ok(self.baton.durable);
        };
        write_superblock(&*self.dev, sb)?;
        self.dev.flush().map_err(store_io(0))?;
        Ok(sb.txn_id)
    }
}
