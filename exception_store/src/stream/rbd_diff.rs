//! Ceph's `rbd diff v1` stream (Ceph's `doc/dev/rbd-diff.rst`), written from our
//! checked records: `"rbd diff v1\n"`, then `f` (from-snapshot name, le32 length
//! and bytes) for an incremental, `t` (to-snapshot name), `s` (le64 image size),
//! then `w` (le64 offset, le64 length, data) and `z` (le64 offset, le64 length)
//! records in ascending non-overlapping order, then `e`. [`Writer`] makes it from
//! our stream's checked records (`snapctl send --format rbd-diff`); [`Reader`]
//! reads `rbd export-diff` / `rbd merge-diff` output for `receive --format rbd-diff`
//! and refuses anything out of order, overlapping, beyond the size or cut.
use super::{Event, Record};
use std::io::{self, Write};

/// The header line.
pub const MAGIC: &[u8] = b"rbd diff v1\n";

/// Converts [`Event`]s to `rbd diff v1` on `out`.
pub struct Writer<'a> {
    out: &'a mut dyn Write,
    from: Option<String>,
    n: u64,
}

impl<'a> Writer<'a> {
    /// `from`: A's name (the `f` record) for an incremental.
    pub fn new(out: &'a mut dyn Write, from: Option<&str>) -> Self {
        Writer {
            out,
            from: from.map(str::to_owned),
            n: 0,
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.n += b.len() as u64;
        self.out.write_all(b)
    }

    fn name(&mut self, tag: u8, name: &str) -> io::Result<()> {
        self.put(&[tag])?;
        self.put(&(name.len() as u32).to_le_bytes())?;
        self.put(name.as_bytes())
    }

    fn extent(&mut self, tag: u8, offset: u64, len: u64) -> io::Result<()> {
        self.put(&[tag])?;
        self.put(&offset.to_le_bytes())?;
        self.put(&len.to_le_bytes())
    }

    /// Take one event.
    pub fn event(&mut self, e: Event<'_>) -> io::Result<()> {
        match e {
            Event::Header(h) => {
                self.put(MAGIC)?;
                if let Some(f) = self.from.clone() {
                    self.name(b'f', &f)?;
                }
                self.name(b't', &h.name)?;
                self.put(b"s")?;
                self.put(&h.size.to_le_bytes())
            }
            Event::Record(Record::Data { offset, data }) => {
                self.extent(b'w', *offset, data.len() as u64)?;
                self.put(data)
            }
            Event::Record(Record::Zero { offset, len }) => self.extent(b'z', *offset, *len),
            Event::End => self.put(b"e"),
        }
    }

    /// Bytes written.
    pub fn bytes(&self) -> u64 {
        self.n
    }
}

/// Longest snapshot name a reader takes.
const MAX_NAME: u32 = 4096;
/// Longest data record a reader returns (longer `w` records are split).
const PIECE: u64 = 1 << 20;

/// Why an `rbd diff v1` stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum RbdDiffError {
    /// Reading failed.
    #[error("rbd diff I/O: {0}")]
    Io(#[from] io::Error),
    /// Not `rbd diff v1`.
    #[error("not an `rbd diff v1` stream (bad header)")]
    BadMagic,
    /// The stream ended before its `e` record.
    #[error("rbd diff cut: it ends before its `e` record")]
    Truncated,
    /// A tag this reader does not know, or a metadata record after data.
    #[error("corrupt rbd diff: unexpected tag {0:?}")]
    BadTag(char),
    /// No `s` or `t` record before the data.
    #[error("corrupt rbd diff: no {0} record before the data")]
    Missing(&'static str),
    /// A snapshot name too long or not UTF-8.
    #[error("corrupt rbd diff: bad snapshot name")]
    BadName,
    /// An extent before the end of the previous one.
    #[error("corrupt rbd diff: extent at {offset} is out of order or overlaps (previous ends at {prev_end})")]
    OutOfOrder {
        /// Its offset.
        offset: u64,
        /// The previous extent's end.
        prev_end: u64,
    },
    /// An extent beyond the image size.
    #[error("corrupt rbd diff: extent {offset}+{len} beyond the image size {size}")]
    OutOfRange {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The `s` size.
        size: u64,
    },
    /// Bytes after `e`.
    #[error("corrupt rbd diff: bytes follow the `e` record")]
    Trailing,
}

/// An `rbd diff v1` header's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// `f`: the from-snapshot.
    pub from: Option<String>,
    /// `t`: the to-snapshot.
    pub to: String,
    /// `s`: the image size.
    pub size: u64,
}

/// Reads `rbd diff v1` into our [`Record`]s.
pub struct Reader<R: io::Read> {
    r: R,
    meta: Meta,
    next: u64,
    /// The rest of a `w` record being returned in pieces: (offset, len).
    data_left: Option<(u64, u64)>,
    pending_tag: Option<u8>,
    done: bool,
}

fn read_exact(r: &mut impl io::Read, b: &mut [u8]) -> Result<(), RbdDiffError> {
    r.read_exact(b).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => RbdDiffError::Truncated,
        _ => RbdDiffError::Io(e),
    })
}

fn u64_of(r: &mut impl io::Read) -> Result<u64, RbdDiffError> {
    let mut b = [0u8; 8];
    read_exact(r, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn name_of(r: &mut impl io::Read) -> Result<String, RbdDiffError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b)?;
    let n = u32::from_le_bytes(b);
    if n > MAX_NAME {
        return Err(RbdDiffError::BadName);
    }
    let mut s = vec![0u8; n as usize];
    read_exact(r, &mut s)?;
    String::from_utf8(s).map_err(|_| RbdDiffError::BadName)
}

impl<R: io::Read> Reader<R> {
    /// Read the header and the metadata records.
    pub fn new(mut r: R) -> Result<Self, RbdDiffError> {
        let mut m = [0u8; 12];
        read_exact(&mut r, &mut m).map_err(|e| match e {
            RbdDiffError::Truncated => RbdDiffError::BadMagic,
            e => e,
        })?;
        if m != MAGIC {
            return Err(RbdDiffError::BadMagic);
        }
        let (mut from, mut to, mut size) = (None, None, None);
        let tag = loop {
            let mut t = [0u8; 1];
            read_exact(&mut r, &mut t)?;
            match t[0] {
                b'f' => from = Some(name_of(&mut r)?),
                b't' => to = Some(name_of(&mut r)?),
                b's' => size = Some(u64_of(&mut r)?),
                b'w' | b'z' | b'e' => break t[0],
                x => return Err(RbdDiffError::BadTag(char::from(x))),
            }
        };
        Ok(Reader {
            r,
            meta: Meta {
                from,
                to: to.ok_or(RbdDiffError::Missing("`t` (to-snapshot)"))?,
                size: size.ok_or(RbdDiffError::Missing("`s` (size)"))?,
            },
            next: 0,
            data_left: None,
            pending_tag: Some(tag),
            done: false,
        })
    }

    /// The metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    fn piece(&mut self, offset: u64, len: u64) -> Result<Record, RbdDiffError> {
        let n = len.min(PIECE);
        let mut data = vec![0u8; n as usize];
        read_exact(&mut self.r, &mut data)?;
        self.data_left = (len > n).then_some((offset + n, len - n));
        Ok(Record::Data { offset, data })
    }

    /// The next extent; `None` after `e` (and nothing after it).
    pub fn next_record(&mut self) -> Result<Option<Record>, RbdDiffError> {
        if let Some((o, l)) = self.data_left.take() {
            return self.piece(o, l).map(Some);
        }
        loop {
            if self.done {
                return Ok(None);
            }
            let tag = match self.pending_tag.take() {
                Some(t) => t,
                None => {
                    let mut t = [0u8; 1];
                    read_exact(&mut self.r, &mut t)?;
                    t[0]
                }
            };
            if tag == b'e' {
                let mut one = [0u8; 1];
                if self.r.read(&mut one)? != 0 {
                    return Err(RbdDiffError::Trailing);
                }
                self.done = true;
                return Ok(None);
            }
            if tag != b'w' && tag != b'z' {
                return Err(RbdDiffError::BadTag(char::from(tag)));
            }
            let offset = u64_of(&mut self.r)?;
            let len = u64_of(&mut self.r)?;
            if offset < self.next {
                return Err(RbdDiffError::OutOfOrder {
                    offset,
                    prev_end: self.next,
                });
            }
            let size = self.meta.size;
            if offset.checked_add(len).is_none_or(|e| e > size) {
                return Err(RbdDiffError::OutOfRange { offset, len, size });
            }
            self.next = offset + len;
            if len == 0 {
                continue;
            }
            if tag == b'z' {
                return Ok(Some(Record::Zero { offset, len }));
            }
            return self.piece(offset, len).map(Some);
        }
    }
}

/// Our stream, made on the fly from an `rbd diff v1` reader (what `receive --format
/// rbd-diff` feeds to the ordinary receive). A full diff (no `f`) zeroes the gaps
/// between its extents: an image Ceph never wrote reads zeros.
pub struct ToStream<R: io::Read> {
    rd: Reader<R>,
    enc: Option<super::Encoder<Buf>>,
    buf: Buf,
    pos: usize,
    zero_gaps: bool,
    at: u64,
    /// Why the rbd diff was refused, if it was.
    pub error: Option<RbdDiffError>,
}

/// The encoder's output, shared with the reader side.
#[derive(Clone, Default)]
pub struct Buf(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: io::Read> ToStream<R> {
    /// Start with our stream's `header` (its size must be the diff's).
    pub fn new(rd: Reader<R>, header: &super::Header) -> io::Result<Self> {
        let buf = Buf::default();
        let enc = super::Encoder::new(buf.clone(), header)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(ToStream {
            zero_gaps: rd.meta().from.is_none(),
            rd,
            enc: Some(enc),
            buf,
            pos: 0,
            at: 0,
            error: None,
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        let Some(enc) = self.enc.as_mut() else {
            return Ok(());
        };
        let bad = |e: super::StreamError| io::Error::other(e.to_string());
        match self.rd.next_record() {
            Ok(Some(r)) => {
                let (off, len) = r.range();
                if self.zero_gaps && off > self.at {
                    enc.zero(self.at, off - self.at).map_err(bad)?;
                }
                match r {
                    Record::Data { offset, data } => enc.data(offset, &data).map_err(bad)?,
                    Record::Zero { offset, len } => enc.zero(offset, len).map_err(bad)?,
                }
                self.at = off + len;
            }
            Ok(None) => {
                let size = self.rd.meta().size;
                if self.zero_gaps && size > self.at {
                    enc.zero(self.at, size - self.at).map_err(bad)?;
                }
                if let Some(enc) = self.enc.take() {
                    enc.finish().map_err(bad)?;
                }
            }
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(e);
                self.enc = None;
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
        }
        Ok(())
    }
}

impl<R: io::Read> io::Read for ToStream<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut b = self.buf.0.borrow_mut();
                if self.pos < b.len() {
                    let n = (b.len() - self.pos).min(out.len());
                    out[..n].copy_from_slice(&b[self.pos..self.pos + n]);
                    self.pos += n;
                    if self.pos == b.len() {
                        b.clear();
                        self.pos = 0;
                    }
                    return Ok(n);
                }
            }
            if self.enc.is_none() {
                return Ok(0);
            }
            self.fill()?;
        }
    }
}
