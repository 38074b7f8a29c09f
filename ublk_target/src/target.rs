//! The [`Target`] trait: what a ublk device serves.
use std::{io, os::fd::RawFd};

/// Where one piece of a planned read ([`Target::read_plan`]) is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceSource {
    /// This descriptor, from this byte offset.
    Fd(RawFd, u64),
    /// Zeros.
    Zeroes,
}

/// One piece of a planned read: `len` bytes of the request's buffer at `buf_off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Offset in the request's buffer.
    pub buf_off: u64,
    /// Bytes (not 0).
    pub len: u64,
    /// Where they are read from.
    pub src: PieceSource,
}

/// A planned read ([`Target::read_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The pieces, covering the request's buffer in order.
    pub pieces: Vec<Piece>,
    /// Read as planned, the pieces are right only if
    /// [`Target::plan_holds`] says so for this value once all of them have landed;
    /// if not, the read is served with [`Target::read`] instead. `None`: always right.
    pub check: Option<u64>,
}

/// What [`Target::direct_write_start`] did with a write.
#[derive(Debug)]
pub enum DirectWrite {
    /// The target cannot have this write's data written by the queue: serve it
    /// with the data in memory ([`Target::write`]).
    Unsupported,
    /// Not begun: starting it now would wait for writes this caller has begun
    /// (as [`WriteStart::Busy`]). Finish those first, then serve it with
    /// [`Target::write`].
    Busy,
    /// Begun: write the data to this descriptor at the write's offset, then
    /// [`Target::direct_write_end`].
    Ready(RawFd),
    /// Begun: settle up to this token first ([`Target::write_settle`]), then as
    /// `Ready`; if the settle fails, end without writing.
    Wait(u64, RawFd),
    /// Failed before anything was written.
    Failed(io::Error),
}

/// What [`Target::write_start`] did with a write.
#[derive(Debug)]
pub enum WriteStart {
    /// The whole write, with this result.
    Done(io::Result<()>),
    /// Begun: it completes after [`Target::write_settle`] with a `upto` of at least
    /// this token, and then [`Target::write_finish`].
    Wait(u64),
    /// Not begun: starting it now would wait for writes this caller has begun. Finish
    /// those first, then serve it with [`Target::write`].
    Busy,
}

/// A byte-addressed volume served by a ublk device.
///
/// Offsets and lengths are in bytes and multiples of the device's logical block size;
/// every request lies inside `[0, size_bytes())`.
///
/// # Concurrency
/// Called from every queue thread at once, so implementations synchronise internally.
/// A queue thread blocks while a call runs, stalling the other requests of that queue.
///
/// # Durability
/// A `write` that returned `Ok` must survive a crash once a later `flush` returns `Ok`.
///
/// # Errors
/// Errors are completed to the kernel as errnos, mapped by [`crate::errno::errno`].
pub trait Target: Send + Sync + 'static {
    /// Size of the volume in bytes, read at every request's bounds check. Constant,
    /// except that it may grow (never shrink): the target grows first, then the
    /// server tells the kernel ([`crate::Device::update_size`]), so the kernel never
    /// sends a request past what this returns. Use an atomic for a size that grows.
    fn size_bytes(&self) -> u64;
    /// Fill `buf` from `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Make every write that returned `Ok` durable (a real commit and fsync).
    fn flush(&self) -> io::Result<()>;
    /// The range is no longer needed; later reads may return anything.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Later reads of the range return zeroes.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Begin a write whose completion may wait, without blocking the queue, for
    /// something many writes can share (ublk-snap: the commit of their copy-outs).
    /// The queue begins every write of a batch, settles once with the largest token
    /// ([`write_settle`](Self::write_settle)), then finishes each
    /// ([`write_finish`](Self::write_finish)). Every `Wait` must be finished exactly
    /// once. The default: the whole write at once ([`write`](Self::write)).
    fn write_start(&self, offset: u64, buf: &[u8]) -> WriteStart {
        WriteStart::Done(self.write(offset, buf))
    }
    /// Do what begun writes wait for, up to token `upto`.
    fn write_settle(&self, upto: u64) -> io::Result<()> {
        let _ = upto;
        Ok(())
    }
    /// Complete a begun write: with `settled` (its settle succeeded) the rest of the
    /// write; without, only release what it holds (the queue fails it with the
    /// settle's error).
    fn write_finish(&self, offset: u64, buf: &[u8], settled: bool) -> io::Result<()> {
        let _ = (offset, buf, settled);
        Ok(())
    }
    /// A descriptor whose bytes at `offset..offset + len` are exactly what
    /// [`read`](Self::read) would return now, so the queue may read it with io_uring
    /// instead (no thread blocked, many reads in flight). The descriptor must stay
    /// open as long as the target. `None` (the default): call `read`.
    fn direct_read(&self, offset: u64, len: u64) -> Option<RawFd> {
        let _ = (offset, len);
        None
    }
    /// Zero copy: where each byte of a read of `len` bytes at `offset` is, as
    /// pieces that cover the request's buffer in order, such that reading them now
    /// returns exactly what [`read`](Self::read) would (or, with a `check`, did if
    /// [`plan_holds`](Self::plan_holds) says so after). Descriptors stay open as long
    /// as the target. `None`: call `read`. The default: one piece from
    /// [`direct_read`](Self::direct_read).
    fn read_plan(&self, offset: u64, len: u64) -> Option<Plan> {
        let fd = self.direct_read(offset, len)?;
        Some(Plan {
            pieces: vec![Piece {
                buf_off: 0,
                len,
                src: PieceSource::Fd(fd, offset),
            }],
            check: None,
        })
    }
    /// Zero copy: whether a plan with this `check`, whose pieces have all landed,
    /// read what [`read`](Self::read) would have (see [`Plan::check`]). The default:
    /// true.
    fn plan_holds(&self, check: u64) -> bool {
        let _ = check;
        true
    }
    /// Zero copy: begin a plain write of `len` bytes at `offset` whose data the
    /// queue writes to a descriptor itself (see [`DirectWrite`]). Every `Ready` and
    /// `Wait` is ended exactly once with [`direct_write_end`](Self::direct_write_end).
    /// The default: `Unsupported`.
    fn direct_write_start(&self, offset: u64, len: u64) -> DirectWrite {
        let _ = (offset, len);
        DirectWrite::Unsupported
    }
    /// The data of a write begun with [`direct_write_start`](Self::direct_write_start)
    /// is written, or will not be: release what the write holds.
    fn direct_write_end(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}
