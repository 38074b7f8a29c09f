//! What `snapctl receive --progress` knows about the stream it copies to the
//! daemon: a side thread decodes the same bytes (our stream or an rbd diff) and
//! counts the device bytes its records cover, and the total a full stream will
//! cover (its header's size; an incremental's total is not in its header).
//!
//! The scan only watches: the copy to the daemon never waits on a scan that
//! failed or fell behind by more than a bounded queue, and the daemon alone
//! decides whether the stream is good (a bad stream just stops the scan).
use exception_store::stream::{rbd_diff::Reader, Decoder, Record};
use std::{
    io::Read,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender},
        Arc,
    },
    thread,
};

/// How far a stream got, for `--progress`: the stream's bytes and the device bytes
/// its records covered so far, and the device bytes it will cover when known (a
/// send: the daemon's `covers`; a receive: a full stream's size, see [`Scan`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Stream bytes so far.
    pub stream: u64,
    /// Device bytes the records so far covered (data and zeros).
    pub covered: u64,
    /// Device bytes the whole stream covers, if known.
    pub total: Option<u64>,
}

/// Pieces queued for the scan before the copy stops feeding it.
const QUEUE: usize = 16;

/// `u64::MAX`: no total (not known yet, or an incremental).
const UNKNOWN: u64 = u64::MAX;

#[derive(Default)]
struct Counts {
    covered: AtomicU64,
    total: AtomicU64,
}

/// See the module documentation.
pub struct Scan {
    tx: Option<SyncSender<Vec<u8>>>,
    counts: Arc<Counts>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Scan {
    /// Start the side thread for a stream in our format or (`rbd_diff`) Ceph's.
    pub fn start(rbd_diff: bool) -> Scan {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let counts = Arc::new(Counts::default());
        counts.total.store(UNKNOWN, Ordering::Relaxed);
        let c = counts.clone();
        let thread = thread::Builder::new()
            .name("stream-scan".into())
            .spawn(move || {
                scan(
                    rbd_diff,
                    Pieces {
                        rx,
                        cur: Vec::new(),
                        at: 0,
                    },
                    &c,
                )
            })
            .ok();
        Scan {
            tx: thread.is_some().then_some(tx),
            counts,
            thread,
        }
    }

    /// The bytes just copied. Blocks while the queue is full; a scan that ended
    /// (a bad stream, the end record) takes nothing more.
    pub fn feed(&mut self, piece: &[u8]) {
        if let Some(tx) = &self.tx {
            if tx.send(piece.to_vec()).is_err() {
                self.tx = None;
            }
        }
    }

    /// Progress after `stream` bytes copied.
    pub fn progress(&self, stream: u64) -> StreamProgress {
        let total = self.counts.total.load(Ordering::Relaxed);
        StreamProgress {
            stream,
            covered: self.counts.covered.load(Ordering::Relaxed),
            total: (total != UNKNOWN).then_some(total),
        }
    }

    /// Let the scan see the end of the input, wait for it, then the progress.
    pub fn finish(mut self, stream: u64) -> StreamProgress {
        self.stop();
        self.progress(stream)
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            // A scan that panicked only loses the progress figures.
            let _ = t.join();
        }
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The queued pieces as one reader (end of input when the sender is gone).
struct Pieces {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.cur.len() {
            match self.rx.recv() {
                Ok(p) => (self.cur, self.at) = (p, 0),
                Err(_) => return Ok(0),
            }
        }
        let k = buf.len().min(self.cur.len() - self.at);
        buf[..k].copy_from_slice(&self.cur[self.at..self.at + k]);
        self.at += k;
        Ok(k)
    }
}

fn scan(rbd_diff: bool, input: Pieces, c: &Counts) {
    let count = |r: &Record| {
        c.covered.fetch_add(r.range().1, Ordering::Relaxed);
    };
    if rbd_diff {
        let Ok(mut rd) = Reader::new(input) else {
            return;
        };
        if rd.meta().from.is_none() {
            c.total.store(rd.meta().size, Ordering::Relaxed);
        }
        while let Ok(Some(r)) = rd.next_record() {
            count(&r);
        }
    } else {
        let Ok(mut dec) = Decoder::new(input) else {
            return;
        };
        let h = dec.header();
        if h.from_guid.is_none() {
            let from = h.resume_offset.unwrap_or(0);
            c.total
                .store(h.size.saturating_sub(from), Ordering::Relaxed);
        }
        while let Ok(Some(r)) = dec.next_record() {
            count(&r);
        }
    }
}
