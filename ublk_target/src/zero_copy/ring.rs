//! The real [`ZcIo`]: a zero-copy queue's io_uring and `/dev/ublkcN`, and the loop
//! that serves the queue with [`ZeroCopy`].
use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, RawFd},
};

use io_uring::{opcode, types};
use libublk::{
    helpers::IoBuf,
    io::{UblkIOCtx, UblkQueue},
    sys, BufDesc, UblkIORes,
};

use super::{Fixed, ZcIo, ZeroCopy};
use crate::{request::Request, Target};

/// The `op` of a zero-copy fixed-buffer read or write in its target-I/O user data
/// (distinct from `crate::queue`'s).
const FIXED_OP: u32 = 3;

/// A tag's auto-registration: its request buffer becomes fixed buffer `tag` of the
/// queue's ring; if the kernel cannot register it, the request still comes (with
/// `UBLK_IO_F_NEED_REG_BUF`) and is served on the copy path.
pub(crate) fn auto_reg(tag: u16) -> sys::ublk_auto_buf_reg {
    sys::ublk_auto_buf_reg {
        index: tag,
        flags: sys::UBLK_AUTO_BUF_REG_FALLBACK as u8,
        ..Default::default()
    }
}

/// [`ZcIo`] on a libublk queue.
struct Ring<'q, 'd> {
    q: &'q UblkQueue<'d>,
    /// `/dev/ublkcN`, for user copy.
    cdev: RawFd,
}

impl Ring<'_, '_> {
    fn push(&self, sqe: io_uring::squeue::Entry, tag: u16) -> io::Result<()> {
        let sqe = sqe.user_data(UblkIOCtx::build_user_data(tag, FIXED_OP, 0, true));
        self.q
            .ublk_submit_sqe_sync(sqe)
            .map_err(crate::error::ublk_to_io)
    }

    fn pos(&self, tag: u16) -> u64 {
        UblkIOCtx::ublk_user_copy_pos(self.q.get_qid(), tag, 0)
    }
}

impl ZcIo for Ring<'_, '_> {
    fn fixed(&mut self, op: Fixed) -> io::Result<()> {
        let fd = types::Fd(op.fd);
        // For a kernel-registered buffer the address is the offset into it.
        let sqe = if op.read {
            opcode::ReadFixed::new(fd, op.buf_off as *mut u8, op.len, op.tag)
                .offset(op.file_off)
                .build()
        } else {
            opcode::WriteFixed::new(fd, op.buf_off as *const u8, op.len, op.tag)
                .offset(op.file_off)
                .build()
        };
        self.push(sqe, op.tag)
    }

    fn copy_in(&mut self, tag: u16, buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: reads at most `buf.len()` bytes into the live, exclusive `buf`.
        let n = unsafe {
            libc::pread(
                self.cdev,
                buf.as_mut_ptr().cast(),
                buf.len(),
                self.pos(tag) as libc::off_t,
            )
        };
        check_len(n, buf.len())
    }

    fn copy_out(&mut self, tag: u16, buf: &[u8]) -> io::Result<()> {
        // SAFETY: writes `buf.len()` bytes from the live `buf`.
        let n = unsafe {
            libc::pwrite(
                self.cdev,
                buf.as_ptr().cast(),
                buf.len(),
                self.pos(tag) as libc::off_t,
            )
        };
        check_len(n, buf.len())
    }

    fn complete(&mut self, tag: u16, res: i32) {
        let desc = BufDesc::AutoReg(auto_reg(tag));
        if let Err(e) = self
            .q
            .complete_io_cmd_unified(tag, desc, Ok(UblkIORes::Result(res)))
        {
            tracing::error!(qid = self.q.get_qid(), tag, error = %e, "ublk commit failed");
        }
    }
}

fn check_len(n: isize, want: usize) -> io::Result<()> {
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != want {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}

/// Serve an inline zero-copy queue until it stops. `bufs`: each tag's own buffer,
/// for the copy path; `cdev`: the device's `/dev/ublkcN` descriptor.
pub(crate) fn serve_queue(q: &UblkQueue, target: &dyn Target, bufs: &mut [IoBuf<u8>], cdev: RawFd) {
    let zero = match File::open("/dev/zero") {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot open /dev/zero; failing the queue's I/O");
            q.wait_and_handle_io(|q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
                if !ctx.is_tgt_io() {
                    Ring { q, cdev }.complete(tag, -libc::EIO);
                }
            });
            return;
        }
    };
    let mut zc = ZeroCopy::new(bufs.len(), zero.as_raw_fd());
    q.wait_and_handle_io(|q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
        let mut ring = Ring { q, cdev };
        if ctx.is_tgt_io() {
            if UblkIOCtx::user_data_to_op(ctx.user_data()) == FIXED_OP {
                let buf = bufs[usize::from(tag)].as_mut_slice();
                zc.on_done(target, &mut ring, tag, ctx.result(), buf);
            }
        } else {
            let iod = q.get_iod(tag);
            let registered = iod.op_flags & sys::UBLK_IO_F_NEED_REG_BUF == 0;
            match Request::decode(iod.op_flags, iod.start_sector, iod.nr_sectors) {
                Ok(req) => {
                    let buf = bufs[usize::from(tag)].as_mut_slice();
                    zc.on_request(target, &mut ring, tag, req, registered, buf);
                }
                Err(errno) => ring.complete(tag, -errno),
            }
        }
        if ctx.is_last_cqe() {
            zc.end_of_batch(target, &mut ring);
            while let Some((t, req)) = zc.next_deferred() {
                let buf = bufs[usize::from(t)].as_mut_slice();
                zc.copy_path(target, &mut ring, t, &req, buf);
            }
        }
    });
    zc.abandon(target);
    let c = zc.counts;
    tracing::info!(
        qid = q.get_qid(),
        fixed_reads = c.fixed_reads,
        fixed_writes = c.fixed_writes,
        copied = c.copied,
        reread = c.reread,
        refused = c.refused,
        "zero-copy queue stopped"
    );
}
