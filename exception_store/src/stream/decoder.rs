//! Reading a stream: every header and record checked before it is returned.
use super::{
    record::{decode_header, KIND_DATA, KIND_END, KIND_ZERO},
    Header, Record, StreamError, HEADER_LEN, MAX_DATA_LEN, RECORD_HEADER_LEN,
};
use std::io::{ErrorKind, Read};

/// A stream being read from `R`.
pub struct Decoder<R: Read> {
    input: R,
    header: Header,
    next: u64,
    count: u64,
    crc: u32,
    pos: u64,
    done: bool,
}

/// Read exactly `buf.len()` bytes; a short read is a cut at `pos + got`.
fn read_full(r: &mut impl Read, buf: &mut [u8], pos: u64) -> Result<(), StreamError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(StreamError::Truncated {
                    at: pos + got as u64,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Io(e)),
        }
    }
    Ok(())
}

impl<R: Read> Decoder<R> {
    /// Read and check the header.
    pub fn new(mut input: R) -> Result<Self, StreamError> {
        let mut b = [0u8; HEADER_LEN];
        read_full(&mut input, &mut b, 0)?;
        let header = Header::decode(&b)?;
        Ok(Decoder {
            input,
            next: header.resume_offset.unwrap_or(0),
            header,
            count: 0,
            crc: crc32c::crc32c(&b),
            pos: HEADER_LEN as u64,
            done: false,
        })
    }

    /// The stream's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        read_full(&mut self.input, buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// The next record; `Ok(None)` once the end record has been read and checked
    /// (count, whole-stream crc, nothing after it).
    pub fn next_record(&mut self) -> Result<Option<Record>, StreamError> {
        if self.done {
            return Ok(None);
        }
        let at = self.pos;
        let mut hb = [0u8; RECORD_HEADER_LEN];
        self.take(&mut hb)?;
        let h = decode_header(&hb).ok_or(StreamError::HeaderCrc {
            what: "record header",
            at,
        })?;
        if h.kind == KIND_END {
            if h.offset != self.count {
                return Err(StreamError::Count {
                    claimed: h.offset,
                    seen: self.count,
                });
            }
            if h.payload_crc != self.crc || h.len != 0 {
                return Err(StreamError::StreamCrc);
            }
            let mut one = [0u8; 1];
            loop {
                match self.input.read(&mut one) {
                    Ok(0) => break,
                    Ok(_) => return Err(StreamError::Trailing),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(StreamError::Io(e)),
                }
            }
            self.done = true;
            return Ok(None);
        }
        let max = match h.kind {
            KIND_DATA => MAX_DATA_LEN,
            KIND_ZERO => u64::MAX,
            kind => return Err(StreamError::BadRecordType { kind, at }),
        };
        if h.offset < self.next {
            return Err(StreamError::OutOfOrder {
                offset: h.offset,
                prev_end: self.next,
            });
        }
        let size = self.header.size;
        if h.len == 0 || h.len > max || h.offset.checked_add(h.len).is_none_or(|e| e > size) {
            return Err(StreamError::OutOfRange {
                offset: h.offset,
                len: h.len,
                size,
            });
        }
        self.crc = crc32c::crc32c_append(self.crc, &hb);
        let rec = if h.kind == KIND_DATA {
            // h.len <= MAX_DATA_LEN (1 MiB), so the allocation is bounded.
            let mut data = vec![0u8; h.len as usize];
            self.take(&mut data)?;
            if crc32c::crc32c(&data) != h.payload_crc {
                return Err(StreamError::DataCrc { offset: h.offset });
            }
            self.crc = crc32c::crc32c_append(self.crc, &data);
            Record::Data {
                offset: h.offset,
                data,
            }
        } else {
            Record::Zero {
                offset: h.offset,
                len: h.len,
            }
        };
        self.next = h.offset + h.len;
        self.count += 1;
        Ok(Some(rec))
    }
}
