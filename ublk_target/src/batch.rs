//! [`Begun`]: the writes an inline queue has begun ([`Target::write_start`]) and not
//! yet completed, settled together once per batch of completions.
//!
//! An inline queue serves its requests one at a time on its own thread. A write whose
//! completion waits for something many writes can share (ublk-snap: the commit of
//! its copy-out) is begun and kept here; the queue goes on with the other requests of
//! the batch the ring delivered, and at the batch's last completion settles once for
//! all of them ([`Target::write_settle`] with the largest token: one commit), then
//! finishes and completes each ([`Target::write_finish`]). A queue thus gets a group
//! commit without handing requests to other threads.
//!
//! # Invariants
//! - Every begun write is finished exactly once: by [`Begun::settle`] (completed to
//!   the kernel) or by [`Begun::abandon`] when the queue stops (not completed).
//! - Before the queue serves anything that may block on what begun writes hold (any
//!   request but a read, or a write the target answers `Busy`), it settles them.
use crate::{
    errno::errno,
    request::{data_len, in_range, Op, Request},
    Target, WriteStart,
};

/// What the queue does with a request after [`Begun::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Complete it with this result.
    Complete(i32),
    /// Nothing now: it completes at a later [`Begun::settle`].
    Begun,
    /// Serve it on the spot (`request::serve`).
    Serve,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Begun {
    writes: Vec<(u16, Request)>,
    upto: u64,
}

impl Begun {
    /// Room for a write of each of `depth` tags, so that beginning one never
    /// allocates (the I/O path must not need memory under pressure).
    pub fn with_capacity(depth: usize) -> Self {
        Begun {
            writes: Vec::with_capacity(depth),
            upto: 0,
        }
    }

    /// Start request `req` of `tag` (buffers by tag: `bufs`): a plain write is begun
    /// when the target allows it; before anything else but a read, the begun writes
    /// are settled (and completed through `complete`). Says what the caller does next.
    pub fn start<'b>(
        &mut self,
        target: &dyn Target,
        tag: u16,
        req: &Request,
        bufs: impl Fn(u16) -> &'b [u8],
        complete: impl FnMut(u16, i32),
    ) -> Next {
        if req.op == Op::Write && !req.fua && in_range(target, req) {
            let buf = bufs(tag);
            let Some((n, done)) = data_len(req, buf.len()) else {
                return Next::Complete(-libc::EINVAL);
            };
            match target.write_start(req.offset, &buf[..n]) {
                WriteStart::Done(r) => {
                    return Next::Complete(r.map_or_else(|e| -errno(&e), |()| done))
                }
                WriteStart::Wait(token) => {
                    self.writes.push((tag, *req));
                    self.upto = self.upto.max(token);
                    return Next::Begun;
                }
                WriteStart::Busy => {}
            }
        }
        if req.op != Op::Read {
            self.settle(target, bufs, complete);
        }
        Next::Serve
    }

    /// Settle every begun write at once and complete each.
    pub fn settle<'b>(
        &mut self,
        target: &dyn Target,
        bufs: impl Fn(u16) -> &'b [u8],
        mut complete: impl FnMut(u16, i32),
    ) {
        if self.writes.is_empty() {
            return;
        }
        let settled = target.write_settle(std::mem::take(&mut self.upto));
        for (tag, req) in self.writes.drain(..) {
            let data = written(&req, bufs(tag));
            let res = match &settled {
                Ok(()) => match target.write_finish(req.offset, data, true) {
                    Ok(()) => data.len() as i32,
                    Err(e) => -errno(&e),
                },
                Err(e) => {
                    // release what the write holds; it fails with the settle's error
                    let _ = target.write_finish(req.offset, data, false);
                    -errno(e)
                }
            };
            complete(tag, res);
        }
    }

    /// The queue stopped: release what every begun write holds, completing none
    /// (their requests ended with the queue; the kernel fails or reissues them).
    pub fn abandon<'b>(&mut self, target: &dyn Target, bufs: impl Fn(u16) -> &'b [u8]) {
        self.upto = 0;
        for (tag, req) in self.writes.drain(..) {
            let _ = target.write_finish(req.offset, written(&req, bufs(tag)), false);
        }
    }
}

/// The bytes of a begun write in its tag's buffer (`data_len` checked the length
/// when it began).
fn written<'b>(req: &Request, buf: &'b [u8]) -> &'b [u8] {
    let n = usize::try_from(req.len_bytes).map_or(buf.len(), |n| n.min(buf.len()));
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::{Begun, Next};
    use crate::{
        request::{serve, Op, Request},
        Target, WriteStart,
    };
    use parking_lot::Mutex;
    use std::io;

    /// A target whose writes to offsets below `busy_from` begin with the token
    /// `offset / 4096`, and whose writes from `busy_from` answer `Busy`; it records
    /// every call.
    struct Deferring {
        busy_from: u64,
        fail_settle: bool,
        log: Mutex<Vec<String>>,
    }

    impl Deferring {
        fn new(busy_from: u64, fail_settle: bool) -> Self {
            Deferring {
                busy_from,
                fail_settle,
                log: Mutex::new(Vec::new()),
            }
        }
        fn log(&self) -> Vec<String> {
            self.log.lock().clone()
        }
    }

    impl Target for Deferring {
        fn size_bytes(&self) -> u64 {
            1 << 20
        }
        fn read(&self, offset: u64, _buf: &mut [u8]) -> io::Result<()> {
            self.log.lock().push(format!("read {offset}"));
            Ok(())
        }
        fn write(&self, offset: u64, _buf: &[u8]) -> io::Result<()> {
            self.log.lock().push(format!("write {offset}"));
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            self.log.lock().push("flush".into());
            Ok(())
        }
        fn discard(&self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn write_zeroes(&self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn write_start(&self, offset: u64, _buf: &[u8]) -> WriteStart {
            if offset >= self.busy_from {
                self.log.lock().push(format!("busy {offset}"));
                return WriteStart::Busy;
            }
            self.log.lock().push(format!("start {offset}"));
            WriteStart::Wait(offset / 4096)
        }
        fn write_settle(&self, upto: u64) -> io::Result<()> {
            self.log.lock().push(format!("settle {upto}"));
            if self.fail_settle {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            Ok(())
        }
        fn write_finish(&self, offset: u64, buf: &[u8], settled: bool) -> io::Result<()> {
            self.log
                .lock()
                .push(format!("finish {offset} {} {settled}", buf.len()));
            Ok(())
        }
    }

    fn req(op: Op, offset: u64) -> Request {
        Request {
            op,
            offset,
            len_bytes: 4096,
            fua: false,
        }
    }

    /// Runs `reqs` (tag = index) through one `Begun`, then settles as at the end of a
    /// batch; returns the completions in order.
    fn run(t: &Deferring, reqs: &[Request]) -> Vec<(u16, i32)> {
        let mut bufs: Vec<Vec<u8>> = reqs.iter().map(|_| vec![0u8; 4096]).collect();
        let mut begun = Begun::default();
        let mut done = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let tag = i as u16;
            let next = begun.start(
                t,
                tag,
                r,
                |tag| bufs[usize::from(tag)].as_slice(),
                |tag, res| done.push((tag, res)),
            );
            match next {
                Next::Complete(res) => done.push((tag, res)),
                Next::Begun => {}
                Next::Serve => done.push((tag, serve(t, r, &mut bufs[i]))),
            }
        }
        begun.settle(
            t,
            |tag| bufs[usize::from(tag)].as_slice(),
            |tag, res| done.push((tag, res)),
        );
        done
    }

    /// Writes of one batch share one settle, with the largest token, and complete
    /// after it, in order; reads in between neither wait nor settle.
    #[test]
    fn a_batch_of_writes_settles_once() {
        let t = Deferring::new(u64::MAX, false);
        let done = run(
            &t,
            &[
                req(Op::Write, 3 * 4096),
                req(Op::Read, 0),
                req(Op::Write, 5 * 4096),
                req(Op::Write, 4 * 4096),
            ],
        );
        assert_eq!(done, vec![(1, 4096), (0, 4096), (2, 4096), (3, 4096)]);
        assert_eq!(
            t.log(),
            [
                "start 12288",
                "read 0",
                "start 20480",
                "start 16384",
                "settle 5",
                "finish 12288 4096 true",
                "finish 20480 4096 true",
                "finish 16384 4096 true"
            ]
        );
    }

    /// A request that may block (here a flush, then a write the target answers
    /// `Busy`) settles the begun writes before it is served.
    #[test]
    fn a_request_that_may_block_settles_first() {
        let t = Deferring::new(8 * 4096, false);
        let done = run(
            &t,
            &[
                req(Op::Write, 4096),
                req(Op::Flush, 0),
                req(Op::Write, 2 * 4096),
                req(Op::Write, 9 * 4096),
            ],
        );
        assert_eq!(done, vec![(0, 4096), (1, 0), (2, 4096), (3, 4096)]);
        assert_eq!(
            t.log(),
            [
                "start 4096",
                "settle 1",
                "finish 4096 4096 true",
                "flush",
                "start 8192",
                "busy 36864",
                "settle 2",
                "finish 8192 4096 true",
                "write 36864"
            ]
        );
    }

    /// A failed settle fails every begun write with its errno and still releases
    /// each; abandoning releases without completing.
    #[test]
    fn a_failed_settle_fails_and_releases_every_write() {
        let t = Deferring::new(u64::MAX, true);
        let done = run(&t, &[req(Op::Write, 0), req(Op::Write, 4096)]);
        assert_eq!(done, vec![(0, -libc::EIO), (1, -libc::EIO)]);
        assert_eq!(
            &t.log()[2..],
            ["settle 1", "finish 0 4096 false", "finish 4096 4096 false"]
        );

        let t = Deferring::new(u64::MAX, false);
        let buf = vec![0u8; 4096];
        let mut begun = Begun::default();
        let next = begun.start(&t, 0, &req(Op::Write, 0), |_| &buf[..], |_, _| {});
        assert_eq!(next, Next::Begun);
        begun.abandon(&t, |_| &buf[..]);
        assert_eq!(t.log(), ["start 0", "finish 0 4096 false"]);
    }
}
