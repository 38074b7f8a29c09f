//! One power supply for several devices: after a number of writes and flushes to
//! any of them the power is out, and every write and flush of every one fails (the
//! crash tests of `tests/crash.rs` and `tests/crash_concurrent.rs`).
use blockdev::{BlockDevice, FaultyDevice};
use parking_lot::Mutex;
use std::{io, sync::Arc};

/// One power supply for every device of a round: after `cut_in` more writes or
/// flushes (to any of them) it is out, and every write and flush of every device
/// fails. A cut at a flush leaves the writes before it undecided (the crash mode
/// decides), as a power loss while the disk's cache is being written back does.
#[derive(Debug, Default)]
pub struct Power {
    /// (operations left before the cut, out)
    state: Mutex<(Option<u64>, bool)>,
}

impl Power {
    pub fn cut_after(&self, ops: u64) {
        self.state.lock().0 = Some(ops);
    }
    /// Cut the power now.
    pub fn cut_now(&self) {
        self.state.lock().1 = true;
    }
    pub fn is_out(&self) -> bool {
        self.state.lock().1
    }
    /// A write or flush may go on: the power is on and this is not the one it dies at.
    pub fn op(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        match st.0 {
            _ if st.1 => {}
            Some(0) => st.1 = true,
            Some(n) => {
                st.0 = Some(n - 1);
                return Ok(());
            }
            None => return Ok(()),
        }
        Err(io::Error::other("power cut"))
    }
}

/// A device on the round's power supply. A discard writes zeros (so that the model
/// knows what an origin reads after one, and a power cut may lose it like a write).
#[derive(Debug)]
pub struct Powered {
    pub dev: Arc<FaultyDevice>,
    pub power: Arc<Power>,
}

pub fn powered(dev: &Arc<FaultyDevice>, power: &Arc<Power>) -> Arc<Powered> {
    Arc::new(Powered {
        dev: dev.clone(),
        power: power.clone(),
    })
}

impl BlockDevice for Powered {
    fn len(&self) -> u64 {
        self.dev.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.dev.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.power.op()?;
        self.dev.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.power.op()?;
        self.dev.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_at(&vec![0u8; len as usize], offset)
    }
}
