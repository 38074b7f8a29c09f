//! [`ReadPlan`]: where each byte of a read comes from (the origin, a store chunk, or
//! nowhere: zeros), so that a read can be done by someone else (the ublk queue's
//! io_uring, straight into the request's pages) instead of through [`Store::read`].
//!
//! # Invariants
//! - The pieces of a plan cover the read exactly, in order: each starts at the byte
//!   of the caller's buffer where the previous one ended (`buf_off`), none is empty.
//! - Two consecutive pieces never continue each other on the same device (they
//!   would have been one piece): a read of consecutive chunks is one piece.
//! - A plan is what [`Store::read`] reads at the moment it is taken. Whether it stays
//!   true after the store lock is dropped is the caller's business (see
//!   `SharedStore::read_plan` for when it does).
use super::{addr_chunk, pool_addr, Dev, Store};
use crate::Result;

/// Where a piece of a read comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadSource {
    /// The device's origin (the origin itself, or the snapshot's origin), from this
    /// byte offset.
    Origin(u64),
    /// The store device, from this byte offset.
    Store(u64),
    /// A hole: zeros.
    Zeroes,
}

impl ReadSource {
    /// The source of the byte `len` bytes further on, if it continues this one.
    fn advanced(self, len: u64) -> Option<ReadSource> {
        Some(match self {
            ReadSource::Origin(p) => ReadSource::Origin(p.checked_add(len)?),
            ReadSource::Store(p) => ReadSource::Store(p.checked_add(len)?),
            ReadSource::Zeroes => ReadSource::Zeroes,
        })
    }
}

/// One piece of a read: `len` bytes for the caller's buffer at `buf_off`, from `src`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadPiece {
    /// Offset in the caller's buffer (0 for the first piece).
    pub buf_off: u64,
    /// Bytes.
    pub len: u64,
    /// Where they are.
    pub src: ReadSource,
}

/// The pieces of one read, in buffer order (module invariants).
pub type ReadPlan = Vec<ReadPiece>;

impl Store {
    /// Where `len` bytes of `dev` at `offset` are read from now (module docs).
    ///
    /// During a merge, origin addresses not merged yet read as the snapshot being
    /// merged, so the plan names store chunks for them as [`Store::read`] does.
    pub fn read_plan(&mut self, dev: Dev, offset: u64, len: u64) -> Result<ReadPlan> {
        self.check_dev_range(dev, offset, len)?;
        let label = match dev {
            Dev::Origin(_) => None,
            Dev::Snap(id) => Some(self.label_of(id)?),
        };
        let k = self.origin_of(dev)?;
        // A snapshot taken before the origin grew has its own, smaller size.
        let dev_len = self.dev_size(dev)?;
        let cs = self.chunk_size;
        let mut plan: ReadPlan = Vec::new();
        let mut done = 0u64;
        while done < len {
            let pos = offset + done;
            let a = pool_addr(k, pos / cs);
            let off = (pos % cs) as usize;
            let n = ((self.chunk_len_in(dev_len, addr_chunk(a)) - off) as u64).min(len - done);
            let src = match label.or_else(|| self.merging_at(a)) {
                None => ReadSource::Origin(pos),
                Some(l) => {
                    let e = self.load_elems_shared(a)?;
                    self.locate(&e, l, a, off)
                }
            };
            match plan.last_mut() {
                Some(p) if p.src.advanced(p.len) == Some(src) => p.len += n,
                _ => plan.push(ReadPiece {
                    buf_off: done,
                    len: n,
                    src,
                }),
            }
            done += n;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests;
