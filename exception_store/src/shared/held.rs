//! A test device whose reads or flushes stop, once armed, until the test lets them
//! go on (or fail): a copy-out's read or a commit's flush, made to last, so that a
//! test can look at what other threads may do meanwhile.
use blockdev::{BlockDevice, MemDevice};
use std::sync::{
    mpsc::{sync_channel, Receiver, SyncSender},
    Arc, Mutex,
};

/// Which operation an armed [`Held`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Reads,
    Flushes,
}

/// See the module documentation.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) inner: MemDevice,
    what: Hold,
    armed: Mutex<Option<SyncSender<()>>>,
    go: Mutex<Receiver<bool>>,
}

impl Held {
    /// Over `inner`, not armed yet; the sender lets a held operation go on (`true`)
    /// or fail (`false`).
    pub(super) fn new(inner: MemDevice, what: Hold) -> (Arc<Self>, SyncSender<bool>) {
        let (go, gone) = sync_channel(1);
        let d = Arc::new(Held {
            inner,
            what,
            armed: Mutex::new(None),
            go: Mutex::new(gone),
        });
        (d, go)
    }

    /// Hold the next such operation, signalling on `at` when it starts.
    pub(super) fn arm(&self, at: SyncSender<()>) {
        *self.armed.lock().expect("lock") = Some(at);
    }

    fn hold(&self, what: Hold) -> std::io::Result<()> {
        if what != self.what {
            return Ok(());
        }
        let Some(tx) = self.armed.lock().expect("lock").take() else {
            return Ok(());
        };
        tx.send(()).expect("test waits");
        if self.go.lock().expect("lock").recv().expect("test goes on") {
            Ok(())
        } else {
            Err(std::io::Error::other("failed by the test"))
        }
    }
}

impl BlockDevice for Held {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.hold(Hold::Reads)?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.hold(Hold::Flushes)?;
        self.inner.flush()
    }
}
