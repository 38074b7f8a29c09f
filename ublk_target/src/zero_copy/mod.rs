//! [`ZeroCopy`]: how an inline queue of a zero-copy device (`UBLK_F_AUTO_BUF_REG`)
//! serves its requests.
//!
//! The kernel registers each request's pages in the queue's io_uring as the fixed
//! buffer of the request's tag, so request data never passes through the daemon:
//! - A read the target can plan ([`Target::read_plan`]) is one fixed-buffer read per
//!   piece, from the piece's descriptor into the request's buffer at the piece's
//!   offset; holes are read from `/dev/zero`. It completes when every piece landed,
//!   unless its plan has a check that no longer holds ([`Target::plan_holds`]: the
//!   data moved while it was read): then it is read again on the copy path.
//! - A plain origin write ([`Target::direct_write_start`]) is one fixed-buffer write
//!   from the request's buffer to the origin, after its copy-out and, when the target
//!   asks, after the batch's shared settle (one commit for all of them, as
//!   `crate::batch` does for copied writes). The target's hold on the write (its
//!   origin gate entry) lasts until the write's completion arrives.
//! - A fixed-buffer operation that completes with `EOPNOTSUPP` or `EINVAL` says that
//!   a backing file cannot take fixed-buffer I/O: the request is served again on the
//!   copy path (a read at once, a write once no direct write is held) and so is
//!   every later request of the queue (logged once).
//! - Everything else (snapshot writes, flushes, discards, reads the target cannot
//!   plan, requests the kernel could not register) takes the copy path: the data is
//!   copied between the request and the tag's own buffer with `UBLK_F_USER_COPY`
//!   (`pread`/`pwrite` on `/dev/ublkcN`) and served as on a copying device.
//!
//! # Invariants
//! - Every `Ready`/`Wait` of [`Target::direct_write_start`] is ended exactly once:
//!   when its fixed write completes, fails to submit, or its settle fails, or when
//!   the queue stops ([`ZeroCopy::abandon`]).
//! - The queue never blocks in the target while it holds begun or in-flight direct
//!   writes (`held > 0`): a request that may block on what they hold (the target
//!   answered `Busy`, or one served on the copy path that is not a read) waits in
//!   `deferred` until they are all done, and from then on, so that it is not
//!   starved, every new non-read request queues behind it.
//! - A tag has at most one request in flight; its state lives in `tags` from the
//!   first submitted operation to its completion.
use std::{collections::VecDeque, io, os::fd::RawFd};

use crate::{
    errno::errno,
    request::{data_len, in_range, serve, Op, Request},
    DirectWrite, PieceSource, Target,
};

/// A fixed-buffer operation on tag `tag`'s registered request buffer: `len` bytes
/// between `fd` at `file_off` and the buffer at `buf_off`, in the direction `read`
/// says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fixed {
    /// The tag, whose request buffer is fixed buffer `tag` of the queue's ring.
    pub tag: u16,
    /// Read `fd` into the buffer; `false`: write the buffer to `fd`.
    pub read: bool,
    /// The backing file.
    pub fd: RawFd,
    /// Byte offset in `fd`.
    pub file_off: u64,
    /// Byte offset in the request buffer.
    pub buf_off: u64,
    /// Bytes.
    pub len: u32,
}

/// What a zero-copy queue needs from its io_uring and its device: submitting
/// fixed-buffer I/O on a tag's registered buffer, copying a tag's data in or out
/// (user copy), and completing a tag. Completions of submitted operations come back
/// through [`ZeroCopy::on_done`].
pub(crate) trait ZcIo {
    /// Submit a fixed-buffer read or write ([`Fixed`]).
    fn fixed(&mut self, op: Fixed) -> io::Result<()>;
    /// Copy the request's data into `buf` (a write's data).
    fn copy_in(&mut self, tag: u16, buf: &mut [u8]) -> io::Result<()>;
    /// Copy `buf` into the request (a read's data).
    fn copy_out(&mut self, tag: u16, buf: &[u8]) -> io::Result<()>;
    /// Complete the tag's request with `res` (bytes or a negative errno).
    fn complete(&mut self, tag: u16, res: i32);
}

/// A request of a tag with operations in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    req: Request,
    /// Operations not completed yet.
    left: u32,
    /// Bytes the completed ones moved.
    got: u64,
    /// The first error.
    err: Option<i32>,
    /// A direct write: ended with `direct_write_end` when done.
    write: bool,
    /// A read whose plan has this check ([`Target::plan_holds`]).
    check: Option<u64>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct ZeroCopy {
    tags: Vec<Option<InFlight>>,
    /// Direct writes waiting for the batch's settle: tag, request, descriptor.
    begun: Vec<(u16, Request, RawFd)>,
    upto: u64,
    /// Direct writes begun and not ended.
    held: usize,
    deferred: VecDeque<(u16, Request)>,
    /// `/dev/zero`, where holes are read from.
    zero_fd: RawFd,
    /// A backing file refused fixed-buffer I/O: everything takes the copy path.
    fixed_off: bool,
    /// What this queue did, for its log line when it stops.
    pub counts: Counts,
}

/// Requests a zero-copy queue served each way.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    /// Reads done with fixed-buffer reads.
    pub fixed_reads: u64,
    /// Origin writes done with a fixed-buffer write.
    pub fixed_writes: u64,
    /// Requests served on the copy path.
    pub copied: u64,
    /// Fixed-buffer reads whose plan no longer held when they landed, read again
    /// on the copy path (counted in `copied` too).
    pub reread: u64,
    /// Requests whose fixed-buffer I/O a backing file refused, served again on the
    /// copy path (counted in `copied` too).
    pub refused: u64,
}

impl ZeroCopy {
    /// A queue of `depth` tags; holes are read from `zero_fd`.
    pub fn new(depth: usize, zero_fd: RawFd) -> Self {
        ZeroCopy {
            tags: vec![None; depth],
            // At most one entry per tag: sized once, so serving never allocates.
            begun: Vec::with_capacity(depth),
            upto: 0,
            held: 0,
            deferred: VecDeque::with_capacity(depth),
            zero_fd,
            fixed_off: false,
            counts: Counts::default(),
        }
    }

    /// A new request `req` of `tag`; `registered`: the kernel registered its buffer
    /// (not the case after a failed auto registration with its fallback), `buf` is
    /// the tag's own buffer for the copy path.
    pub fn on_request(
        &mut self,
        target: &dyn Target,
        io: &mut dyn ZcIo,
        tag: u16,
        req: Request,
        registered: bool,
        buf: &mut [u8],
    ) {
        let fits = in_range(target, &req) && data_len(&req, buf.len()).is_some();
        let registered = registered && !self.fixed_off;
        if req.op == Op::Read {
            if registered && fits && self.submit_read(target, io, tag, req) {
                return;
            }
            return self.copy_path(target, io, tag, &req, buf);
        }
        let blocked = self.held > 0 || !self.deferred.is_empty();
        if req.op == Op::Write && !req.fua && registered && fits && self.deferred.is_empty() {
            match target.direct_write_start(req.offset, req.len_bytes) {
                DirectWrite::Unsupported => {}
                DirectWrite::Busy => return self.deferred.push_back((tag, req)),
                DirectWrite::Failed(e) => return io.complete(tag, -errno(&e)),
                DirectWrite::Ready(fd) => {
                    self.held += 1;
                    return self.submit_write(target, io, tag, req, fd);
                }
                DirectWrite::Wait(token, fd) => {
                    self.held += 1;
                    self.upto = self.upto.max(token);
                    return self.begun.push((tag, req, fd));
                }
            }
        }
        if blocked {
            return self.deferred.push_back((tag, req));
        }
        self.copy_path(target, io, tag, &req, buf);
    }

    /// An operation submitted for `tag` completed with `res`; `buf` is the tag's own
    /// buffer (a read whose plan did not hold is read again through it).
    pub fn on_done(
        &mut self,
        target: &dyn Target,
        io: &mut dyn ZcIo,
        tag: u16,
        res: i32,
        buf: &mut [u8],
    ) {
        let Some(slot) = self.tags.get_mut(usize::from(tag)) else {
            return;
        };
        let Some(f) = slot.as_mut() else { return };
        f.left = f.left.saturating_sub(1);
        match u64::try_from(res) {
            Ok(n) => f.got += n,
            Err(_) => {
                f.err.get_or_insert(res);
            }
        }
        if f.left > 0 {
            return;
        }
        let f = *f;
        *slot = None;
        if f.err.is_some_and(is_refusal) {
            return self.refused(target, io, tag, f, buf);
        }
        if let (None, Some(check)) = (f.err, f.check) {
            // a read that failed fails as it is; one that read everything is
            // checked
            if f.got == f.req.len_bytes && !target.plan_holds(check) {
                self.counts.reread += 1;
                return self.copy_path(target, io, tag, &f.req, buf);
            }
        }
        self.finish(target, io, tag, f);
    }

    /// The end of a batch of completions: settle the begun direct writes once and
    /// submit them. Then serve each of [`next_deferred`](Self::next_deferred) with
    /// [`copy_path`](Self::copy_path).
    pub fn end_of_batch(&mut self, target: &dyn Target, io: &mut dyn ZcIo) {
        if self.begun.is_empty() {
            return;
        }
        let settled = target.write_settle(std::mem::take(&mut self.upto));
        let mut begun = std::mem::take(&mut self.begun);
        for (tag, req, fd) in begun.drain(..) {
            match &settled {
                Ok(()) => self.submit_write(target, io, tag, req, fd),
                Err(e) => {
                    self.end_write(target, &req);
                    io.complete(tag, -errno(e));
                }
            }
        }
        // keep the capacity: no allocation on the next batch
        if self.begun.is_empty() {
            self.begun = begun;
        }
    }

    /// A deferred request that may be served now: only once no direct write is held,
    /// so that it may block in the target (a write the target answered `Busy` for
    /// then waits for the exclusive operation, holding nothing that waits for it).
    pub fn next_deferred(&mut self) -> Option<(u16, Request)> {
        if self.held > 0 {
            return None;
        }
        self.deferred.pop_front()
    }

    /// The queue stopped: end every direct write still held (their requests ended
    /// with the queue; the kernel fails or reissues them), complete nothing.
    pub fn abandon(&mut self, target: &dyn Target) {
        for (_, req, _) in std::mem::take(&mut self.begun) {
            self.end_write(target, &req);
        }
        for f in self.tags.iter_mut().filter_map(Option::take) {
            if f.write {
                target.direct_write_end(f.req.offset, f.req.len_bytes);
            }
        }
        self.held = 0;
        self.deferred.clear();
    }

    /// Submit a read's plan; false when there is none or nothing was submitted.
    fn submit_read(
        &mut self,
        target: &dyn Target,
        io: &mut dyn ZcIo,
        tag: u16,
        req: Request,
    ) -> bool {
        let Some(plan) = target.read_plan(req.offset, req.len_bytes) else {
            return false;
        };
        let mut f = InFlight {
            req,
            left: 0,
            got: 0,
            err: None,
            write: false,
            check: plan.check,
        };
        for p in &plan.pieces {
            let (fd, at) = match p.src {
                PieceSource::Fd(fd, at) => (fd, at),
                PieceSource::Zeroes => (self.zero_fd, 0),
            };
            let r = u32::try_from(p.len)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
                .and_then(|len| {
                    io.fixed(Fixed {
                        tag,
                        read: true,
                        fd,
                        file_off: at,
                        buf_off: p.buf_off,
                        len,
                    })
                });
            match r {
                Ok(()) => f.left += 1,
                Err(e) if f.left == 0 => {
                    tracing::debug!(tag, error = %e, "fixed read not submitted; copying");
                    return false;
                }
                Err(e) => {
                    // Some pieces are in flight: fail once they are done.
                    f.err = Some(-errno(&e));
                    break;
                }
            }
        }
        if f.left == 0 {
            // An empty plan: nothing to read.
            io.complete(tag, 0);
            return true;
        }
        self.tags[usize::from(tag)] = Some(f);
        self.counts.fixed_reads += 1;
        true
    }

    /// Submit a begun direct write's data (the target's hold is counted in `held`).
    fn submit_write(
        &mut self,
        target: &dyn Target,
        io: &mut dyn ZcIo,
        tag: u16,
        req: Request,
        fd: RawFd,
    ) {
        // `on_request` checked that the length fits a tag's buffer (<= 32 MiB).
        let n = req.len_bytes as u32;
        let op = Fixed {
            tag,
            read: false,
            fd,
            file_off: req.offset,
            buf_off: 0,
            len: n,
        };
        match io.fixed(op) {
            Ok(()) => {
                self.counts.fixed_writes += 1;
                self.tags[usize::from(tag)] = Some(InFlight {
                    req,
                    left: 1,
                    got: 0,
                    err: None,
                    write: true,
                    check: None,
                });
            }
            Err(e) => {
                self.end_write(target, &req);
                io.complete(tag, -errno(&e));
            }
        }
    }

    /// A backing file refused the fixed-buffer I/O of `f` (all of it done): from now
    /// on the queue copies; `f` is served again on the copy path, a write once no
    /// direct write is held (it may block in the target: module invariants).
    fn refused(
        &mut self,
        target: &dyn Target,
        io: &mut dyn ZcIo,
        tag: u16,
        f: InFlight,
        buf: &mut [u8],
    ) {
        if !self.fixed_off {
            tracing::warn!(
                tag,
                errno = f.err.map_or(0, |e| -e),
                "a backing file refused fixed-buffer I/O: this queue copies from now on"
            );
            self.fixed_off = true;
        }
        self.counts.refused += 1;
        if f.write {
            self.end_write(target, &f.req);
            self.deferred.push_back((tag, f.req));
        } else {
            self.copy_path(target, io, tag, &f.req, buf);
        }
    }

    fn end_write(&mut self, target: &dyn Target, req: &Request) {
        target.direct_write_end(req.offset, req.len_bytes);
        self.held = self.held.saturating_sub(1);
    }

    fn finish(&mut self, target: &dyn Target, io: &mut dyn ZcIo, tag: u16, f: InFlight) {
        if f.write {
            self.end_write(target, &f.req);
        }
        let res = match f.err {
            Some(e) => e,
            // every piece moved all its bytes: the request's length in total
            None if f.got == f.req.len_bytes => i32::try_from(f.got).unwrap_or(-libc::EIO),
            None => -libc::EIO,
        };
        io.complete(tag, res);
    }

    /// Serve `req` with its data in the tag's own buffer `buf`, copied from or to
    /// the request (user copy).
    pub fn copy_path(
        &mut self,
        target: &dyn Target,
        io: &mut dyn ZcIo,
        tag: u16,
        req: &Request,
        buf: &mut [u8],
    ) {
        self.counts.copied += 1;
        let data = matches!(req.op, Op::Read | Op::Write) && in_range(target, req);
        let n = data
            .then(|| data_len(req, buf.len()).map(|(n, _)| n))
            .flatten();
        if req.op == Op::Write {
            if let Some(n) = n {
                if let Err(e) = io.copy_in(tag, &mut buf[..n]) {
                    return io.complete(tag, -errno(&e));
                }
            }
        }
        let res = serve(target, req, buf);
        if req.op == Op::Read && res > 0 {
            if let Some(n) = n {
                if let Err(e) = io.copy_out(tag, &buf[..n]) {
                    return io.complete(tag, -errno(&e));
                }
            }
        }
        io.complete(tag, res);
    }
}

/// Whether a fixed-buffer operation's error says that its file cannot take
/// fixed-buffer I/O (rather than that the I/O failed).
fn is_refusal(res: i32) -> bool {
    res == -libc::EOPNOTSUPP || res == -libc::EINVAL
}

mod ring;
#[cfg(test)]
mod tests;

pub(crate) use ring::{auto_reg, serve_queue};
