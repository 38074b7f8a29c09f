//! The zero-copy serving logic against a fake ring: fixed-buffer operations are
//! queued and carried out (with `pread`/`pwrite` on real descriptors, into each tag's
//! "request buffer") when the test delivers their completions, in the order it
//! chooses.
use std::{
    collections::VecDeque,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use parking_lot::Mutex;

use super::{Fixed, ZcIo, ZeroCopy};
use crate::{
    request::{Op, Request},
    DirectWrite, Piece, PieceSource, Plan, Target,
};

const LEN: u64 = 64 << 10;

fn memfd(len: u64, fill: u8) -> OwnedFd {
    // SAFETY: a NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"zc-test".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let data = vec![fill; len as usize];
    // SAFETY: writes `data` from a live buffer.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
    assert_eq!(n as usize, data.len());
    fd
}

fn pread(fd: RawFd, buf: &mut [u8], at: u64) -> isize {
    // SAFETY: reads into a live, exclusive buffer.
    unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), at as libc::off_t) }
}

fn pwrite(fd: RawFd, buf: &[u8], at: u64) -> isize {
    // SAFETY: writes from a live buffer.
    unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), at as libc::off_t) }
}

/// What the fake target answers to direct writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writes {
    Ready,
    Wait,
    Busy,
}

/// A target whose reads are planned as: the first half from `file`, then a hole,
/// then the rest from `file` again (at the read's offsets); writes as `writes`
/// says, copied writes and everything else logged.
struct Fake {
    file: OwnedFd,
    writes: Mutex<Writes>,
    fail_settle: bool,
    log: Mutex<Vec<String>>,
    /// Plans carry check 7; `plan_holds` answers this.
    holds: Mutex<Option<bool>>,
}

impl Fake {
    fn new(writes: Writes) -> Self {
        Fake {
            file: memfd(1 << 20, 0x11),
            writes: Mutex::new(writes),
            fail_settle: false,
            log: Mutex::new(Vec::new()),
            holds: Mutex::new(None),
        }
    }
    fn log(&self, s: String) {
        self.log.lock().push(s);
    }
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock())
    }
}

impl Target for Fake {
    fn size_bytes(&self) -> u64 {
        1 << 20
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.log(format!("read {offset}"));
        buf.fill(0x22);
        Ok(())
    }
    fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.log(format!("write {offset} {:#x}", buf[0]));
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        self.log("flush".into());
        Ok(())
    }
    fn discard(&self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn write_settle(&self, upto: u64) -> io::Result<()> {
        self.log(format!("settle {upto}"));
        if self.fail_settle {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
    fn read_plan(&self, offset: u64, len: u64) -> Option<Plan> {
        let fd = self.file.as_raw_fd();
        let q = len / 4;
        let pieces = vec![
            Piece {
                buf_off: 0,
                len: 2 * q,
                src: PieceSource::Fd(fd, offset),
            },
            Piece {
                buf_off: 2 * q,
                len: q,
                src: PieceSource::Zeroes,
            },
            Piece {
                buf_off: 3 * q,
                len: len - 3 * q,
                src: PieceSource::Fd(fd, offset + 3 * q),
            },
        ];
        let check = self.holds.lock().map(|_| 7);
        Some(Plan { pieces, check })
    }
    fn plan_holds(&self, check: u64) -> bool {
        assert_eq!(check, 7);
        let holds = self.holds.lock().expect("a plan with a check");
        self.log(format!("holds {holds}"));
        holds
    }
    fn direct_write_start(&self, offset: u64, _len: u64) -> DirectWrite {
        let w = *self.writes.lock();
        self.log(format!("start {offset}"));
        match w {
            Writes::Ready => DirectWrite::Ready(self.file.as_raw_fd()),
            Writes::Wait => DirectWrite::Wait(offset / 4096, self.file.as_raw_fd()),
            Writes::Busy => DirectWrite::Busy,
        }
    }
    fn direct_write_end(&self, offset: u64, _len: u64) {
        self.log(format!("end {offset}"));
    }
}

/// The fake ring: request buffers by tag, queued operations, completions.
struct FakeRing {
    req_bufs: Vec<Vec<u8>>,
    ops: VecDeque<Fixed>,
    done: Vec<(u16, i32)>,
    zero: OwnedFd,
    /// Carry out at most this many bytes per operation (a short read or write).
    short: Option<u32>,
    /// Complete every operation with this error instead (a file that refuses
    /// fixed-buffer I/O, or fails it).
    fail: Option<i32>,
}

impl FakeRing {
    fn new(tags: usize) -> Self {
        FakeRing {
            req_bufs: (0..tags)
                .map(|i| vec![0x40 + i as u8; LEN as usize])
                .collect(),
            ops: VecDeque::new(),
            done: Vec::new(),
            zero: memfd(LEN, 0),
            short: None,
            fail: None,
        }
    }

    /// Carry out the oldest queued operation and deliver its completion.
    fn deliver_one(&mut self, zc: &mut ZeroCopy, t: &dyn Target, own: &mut [Vec<u8>]) -> bool {
        let Some(op) = self.ops.pop_front() else {
            return false;
        };
        let n = self.short.map_or(op.len, |s| s.min(op.len)) as usize;
        let buf = &mut self.req_bufs[usize::from(op.tag)];
        let at = op.buf_off as usize;
        let res = if let Some(e) = self.fail {
            -e as isize
        } else if op.read {
            pread(op.fd, &mut buf[at..at + n], op.file_off)
        } else {
            pwrite(op.fd, &buf[at..at + n], op.file_off)
        };
        zc.on_done(t, self, op.tag, res as i32, &mut own[usize::from(op.tag)]);
        true
    }

    fn deliver_all(&mut self, zc: &mut ZeroCopy, t: &dyn Target, own: &mut [Vec<u8>]) {
        while self.deliver_one(zc, t, own) {}
    }
}

impl ZcIo for FakeRing {
    fn fixed(&mut self, op: Fixed) -> io::Result<()> {
        self.ops.push_back(op);
        Ok(())
    }
    fn copy_in(&mut self, tag: u16, buf: &mut [u8]) -> io::Result<()> {
        buf.copy_from_slice(&self.req_bufs[usize::from(tag)][..buf.len()]);
        Ok(())
    }
    fn copy_out(&mut self, tag: u16, buf: &[u8]) -> io::Result<()> {
        self.req_bufs[usize::from(tag)][..buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn complete(&mut self, tag: u16, res: i32) {
        self.done.push((tag, res));
    }
}

fn req(op: Op, offset: u64) -> Request {
    Request {
        op,
        offset,
        len_bytes: LEN,
        fua: false,
    }
}

struct Queue {
    zc: ZeroCopy,
    ring: FakeRing,
    own: Vec<Vec<u8>>,
}

impl Queue {
    fn new() -> Self {
        let ring = FakeRing::new(8);
        let zc = ZeroCopy::new(8, ring.zero.as_raw_fd());
        Queue {
            zc,
            ring,
            own: vec![vec![0u8; LEN as usize]; 8],
        }
    }
    fn request(&mut self, t: &dyn Target, tag: u16, r: Request, registered: bool) {
        let buf = &mut self.own[usize::from(tag)];
        self.zc
            .on_request(t, &mut self.ring, tag, r, registered, buf);
    }
    fn end_of_batch(&mut self, t: &dyn Target) {
        self.zc.end_of_batch(t, &mut self.ring);
        while let Some((tag, r)) = self.zc.next_deferred() {
            let buf = &mut self.own[usize::from(tag)];
            self.zc.copy_path(t, &mut self.ring, tag, &r, buf);
        }
    }
}

/// A read is one fixed read per piece, each at its buffer offset (holes from the
/// zero descriptor); it completes once, after the last piece, with its length.
#[test]
fn a_read_is_one_fixed_read_per_piece() {
    let t = Fake::new(Writes::Ready);
    let mut q = Queue::new();
    q.request(&t, 3, req(Op::Read, 4096), true);
    assert_eq!(q.ring.ops.len(), 3);
    let offs: Vec<_> = q
        .ring
        .ops
        .iter()
        .map(|o| (o.buf_off, o.file_off, o.len))
        .collect();
    assert_eq!(
        offs,
        [
            (0, 4096, (LEN / 2) as u32),
            (LEN / 2, 0, (LEN / 4) as u32),
            (3 * LEN / 4, 4096 + 3 * LEN / 4, (LEN / 4) as u32)
        ]
    );
    assert!(q.ring.deliver_one(&mut q.zc, &t, &mut q.own));
    assert!(q.ring.deliver_one(&mut q.zc, &t, &mut q.own));
    assert!(q.ring.done.is_empty(), "completed before its last piece");
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(3, LEN as i32)]);
    let b = &q.ring.req_bufs[3];
    assert!(b[..LEN as usize / 2].iter().all(|&x| x == 0x11));
    assert!(b[LEN as usize / 2..3 * LEN as usize / 4]
        .iter()
        .all(|&x| x == 0));
    assert!(b[3 * LEN as usize / 4..].iter().all(|&x| x == 0x11));
    assert!(t.take_log().is_empty(), "the target read nothing itself");
    assert_eq!((q.zc.counts.fixed_reads, q.zc.counts.copied), (1, 0));
}

/// A piece that moves fewer bytes fails the read with EIO, and a failed read is not
/// checked against its plan (it fails as it is, not read again).
#[test]
fn a_short_piece_fails_the_read() {
    let t = Fake::new(Writes::Ready);
    *t.holds.lock() = Some(false);
    let mut q = Queue::new();
    q.ring.short = Some(512);
    q.request(&t, 0, req(Op::Read, 0), true);
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(0, -libc::EIO)]);
    assert!(t.take_log().is_empty());
}

/// A file that refuses fixed-buffer I/O (EOPNOTSUPP, EINVAL): the read is served
/// again on the copy path, and every later request of the queue goes there at once;
/// a write is ended (its hold released) and served on the copy path at the end of
/// the batch. A real I/O error (EIO) fails the request as it is.
#[test]
fn a_refused_fixed_read_or_write_falls_back_to_copying() {
    let t = Fake::new(Writes::Ready);
    let mut q = Queue::new();
    q.ring.fail = Some(libc::EOPNOTSUPP);
    q.request(&t, 1, req(Op::Read, 0), true);
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(1, LEN as i32)]);
    assert_eq!(t.take_log(), ["read 0"]);
    assert!(q.ring.req_bufs[1].iter().all(|&x| x == 0x22));
    // from now on, no fixed-buffer I/O
    q.ring.fail = None;
    q.request(&t, 2, req(Op::Read, 4096), true);
    q.request(&t, 3, req(Op::Write, 8192), true);
    assert!(q.ring.ops.is_empty());
    assert_eq!(t.take_log(), ["read 4096", "write 8192 0x43"]);
    let c = q.zc.counts;
    assert_eq!((c.fixed_reads, c.refused, c.copied), (1, 1, 3));

    // a write refused: ended, then copied once nothing is held
    let t = Fake::new(Writes::Ready);
    let mut q = Queue::new();
    q.ring.fail = Some(libc::EINVAL);
    q.request(&t, 4, req(Op::Write, 0), true);
    assert_eq!(t.take_log(), ["start 0"]);
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert!(q.ring.done.is_empty(), "served at the end of the batch");
    assert_eq!(t.take_log(), ["end 0"]);
    q.end_of_batch(&t);
    assert_eq!(q.ring.done, [(4, LEN as i32)]);
    assert_eq!(t.take_log(), ["write 0 0x44"]);

    // an I/O error is not a refusal
    let t = Fake::new(Writes::Ready);
    let mut q = Queue::new();
    q.ring.fail = Some(libc::EIO);
    q.request(&t, 0, req(Op::Read, 0), true);
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(0, -libc::EIO)]);
    q.ring.fail = None;
    q.ring.done.clear();
    q.request(&t, 0, req(Op::Read, 0), true);
    assert_eq!(q.ring.ops.len(), 3, "still zero copy");
}

/// A read whose plan holds once its pieces landed completes as planned; one whose
/// plan no longer holds (the data moved under it) is read again on the copy path:
/// the target's read, copied into the request, completed once.
#[test]
fn a_read_whose_plan_moved_is_read_again() {
    let t = Fake::new(Writes::Ready);
    *t.holds.lock() = Some(true);
    let mut q = Queue::new();
    q.request(&t, 1, req(Op::Read, 0), true);
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(1, LEN as i32)]);
    assert_eq!(t.take_log(), ["holds true"]);
    assert!(q.ring.req_bufs[1][..LEN as usize / 2]
        .iter()
        .all(|&x| x == 0x11));

    *t.holds.lock() = Some(false);
    q.ring.done.clear();
    q.request(&t, 2, req(Op::Read, 8192), true);
    assert_eq!(q.ring.ops.len(), 3);
    q.ring.deliver_one(&mut q.zc, &t, &mut q.own);
    assert!(t.take_log().is_empty(), "checked before the last piece");
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(2, LEN as i32)]);
    assert_eq!(t.take_log(), ["holds false", "read 8192"]);
    assert!(
        q.ring.req_bufs[2].iter().all(|&x| x == 0x22),
        "the request holds the target's read"
    );
    let c = q.zc.counts;
    assert_eq!((c.fixed_reads, c.reread, c.copied), (2, 1, 1));
}

/// A request the kernel could not register is served on the copy path: read by the
/// target into the tag's own buffer and copied into the request.
#[test]
fn an_unregistered_read_is_copied() {
    let t = Fake::new(Writes::Ready);
    let mut q = Queue::new();
    q.request(&t, 1, req(Op::Read, 8192), false);
    assert!(q.ring.ops.is_empty());
    assert_eq!(q.ring.done, [(1, LEN as i32)]);
    assert!(q.ring.req_bufs[1].iter().all(|&x| x == 0x22));
    assert_eq!(t.take_log(), ["read 8192"]);
}

/// Writes that must wait settle once per batch, with the largest token, and only
/// then are their fixed writes submitted; each is ended after its completion.
#[test]
fn waiting_writes_settle_once_then_write_from_the_request() {
    let t = Fake::new(Writes::Wait);
    let mut q = Queue::new();
    q.request(&t, 0, req(Op::Write, 3 * 4096), true);
    q.request(&t, 1, req(Op::Write, 40 * 4096), true);
    assert!(q.ring.ops.is_empty(), "written before the settle");
    q.end_of_batch(&t);
    assert_eq!(q.ring.ops.len(), 2);
    assert!(q.ring.ops.iter().all(|o| !o.read && o.buf_off == 0));
    assert_eq!(t.take_log(), ["start 12288", "start 163840", "settle 40"]);
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(0, LEN as i32), (1, LEN as i32)]);
    assert_eq!(t.take_log(), ["end 12288", "end 163840"]);
    // the request's bytes are in the file
    let mut got = vec![0u8; 16];
    pread(t.file.as_raw_fd(), &mut got, 40 * 4096);
    assert!(got.iter().all(|&x| x == 0x41));
}

/// A failed settle fails every waiting write with its errno and ends each; nothing
/// is written.
#[test]
fn a_failed_settle_fails_and_ends_every_write() {
    let mut t = Fake::new(Writes::Wait);
    t.fail_settle = true;
    let mut q = Queue::new();
    q.request(&t, 0, req(Op::Write, 0), true);
    q.request(&t, 1, req(Op::Write, 4096), true);
    q.end_of_batch(&t);
    assert!(q.ring.ops.is_empty());
    assert_eq!(q.ring.done, [(0, -libc::ENOSPC), (1, -libc::ENOSPC)]);
    assert_eq!(&t.take_log()[2..], ["settle 1", "end 0", "end 4096"]);
}

/// While direct writes are held, a request that may block (a flush, a write the
/// target answers Busy for) is deferred, and so is every later non-read request;
/// reads go on. Once the held writes are done the deferred are served in order.
#[test]
fn requests_that_may_block_wait_for_the_held_writes() {
    let t = Fake::new(Writes::Ready);
    let mut q = Queue::new();
    q.request(&t, 0, req(Op::Write, 0), true); // held, in flight
    q.request(&t, 1, req(Op::Flush, 0), true); // deferred
    *t.writes.lock() = Writes::Busy;
    q.request(&t, 2, req(Op::Write, 4096), true); // not started: behind the flush
    q.request(&t, 3, req(Op::Read, 0), true); // goes on
    q.end_of_batch(&t);
    assert!(q.ring.done.is_empty());
    assert_eq!(t.take_log(), ["start 0"]);
    q.ring.deliver_all(&mut q.zc, &t, &mut q.own);
    assert_eq!(q.ring.done, [(0, LEN as i32), (3, LEN as i32)]);
    q.end_of_batch(&t);
    assert_eq!(q.ring.done[2..], [(1, 0), (2, LEN as i32)]);
    // the deferred write was served with its data copied in from the request
    assert_eq!(t.take_log(), ["end 0", "flush", "write 4096 0x42"]);
    let c = q.zc.counts;
    assert_eq!((c.fixed_reads, c.fixed_writes, c.copied), (1, 1, 2));
}

/// A write answered Busy with nothing held is served at the end of the batch.
#[test]
fn a_busy_write_with_nothing_held_is_served_at_the_end_of_the_batch() {
    let t = Fake::new(Writes::Busy);
    let mut q = Queue::new();
    q.request(&t, 5, req(Op::Write, 8192), true);
    assert!(q.ring.done.is_empty());
    q.end_of_batch(&t);
    assert_eq!(q.ring.done, [(5, LEN as i32)]);
    assert_eq!(t.take_log(), ["start 8192", "write 8192 0x45"]);
}

/// A stopping queue ends every held write, completing none.
#[test]
fn abandon_ends_held_writes() {
    let t = Fake::new(Writes::Wait);
    let mut q = Queue::new();
    q.request(&t, 0, req(Op::Write, 0), true);
    q.end_of_batch(&t); // submitted, in flight
    *t.writes.lock() = Writes::Wait;
    q.request(&t, 1, req(Op::Write, 4096), true); // begun, not settled
    q.zc.abandon(&t);
    assert!(q.ring.done.is_empty());
    assert_eq!(
        t.take_log(),
        ["start 0", "settle 0", "start 4096", "end 4096", "end 0"]
    );
}
