//! One ublk queue: its thread's loop that fetches requests, serves them from the
//! [`Target`], and commits the results.
//!
//! # Inline or offloaded
//! With no workers the queue thread serves each request itself, one at a time,
//! except writes the target lets it begin ([`crate::Target::write_start`]): those
//! wait in `crate::batch` and complete together at the end of the batch of
//! completions the ring delivered, after one shared settle (ublk-snap: one commit). With workers ([`crate::DeviceOptions::workers_per_queue`]) it hands
//! each request to a worker thread and goes back to the ring; a worker serves it,
//! queues the result and bumps an eventfd whose read is kept armed on the queue's
//! own io_uring (a target I/O in libublk's terms), so the queue thread wakes, and
//! commits every finished request from its own thread, as io_uring requires.
//!
//! # Direct reads
//! In inline mode, a read the target can hand over as "these bytes of this
//! descriptor" ([`Target::direct_read`]; ublk-snap's origin outside a merge) is not
//! served on the thread: it goes to the queue's own io_uring as a read into the tag's
//! buffer and is committed when its completion arrives, so a queue keeps many such
//! reads in flight instead of one blocking `pread` at a time.
//!
//! # The I/O buffers
//! A tag's buffer belongs to the request of that tag from its fetch until its
//! commit: the kernel copies into it before the fetch completes (writes) and out of
//! it at the commit (reads). While a worker serves a request nobody else touches that
//! buffer, and the buffers outlive the workers (joined before they are freed).
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{mpsc, Arc},
    thread::JoinHandle,
};

use io_uring::{opcode, types};
use libublk::{
    helpers::IoBuf,
    io::{UblkDev, UblkIOCtx, UblkQueue},
    BufDesc, BufDescList, UblkIORes,
};
use parking_lot::Mutex;

use crate::{
    batch::{Begun, Next},
    error::ublk_to_io,
    request::{serve, Op, Request},
    zero_copy, Error, Target,
};

/// The first queue-setup failure of a device, reported by `Device::start`.
pub(crate) type SetupFailure = Arc<Mutex<Option<Error>>>;

/// The `op` of the eventfd read in its target-I/O user data (any value; only one
/// kind of target I/O exists).
const EVENTFD_OP: u32 = 1;
/// The `op` of a direct read ([`Target::direct_read`]) in its target-I/O user data.
const DIRECT_READ_OP: u32 = 2;

/// Serve queue `qid` of `dev` until the device stops. Runs on the queue's thread.
pub(crate) fn run(
    qid: u16,
    dev: &UblkDev,
    target: &Arc<dyn Target>,
    workers: usize,
    failure: &SetupFailure,
) {
    // One buffer per tag; the queue keeps their addresses, so `bufs` outlives `queue`.
    let mut bufs = dev.alloc_queue_io_bufs();
    // Where the workers' eventfd read lands (offloaded mode): declared before `queue`
    // so that it outlives the ring, which may still hold the armed read.
    let mut efd_counter = 0u64;
    // Zero copy: the kernel registers each request's pages as the tag's fixed buffer
    // (`crate::zero_copy`); the device's flags say, also for a recovered device.
    let zc = dev.dev_info.flags & u64::from(libublk::sys::UBLK_F_AUTO_BUF_REG) != 0;
    let regs: Vec<_> = (0..dev.dev_info.queue_depth)
        .map(zero_copy::auto_reg)
        .collect();
    let fetch = if zc {
        BufDescList::AutoRegs(&regs)
    } else {
        BufDescList::Slices(Some(&bufs))
    };
    let queue = match UblkQueue::new(qid, dev).and_then(|q| q.submit_fetch_commands_unified(fetch))
    {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(qid, error = %e, "ublk queue setup failed");
            failure.lock().get_or_insert(Error::QueueSetup {
                qid,
                source: ublk_to_io(e),
            });
            // libublk 0.4.8 keeps its "queue setup failed" notification private, so
            // `start_dev` would wait for this queue's buffers forever. Its public
            // mlock-failure report makes it give up instead; `Device::start` then
            // returns the failure recorded above, not the EPERM.
            dev.notify_buffer_registration_complete(true);
            return;
        }
    };
    tracing::debug!(
        qid,
        dev_id = dev.dev_info.dev_id,
        workers,
        "ublk queue serving"
    );
    if zc {
        // Inline whatever `workers` says: the request buffers belong to this ring.
        zero_copy::serve_queue(&queue, &**target, &mut bufs, dev.tgt.fds[0]);
    } else if workers == 0 {
        // Reads in flight on the ring: their lengths, by tag.
        let mut direct: Vec<Option<u32>> = vec![None; bufs.len()];
        // Writes begun and waiting for the batch's settle (`crate::batch`).
        let mut begun = Begun::with_capacity(bufs.len());
        queue.wait_and_handle_io(|q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
            inline(q, &**target, &mut bufs, &mut direct, &mut begun, tag, ctx);
            if ctx.is_last_cqe() {
                begun.settle(
                    &**target,
                    |t| bufs[usize::from(t)].as_slice(),
                    |t, res| complete(q, &bufs, t, res),
                );
            }
        });
        begun.abandon(&**target, |t| bufs[usize::from(t)].as_slice());
    } else if let Err(e) = offloaded(&queue, &mut bufs, &mut efd_counter, target, workers) {
        tracing::error!(qid, error = %e, "ublk queue workers failed to start");
        // Nothing can serve this queue: stop it, so the device fails visibly instead
        // of hanging its I/O.
        queue.wait_and_handle_io(|q: &UblkQueue, tag: u16, _ctx: &UblkIOCtx| {
            complete(q, &bufs, tag, -libc::EIO);
        });
    }
    tracing::debug!(qid, dev_id = dev.dev_info.dev_id, "ublk queue stopped");
}

/// Handle one completion of an inline queue: a direct read that finished, or a new
/// request (a direct read, a write begun in `begun`, or served on the spot).
fn inline(
    q: &UblkQueue,
    target: &dyn Target,
    bufs: &mut [IoBuf<u8>],
    direct: &mut [Option<u32>],
    begun: &mut Begun,
    tag: u16,
    ctx: &UblkIOCtx,
) {
    if ctx.is_tgt_io() {
        // A direct read finished: all of it, or the request fails.
        let want = direct.get_mut(usize::from(tag)).and_then(Option::take);
        let res = match (want, ctx.result()) {
            (Some(n), r) if r >= 0 && r as u32 == n => r,
            (Some(_), r) if r < 0 => r,
            (Some(_), _) => -libc::EIO,
            (None, _) => return,
        };
        return complete(q, bufs, tag, res);
    }
    let req = match decode(q, tag) {
        Ok(req) => req,
        Err(errno) => return complete(q, bufs, tag, -errno),
    };
    if let Some(n) = submit_direct_read(q, target, &req, tag, bufs[usize::from(tag)].as_mut_slice())
    {
        direct[usize::from(tag)] = Some(n);
        return;
    }
    let next = begun.start(
        target,
        tag,
        &req,
        |t| bufs[usize::from(t)].as_slice(),
        |t, res| complete(q, bufs, t, res),
    );
    let res = match next {
        Next::Complete(res) => res,
        Next::Begun => return,
        Next::Serve => serve(target, &req, bufs[usize::from(tag)].as_mut_slice()),
    };
    complete(q, bufs, tag, res);
}

/// Submit `req` as a read of the target's descriptor on the queue's ring, if it is a
/// read the target allows that for ([`Target::direct_read`]); returns its length.
/// The buffer is the tag's, which nothing else touches until the tag is committed.
fn submit_direct_read(
    q: &UblkQueue,
    target: &dyn Target,
    req: &Request,
    tag: u16,
    buf: &mut [u8],
) -> Option<u32> {
    if req.op != Op::Read {
        return None;
    }
    let n = u32::try_from(req.len_bytes).ok()?;
    let buf = buf.get_mut(..n as usize)?;
    let fd = target.direct_read(req.offset, req.len_bytes)?;
    let sqe = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), n)
        .offset(req.offset)
        .build()
        .user_data(UblkIOCtx::build_user_data(tag, DIRECT_READ_OP, 0, true));
    match q.ublk_submit_sqe_sync(sqe) {
        Ok(()) => Some(n),
        Err(e) => {
            tracing::warn!(qid = q.get_qid(), tag, error = %e, "direct read not submitted; reading synchronously");
            None
        }
    }
}

fn decode(q: &UblkQueue, tag: u16) -> Result<Request, i32> {
    let iod = q.get_iod(tag);
    Request::decode(iod.op_flags, iod.start_sector, iod.nr_sectors)
}

fn complete(q: &UblkQueue, bufs: &[IoBuf<u8>], tag: u16, res: i32) {
    let desc = BufDesc::Slice(bufs[usize::from(tag)].as_slice());
    if let Err(e) = q.complete_io_cmd_unified(tag, desc, Ok(UblkIORes::Result(res))) {
        tracing::error!(qid = q.get_qid(), tag, error = %e, "ublk commit failed");
    }
}

/// A request handed to a worker.
struct Job {
    tag: u16,
    req: Request,
    buf: TagBuf,
}

/// A tag's I/O buffer, lent to the worker serving that tag's request.
struct TagBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is a separate heap allocation per tag that outlives the workers
// (`offloaded` joins them before returning, and the buffers are dropped after it);
// between handing a job out and committing its tag the queue thread does not touch
// that tag's buffer, and the kernel does not reuse a tag before its commit, so the
// worker has exclusive access while it holds the job.
unsafe impl Send for TagBuf {}

/// Results the workers finished, waiting for the queue thread to commit them.
struct Finished {
    results: Mutex<Vec<(u16, i32)>>,
    efd: OwnedFd,
}

impl Finished {
    fn push(&self, tag: u16, res: i32) {
        self.results.lock().push((tag, res));
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let n = unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n != 8 {
            // Only EAGAIN at a counter of u64::MAX - 1 could fail this: impossible
            // with one write per request.
            tracing::error!(error = %std::io::Error::last_os_error(), "eventfd write failed");
        }
    }
}

/// Serve the queue through `workers` threads; returns once the queue is down and
/// every request handed out has been committed (or the device is gone).
fn offloaded(
    queue: &UblkQueue,
    bufs: &mut [IoBuf<u8>],
    counter: &mut u64,
    target: &Arc<dyn Target>,
    workers: usize,
) -> std::io::Result<()> {
    // SAFETY: eventfd(2) has no memory arguments; the result is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let finished = Arc::new(Finished {
        results: Mutex::new(Vec::new()),
        efd,
    });
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let qid = queue.get_qid();
    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(workers);
    for i in 0..workers {
        let spawned = std::thread::Builder::new()
            .name(format!("ublk-q{qid}-w{i}"))
            .spawn({
                let (rx, finished, target) = (rx.clone(), finished.clone(), target.clone());
                move || loop {
                    let job = rx.lock().recv();
                    let Ok(job) = job else { return };
                    // SAFETY: see `TagBuf`: this worker has the buffer to itself.
                    let buf = unsafe { std::slice::from_raw_parts_mut(job.buf.ptr, job.buf.len) };
                    let res = serve(&*target, &job.req, buf);
                    finished.push(job.tag, res);
                }
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                drop(tx);
                join(threads);
                return Err(e);
            }
        }
    }

    let arm = |q: &UblkQueue, counter: &mut u64| {
        let sqe = opcode::Read::new(
            types::Fd(finished.efd.as_raw_fd()),
            (counter as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(UblkIOCtx::build_user_data(0, EVENTFD_OP, 0, true));
        if let Err(e) = q.ublk_submit_sqe_sync(sqe) {
            tracing::error!(qid = q.get_qid(), error = %e, "cannot arm the eventfd read");
        }
    };
    arm(queue, counter);
    // Each tag's buffer, as the address and length its worker writes through.
    let lent: Vec<(usize, usize)> = bufs
        .iter_mut()
        .map(|b| {
            let s = b.as_mut_slice();
            (s.as_mut_ptr() as usize, s.len())
        })
        .collect();
    let bufs: &[IoBuf<u8>] = bufs;
    let mut held = 0usize;
    let commit_finished = |q: &UblkQueue, held: &mut usize| {
        let done = std::mem::take(&mut *finished.results.lock());
        for (tag, res) in done {
            *held = held.saturating_sub(1);
            complete(q, bufs, tag, res);
        }
    };
    queue.wait_and_handle_io(|q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
        if ctx.is_tgt_io() {
            commit_finished(q, &mut held);
            arm(q, counter);
            return;
        }
        match decode(q, tag) {
            Ok(req) => {
                let (addr, len) = lent[usize::from(tag)];
                let job = Job {
                    tag,
                    req,
                    buf: TagBuf {
                        ptr: addr as *mut u8,
                        len,
                    },
                };
                held += 1;
                if tx.send(job).is_err() {
                    held -= 1;
                    complete(q, bufs, tag, -libc::EIO);
                }
            }
            Err(errno) => complete(q, bufs, tag, -errno),
        }
    });
    // The queue is down. Requests still with workers are finished and committed (the
    // kernel may still be waiting for them; on a dead device the commit just fails).
    drop(tx);
    join(threads);
    if held > 0 {
        commit_finished(queue, &mut held);
        let _ = queue.flush_and_wake_io_tasks(|_, _, _| {}, 0);
    }
    Ok(())
}

fn join(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a ublk queue worker panicked");
        }
    }
}
