//! Settled origin chunks: the steady state of origin writes without the store lock.
//!
//! A chunk is *settled* when an origin write to it needs no copy-out and nothing
//! about it waits for a commit: the newest snapshot already has its own element
//! there (or no snapshot reads it at all), and that element is committed. Most
//! origin writes after the first one to each chunk since a snapshot are of settled
//! chunks; [`SharedStore`](super::SharedStore) lets them go to the origin with no
//! store lock, only the origin gate that every origin write holds.
//!
//! # Invariants
//! - A bit is set only under the store lock, by a writer holding the origin gate,
//!   after the store's copy-out decision found nothing to copy and nothing
//!   uncommitted for the chunk, outside a merge.
//! - The bits belong to one *copy epoch* of the store ([`Store::copy_epoch`]
//!   (crate::Store::copy_epoch)): every change that can make a copy-out needed where
//!   none was (a snapshot created, a merge started, the origin grown) bumps it, and
//!   those changes take the origin gate exclusively, so no write is between its check
//!   of the bits and its data meanwhile. Bits of an older epoch are never read as set:
//!   [`Settled::covers`] compares the epochs, and the first [`Settled::mark`] of a new
//!   epoch clears every bit before it records the epoch.
//! - Memory: one bit per origin chunk (2 MiB for 1 TiB of 64 KiB chunks).
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Settled {
    /// The copy epoch the bits belong to.
    epoch: AtomicU64,
    /// One bit per origin chunk.
    bits: RwLock<Vec<AtomicU64>>,
}

fn words(nr_chunks: u64) -> usize {
    nr_chunks.div_ceil(64) as usize
}

impl Settled {
    /// No chunk settled, for an origin of `nr_chunks` chunks.
    pub(crate) fn new(nr_chunks: u64) -> Self {
        Settled {
            epoch: AtomicU64::new(u64::MAX),
            bits: RwLock::new((0..words(nr_chunks)).map(|_| AtomicU64::new(0)).collect()),
        }
    }

    /// Whether every chunk of `first..=last` is settled in copy epoch `epoch` (the
    /// store's now). Without the store lock.
    pub(crate) fn covers(&self, epoch: u64, first: u64, last: u64) -> bool {
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return false;
        }
        let bits = self.bits.read();
        (first..=last).all(|c| {
            bits.get((c / 64) as usize)
                .is_some_and(|w| w.load(Ordering::SeqCst) & (1 << (c % 64)) != 0)
        })
    }

    /// Record `first..=last` as settled in copy epoch `epoch`. Under the store lock.
    pub(crate) fn mark(&self, epoch: u64, first: u64, last: u64) {
        let bits = self.bits.read();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            for w in bits.iter() {
                w.store(0, Ordering::SeqCst);
            }
            self.epoch.store(epoch, Ordering::SeqCst);
        }
        for c in first..=last {
            if let Some(w) = bits.get((c / 64) as usize) {
                w.fetch_or(1 << (c % 64), Ordering::SeqCst);
            }
        }
    }

    /// The origin now has `nr_chunks` chunks (it grew; its epoch was bumped).
    pub(crate) fn resize(&self, nr_chunks: u64) {
        let mut bits = self.bits.write();
        let n = words(nr_chunks);
        while bits.len() < n {
            bits.push(AtomicU64::new(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Settled;

    #[test]
    fn bits_hold_for_their_epoch_only() {
        let s = Settled::new(200);
        assert!(!s.covers(1, 0, 0));
        s.mark(1, 3, 130);
        assert!(s.covers(1, 3, 130));
        assert!(s.covers(1, 64, 64));
        assert!(!s.covers(1, 2, 3));
        assert!(!s.covers(1, 130, 131));
        // a new epoch: nothing is settled until marked again, and the old bits go
        assert!(!s.covers(2, 3, 3));
        s.mark(2, 10, 10);
        assert!(s.covers(2, 10, 10));
        assert!(!s.covers(2, 3, 3));
        // past the end: never settled; after a growth, markable
        assert!(!s.covers(2, 250, 250));
        s.resize(300);
        s.mark(2, 250, 250);
        assert!(s.covers(2, 250, 250));
    }
}
