//! [`StoreTarget`]: one device of the store (the origin or a snapshot) as a ublk
//! [`Target`].
//!
//! Store errors become errnos through [`exception_store::Error::errno`]; they are
//! logged here because the kernel only sees the number. A write refused for lack of
//! store space (ENOSPC: the store is full, or under the min-free guard) is also
//! counted, for `status` ([`SpaceRefusals`]). While a receive writes an origin, that
//! origin's device refuses writes, discards and zeroing with EBUSY
//! ([`StoreTarget::refusing_writes_while`]): its `O_EXCL` claim keeps mounts and
//! `mkfs` out, not a plain `open(O_WRONLY)`, and a write in the middle of a receive
//! would end up in the snapshot it takes under the sender's guid.
use exception_store::{Dev, DirectSource, DirectStarted, OriginId, SharedStore, Started};
use std::{
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};
use ublk_target::{DirectWrite, Piece, PieceSource, Plan, Target, WriteStart};

/// Writes answered with ENOSPC since the daemon started, over all its devices.
#[derive(Debug, Default)]
pub struct SpaceRefusals(AtomicU64);

impl SpaceRefusals {
    /// How many so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which origin a receive writes now, if any: set by the service, read by the
/// origins' targets ([`StoreTarget::refusing_writes_while`]). Clones share it.
#[derive(Debug, Default, Clone)]
pub struct ReceiveFlag(Arc<AtomicU64>);

impl ReceiveFlag {
    /// A receive writes origin `k` from now on (`None`: no receive runs).
    pub fn set(&self, k: Option<OriginId>) {
        // 0: none; k + 1: origin k
        self.0
            .store(k.map_or(0, |k| u64::from(k) + 1), Ordering::SeqCst);
    }

    /// The origin a receive writes now.
    pub fn get(&self) -> Option<OriginId> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            n => OriginId::try_from(n - 1).ok(),
        }
    }
}

/// A FLUSH of `dev`: its origin, then a (group) commit of the store; see
/// [`SharedStore::flush`].
pub fn flush(store: &SharedStore, dev: Dev) -> exception_store::Result<blockdev::ids::TxnId> {
    store.flush(dev)
}

/// See the module documentation.
#[derive(Debug)]
pub struct StoreTarget {
    store: Arc<SharedStore>,
    dev: Dev,
    uring_reads: bool,
    refusals: Arc<SpaceRefusals>,
    /// A snapshot's size (fixed); `None` for the origin, whose size is the store's
    /// now (it grows with `resize-origin`).
    snap_size: Option<u64>,
    /// Origin writes are refused (EBUSY) while this names the origin: a receive
    /// writes it.
    receiving: Option<ReceiveFlag>,
    /// Writes refused so, for the log.
    busy_refusals: AtomicU64,
}

impl StoreTarget {
    /// Serve `dev` of `store`; with `uring_reads`, origin reads outside a merge are
    /// read from the origin's descriptor by the queue's io_uring
    /// ([`Target::direct_read`]). Writes refused with ENOSPC count in `refusals`.
    pub fn new(
        store: Arc<SharedStore>,
        dev: Dev,
        uring_reads: bool,
        refusals: Arc<SpaceRefusals>,
    ) -> Self {
        let snap_size = match dev {
            Dev::Origin(_) => None,
            // a snapshot that is gone serves nothing
            Dev::Snap(_) => Some(store.dev_size(dev).unwrap_or(0)),
        };
        StoreTarget {
            store,
            dev,
            uring_reads,
            refusals,
            snap_size,
            receiving: None,
            busy_refusals: AtomicU64::new(0),
        }
    }

    /// An origin's device refuses writes, discards and zeroing with EBUSY while
    /// `receiving` names that origin (a receive writes it); a snapshot's device is
    /// not concerned.
    pub fn refusing_writes_while(mut self, receiving: ReceiveFlag) -> Self {
        if let Dev::Origin(_) = self.dev {
            self.receiving = Some(receiving);
        }
        self
    }

    /// EBUSY when origin writes are refused now (logged at the 1st, 2nd, 4th ...).
    fn refused(&self, op: &'static str, offset: u64) -> Option<io::Error> {
        let receiving = self.receiving.as_ref()?.get();
        if receiving.map(Dev::Origin) != Some(self.dev) {
            return None;
        }
        let n = self.busy_refusals.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                op,
                offset,
                refused = n,
                "origin write refused with EBUSY: a receive is writing the origin \
                 (logged at the 1st, 2nd, 4th, 8th ... refusal)"
            );
        }
        Some(io::Error::from_raw_os_error(libc::EBUSY))
    }

    fn map<T>(
        &self,
        op: &'static str,
        offset: u64,
        r: exception_store::Result<T>,
    ) -> io::Result<T> {
        r.map_err(|e| {
            if let exception_store::Error::NoSpace(_) = e {
                let n = self.refusals.0.fetch_add(1, Ordering::Relaxed) + 1;
                // a filesystem on a full store retries: log the 1st, 2nd, 4th, 8th ...
                if n.is_power_of_two() {
                    let why = match e {
                        exception_store::Error::NoSpace(exception_store::Space::Quota) => {
                            "the origin's quota is full"
                        }
                        _ => "no store space",
                    };
                    tracing::warn!(
                        dev = ?self.dev,
                        op,
                        offset,
                        error = %e,
                        refused = n,
                        "write refused with ENOSPC: {why} (logged at the 1st, 2nd, 4th, 8th ... refusal)"
                    );
                }
            } else {
                tracing::warn!(dev = ?self.dev, op, offset, error = %e, "I/O failed");
            }
            io::Error::from_raw_os_error(e.errno())
        })
    }
}

impl Target for StoreTarget {
    /// A snapshot's size is fixed; the origin's grows with `resize-origin` (the store
    /// first, then the kernel is told, [`ublk_target::Device::update_size`]).
    fn size_bytes(&self) -> u64 {
        self.snap_size
            .unwrap_or_else(|| self.store.dev_size(self.dev).unwrap_or(0))
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = self.store.read(self.dev, offset, buf);
        self.map("read", offset, r)
    }

    fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if let Some(e) = self.refused("write", offset) {
            return Err(e);
        }
        let r = self.store.write(self.dev, offset, buf);
        self.map("write", offset, r)
    }

    /// Origin writes begin with their copy-out and finish after the queue's shared
    /// commit ([`SharedStore::origin_write_start`]); snapshot writes are whole.
    fn write_start(&self, offset: u64, buf: &[u8]) -> WriteStart {
        let Dev::Origin(k) = self.dev else {
            return WriteStart::Done(self.write(offset, buf));
        };
        if let Some(e) = self.refused("write", offset) {
            return WriteStart::Done(Err(e));
        }
        match self.store.origin_write_start(k, offset, buf) {
            Ok(Started::Busy) => WriteStart::Busy,
            Ok(Started::Written) => WriteStart::Done(Ok(())),
            Ok(Started::Wait(t)) => WriteStart::Wait(t.0),
            Err(e) => WriteStart::Done(self.map("write", offset, Err(e))),
        }
    }

    fn write_settle(&self, upto: u64) -> io::Result<()> {
        let r = self.store.wait_durable(blockdev::ids::TxnId(upto));
        self.map("commit", 0, r).map(drop)
    }

    fn write_finish(&self, offset: u64, buf: &[u8], settled: bool) -> io::Result<()> {
        let Dev::Origin(k) = self.dev else {
            return Ok(());
        };
        if !settled {
            // the queue reports the settle's error
            self.store.origin_write_abandon(k);
            return Ok(());
        }
        let r = self.store.origin_write_finish(k, offset, buf);
        self.map("write", offset, r)
    }

    fn flush(&self) -> io::Result<()> {
        let r = flush(&self.store, self.dev);
        self.map("flush", 0, r).map(drop)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if let Some(e) = self.refused("discard", offset) {
            return Err(e);
        }
        let r = self.store.discard(self.dev, offset, len);
        self.map("discard", offset, r)
    }

    fn direct_read(&self, offset: u64, len: u64) -> Option<std::os::fd::RawFd> {
        match self.dev {
            Dev::Origin(k) if self.uring_reads => self.store.origin_direct_read(k, offset, len),
            _ => None,
        }
    }

    /// Zero copy: the store's plan ([`SharedStore::read_plan`]: reads outside a
    /// merge; a snapshot's origin pieces carry the check of
    /// [`SharedStore::plan_holds`]).
    fn read_plan(&self, offset: u64, len: u64) -> Option<Plan> {
        let plan = self.store.read_plan(self.dev, offset, len)?;
        let piece = |p: exception_store::DirectPiece| Piece {
            buf_off: p.buf_off,
            len: p.len,
            src: match p.src {
                DirectSource::Fd(fd, at) => PieceSource::Fd(fd, at),
                DirectSource::Zeroes => PieceSource::Zeroes,
            },
        };
        Some(Plan {
            pieces: plan.pieces.into_iter().map(piece).collect(),
            check: plan.check,
        })
    }

    fn plan_holds(&self, check: u64) -> bool {
        self.store.plan_holds(check)
    }

    /// Zero copy: origin writes copy out here and the queue writes their data
    /// ([`SharedStore::origin_write_direct_start`]); snapshot writes are copied.
    fn direct_write_start(&self, offset: u64, len: u64) -> DirectWrite {
        let Dev::Origin(k) = self.dev else {
            return DirectWrite::Unsupported;
        };
        if !self.store.origin_writes_direct(k) {
            return DirectWrite::Unsupported;
        }
        if let Some(e) = self.refused("write", offset) {
            return DirectWrite::Failed(e);
        }
        match self.store.origin_write_direct_start(k, offset, len) {
            Ok(DirectStarted::Busy) => DirectWrite::Busy,
            Ok(DirectStarted::Ready(fd)) => DirectWrite::Ready(fd),
            Ok(DirectStarted::Wait(t, fd)) => DirectWrite::Wait(t.0, fd),
            Err(e) => match self.map("write", offset, Err::<(), _>(e)) {
                Err(e) => DirectWrite::Failed(e),
                Ok(()) => DirectWrite::Unsupported,
            },
        }
    }

    fn direct_write_end(&self, _offset: u64, _len: u64) {
        if let Dev::Origin(k) = self.dev {
            self.store.origin_write_direct_end(k);
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if let Some(e) = self.refused("write_zeroes", offset) {
            return Err(e);
        }
        let r = self.store.write_zeroes(self.dev, offset, len);
        self.map("write_zeroes", offset, r)
    }
}
