//! One ublk I/O request: decoding the kernel's descriptor and serving it from a
//! [`Target`]. Pure functions, so the dispatch is unit-tested without a kernel.
use libublk::sys;

use crate::{errno::errno, Target};

/// Bytes per ublk sector; descriptors count in these whatever the logical block size.
pub const SECTOR_SIZE: u64 = 512;

/// The operations this crate serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
}

/// A decoded request: byte offset and length into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    pub op: Op,
    pub offset: u64,
    pub len_bytes: u64,
    /// Forced unit access: the write must be durable before completion.
    pub fua: bool,
}

impl Request {
    /// Decode `ublksrv_io_desc` fields; `Err(errno)` for operations we do not serve.
    pub fn decode(op_flags: u32, start_sector: u64, nr_sectors: u32) -> Result<Request, i32> {
        let op = match op_flags & 0xff {
            sys::UBLK_IO_OP_READ => Op::Read,
            sys::UBLK_IO_OP_WRITE => Op::Write,
            sys::UBLK_IO_OP_FLUSH => Op::Flush,
            sys::UBLK_IO_OP_DISCARD => Op::Discard,
            sys::UBLK_IO_OP_WRITE_ZEROES => Op::WriteZeroes,
            _ => return Err(libc::EOPNOTSUPP),
        };
        if op == Op::Flush {
            // A flush carries no range: blk-mq's flush request has sector (u64)-1.
            return Ok(Request {
                op,
                offset: 0,
                len_bytes: 0,
                fua: false,
            });
        }
        let offset = start_sector.checked_mul(SECTOR_SIZE).ok_or(libc::EINVAL)?;
        Ok(Request {
            op,
            offset,
            len_bytes: u64::from(nr_sectors) * SECTOR_SIZE,
            fua: op_flags & sys::UBLK_IO_F_FUA != 0,
        })
    }
}

/// Serve `req` from `target` using the tag's I/O buffer `buf`.
///
/// Returns what ublk's COMMIT expects: the bytes transferred for reads and writes,
/// 0 for the others, or a negative errno.
pub(crate) fn serve(target: &dyn Target, req: &Request, buf: &mut [u8]) -> i32 {
    if !in_range(target, req) {
        return -libc::EINVAL;
    }
    let res = match req.op {
        Op::Read | Op::Write => {
            let Some((n, done)) = data_len(req, buf.len()) else {
                return -libc::EINVAL;
            };
            let data = &mut buf[..n];
            let res = if req.op == Op::Read {
                target.read(req.offset, data)
            } else {
                target.write(req.offset, data).and_then(|()| {
                    if req.fua {
                        target.flush()
                    } else {
                        Ok(())
                    }
                })
            };
            res.map(|()| done)
        }
        Op::Flush => target.flush().map(|()| 0),
        Op::Discard => target.discard(req.offset, req.len_bytes).map(|()| 0),
        Op::WriteZeroes => target.write_zeroes(req.offset, req.len_bytes).map(|()| 0),
    };
    match res {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(?req, error = %e, "ublk request failed");
            -errno(&e)
        }
    }
}

/// Whether `req` lies inside the target.
pub(crate) fn in_range(target: &dyn Target, req: &Request) -> bool {
    req.offset
        .checked_add(req.len_bytes)
        .is_some_and(|end| end <= target.size_bytes())
}

/// How many bytes of a tag's buffer of `buf_len` bytes a read or write of `req`
/// uses, and that length as ublk's result; `None` if it does not fit.
pub(crate) fn data_len(req: &Request, buf_len: usize) -> Option<(usize, i32)> {
    let n = usize::try_from(req.len_bytes)
        .ok()
        .filter(|&n| n <= buf_len)?;
    Some((n, i32::try_from(n).ok()?))
}

#[cfg(test)]
mod tests;
