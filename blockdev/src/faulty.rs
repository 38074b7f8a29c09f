//! A fault-injecting, crash-simulating in-memory device (feature `testing`).
//!
//! It keeps two images: `live` (what reads see) and `durable` (what survives power
//! loss), plus the list of writes since the last flush. [`FaultyDevice::crash_image`]
//! returns what a power cut would leave: the durable image plus a chosen subset of the
//! unflushed writes, whole, dropped or torn at sector granularity, applied in order.
//!
//! A [`FaultPlan`] fails chosen I/Os: the Nth read, write or flush from now, and a
//! "power cut" after N more writes, after which every write and flush fails with EIO
//! (the process is considered dead; the test then takes a crash image).
use crate::{check_range, BlockDevice, MemDevice, SECTOR_SIZE};
use parking_lot::Mutex;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{fmt, io, sync::Arc};

/// Which unflushed writes survive a simulated power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unflushed write is lost.
    DropAll,
    /// Every unflushed write survives (as if the cache was flushed).
    KeepAll,
    /// Each unflushed write survives whole or is lost whole, at random.
    RandomWrites,
    /// Each sector of each unflushed write survives or is lost, at random.
    TornSectors,
}

/// Countdowns of I/Os to fail; shared with the test through an `Arc`.
#[derive(Debug, Default, Clone)]
pub struct FaultPlan {
    /// Fail the read after this many more successful reads (0 = the next one).
    pub fail_read_in: Option<u64>,
    /// Fail the write after this many more successful writes.
    pub fail_write_in: Option<u64>,
    /// Fail the flush after this many more successful flushes.
    pub fail_flush_in: Option<u64>,
    /// Power cut after this many more writes: that write and everything after fails.
    pub power_cut_in: Option<u64>,
    /// Set once the power cut has happened.
    pub dead: bool,
    /// Fail writes (only) that touch this byte range; sticky.
    pub bad_write_range: Option<(u64, u64)>,
}

struct State {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
    reads: u64,
    writes: u64,
    flushes: u64,
}

/// See the module documentation.
pub struct FaultyDevice {
    state: Mutex<State>,
    plan: Arc<Mutex<FaultPlan>>,
}

impl fmt::Debug for FaultyDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyDevice({} bytes)", self.len())
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

fn countdown(c: &mut Option<u64>) -> bool {
    match c {
        Some(0) => {
            *c = None;
            true
        }
        Some(n) => {
            *n -= 1;
            false
        }
        None => false,
    }
}

impl FaultyDevice {
    /// A zero-filled device of `len` bytes, all of it durable.
    pub fn new(len: u64) -> Self {
        Self::from_vec(vec![0; len as usize])
    }

    /// A device whose live and durable images are `v`.
    pub fn from_vec(v: Vec<u8>) -> Self {
        FaultyDevice {
            state: Mutex::new(State {
                durable: v.clone(),
                live: v,
                pending: Vec::new(),
                reads: 0,
                writes: 0,
                flushes: 0,
            }),
            plan: Arc::new(Mutex::new(FaultPlan::default())),
        }
    }

    /// The plan, to change while the device is in use.
    pub fn plan(&self) -> Arc<Mutex<FaultPlan>> {
        self.plan.clone()
    }

    /// Counts of (reads, writes, flushes) that succeeded so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let s = self.state.lock();
        (s.reads, s.writes, s.flushes)
    }

    /// Number of writes since the last successful flush.
    pub fn nr_unflushed(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// What a power cut now would leave behind, as a fresh in-memory image.
    pub fn crash_image(&self, mode: CrashMode, seed: u64) -> Vec<u8> {
        let s = self.state.lock();
        let mut img = s.durable.clone();
        let mut rng = StdRng::seed_from_u64(seed);
        for (off, data) in &s.pending {
            let o = *off as usize;
            match mode {
                CrashMode::DropAll => {}
                CrashMode::KeepAll => img[o..o + data.len()].copy_from_slice(data),
                CrashMode::RandomWrites => {
                    if rng.gen_bool(0.5) {
                        img[o..o + data.len()].copy_from_slice(data)
                    }
                }
                CrashMode::TornSectors => {
                    // Sector boundaries are absolute on the device.
                    let mut pos = o;
                    let end = o + data.len();
                    while pos < end {
                        let next = ((pos as u64 / SECTOR_SIZE + 1) * SECTOR_SIZE) as usize;
                        let next = next.min(end);
                        if rng.gen_bool(0.5) {
                            img[pos..next].copy_from_slice(&data[pos - o..next - o]);
                        }
                        pos = next;
                    }
                }
            }
        }
        img
    }

    /// [`crash_image`](Self::crash_image) wrapped as a new, healthy device.
    pub fn crash(&self, mode: CrashMode, seed: u64) -> FaultyDevice {
        FaultyDevice::from_vec(self.crash_image(mode, seed))
    }

    /// The live image as a plain memory device.
    pub fn to_mem(&self) -> MemDevice {
        MemDevice::from_vec(self.state.lock().live.clone())
    }

    /// Extend both images with zeros to `len` bytes, as `truncate` extends a file
    /// (never shrinks). The new size counts as durable: the store's commit flushes
    /// before any superblock that names it, and that flush (fdatasync) makes a file's
    /// new size durable.
    pub fn extend(&self, len: u64) {
        let mut s = self.state.lock();
        if len as usize > s.live.len() {
            s.live.resize(len as usize, 0);
            s.durable.resize(len as usize, 0);
        }
    }

    /// Flip the bits of `mask` in the byte at `offset`, in both images (media damage).
    pub fn corrupt_byte(&self, offset: u64, mask: u8) {
        let mut s = self.state.lock();
        s.live[offset as usize] ^= mask;
        s.durable[offset as usize] ^= mask;
    }
}

impl BlockDevice for FaultyDevice {
    fn len(&self) -> u64 {
        self.state.lock().live.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        check_range(s.live.len() as u64, offset, buf.len() as u64)?;
        if countdown(&mut self.plan.lock().fail_read_in) {
            return Err(eio("read"));
        }
        let o = offset as usize;
        buf.copy_from_slice(&s.live[o..o + buf.len()]);
        s.reads += 1;
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        check_range(s.live.len() as u64, offset, buf.len() as u64)?;
        {
            let mut p = self.plan.lock();
            if p.dead || countdown(&mut p.power_cut_in) {
                p.dead = true;
                return Err(eio("write (power cut)"));
            }
            if countdown(&mut p.fail_write_in) {
                return Err(eio("write"));
            }
            if let Some((lo, hi)) = p.bad_write_range {
                if offset < hi && offset + buf.len() as u64 > lo {
                    return Err(eio("write (bad range)"));
                }
            }
        }
        let o = offset as usize;
        s.live[o..o + buf.len()].copy_from_slice(buf);
        s.pending.push((offset, buf.to_vec()));
        s.writes += 1;
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        {
            let mut p = self.plan.lock();
            if p.dead {
                return Err(eio("flush (power cut)"));
            }
            if countdown(&mut p.fail_flush_in) {
                return Err(eio("flush"));
            }
        }
        let State {
            live,
            durable,
            pending,
            ..
        } = &mut *s;
        for (off, data) in pending.drain(..) {
            let o = off as usize;
            durable[o..o + data.len()].copy_from_slice(&live[o..o + data.len()]);
        }
        s.flushes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_flushed_drops_unflushed() {
        let d = FaultyDevice::new(8192);
        d.write_at(&[1; 512], 0).unwrap();
        d.flush().unwrap();
        d.write_at(&[2; 1024], 0).unwrap();
        let img = d.crash_image(CrashMode::DropAll, 0);
        assert!(img[..512].iter().all(|&b| b == 1));
        assert!(img[512..1024].iter().all(|&b| b == 0));
        let img = d.crash_image(CrashMode::KeepAll, 0);
        assert!(img[..1024].iter().all(|&b| b == 2));
        // torn: every sector is either old or new, never mixed inside
        for seed in 0..20 {
            let img = d.crash_image(CrashMode::TornSectors, seed);
            for s in img[..1024].chunks(512) {
                assert!(s.iter().all(|&b| b == s[0]));
            }
        }
    }

    #[test]
    fn power_cut_fails_everything_after() {
        let d = FaultyDevice::new(4096);
        d.plan().lock().power_cut_in = Some(1);
        d.write_at(&[1], 0).unwrap();
        assert!(d.write_at(&[1], 1).is_err());
        assert!(d.flush().is_err());
        assert!(d.write_at(&[1], 2).is_err());
    }

    #[test]
    fn countdowns_fail_once() {
        let d = FaultyDevice::new(4096);
        d.plan().lock().fail_write_in = Some(0);
        assert!(d.write_at(&[1], 0).is_err());
        d.write_at(&[1], 0).unwrap();
    }
}
