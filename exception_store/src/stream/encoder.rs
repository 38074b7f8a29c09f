//! Writing a stream: the header, records in ascending order, the end record. The
//! encoder checks order and range itself, so it never writes a stream its decoder
//! would refuse.
use super::{
    record::{encode_header, KIND_DATA, KIND_END, KIND_ZERO},
    Header, StreamError, MAX_DATA_LEN,
};
use std::io::Write;

/// A stream being written to `W`.
pub struct Encoder<W: Write> {
    out: W,
    size: u64,
    next: u64,
    count: u64,
    crc: u32,
    bytes: u64,
}

impl<W: Write> Encoder<W> {
    /// Write the header.
    pub fn new(mut out: W, header: &Header) -> Result<Self, StreamError> {
        let b = header.encode();
        out.write_all(&b)?;
        Ok(Encoder {
            out,
            size: header.size,
            next: header.resume_offset.unwrap_or(0),
            count: 0,
            crc: crc32c::crc32c(&b),
            bytes: b.len() as u64,
        })
    }

    fn put(&mut self, b: &[u8]) -> Result<(), StreamError> {
        self.out.write_all(b)?;
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.bytes += b.len() as u64;
        Ok(())
    }

    fn check(&self, offset: u64, len: u64, max: u64) -> Result<(), StreamError> {
        if offset < self.next {
            return Err(StreamError::OutOfOrder {
                offset,
                prev_end: self.next,
            });
        }
        if len == 0 || len > max || offset.checked_add(len).is_none_or(|e| e > self.size) {
            return Err(StreamError::OutOfRange {
                offset,
                len,
                size: self.size,
            });
        }
        Ok(())
    }

    /// Append a data record (at most [`MAX_DATA_LEN`] bytes).
    pub fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), StreamError> {
        self.check(offset, data.len() as u64, MAX_DATA_LEN)?;
        let h = encode_header(KIND_DATA, offset, data.len() as u64, crc32c::crc32c(data));
        self.put(&h)?;
        self.put(data)?;
        self.next = offset + data.len() as u64;
        self.count += 1;
        Ok(())
    }

    /// Append a zero record.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<(), StreamError> {
        self.check(offset, len, u64::MAX)?;
        self.put(&encode_header(KIND_ZERO, offset, len, 0))?;
        self.next = offset + len;
        self.count += 1;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Write the end record and flush; returns the writer and the stream's length.
    pub fn finish(mut self) -> Result<(W, u64), StreamError> {
        let h = encode_header(KIND_END, self.count, 0, self.crc);
        self.out.write_all(&h)?;
        self.out.flush()?;
        Ok((self.out, self.bytes + h.len() as u64))
    }
}
