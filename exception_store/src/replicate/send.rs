//! Sending: read what snapshot B holds (full) or the ranges where it differs from A
//! (incremental, from [`crate::Store::diff`]), and write them as stream records.
//! All-zero blocks become zero records, never data.
use crate::{
    stream::{Encoder, Header, StreamError, MAX_DATA_LEN},
    Dev, SharedStore,
};
use blockdev::ids::SnapId;
use std::io::Write;
use thiserror::Error;

/// Granularity of zero detection.
const ZERO_BLOCK: usize = 4096;

/// What to send.
#[derive(Debug, Clone)]
pub struct SendSpec {
    /// B.
    pub snap: SnapId,
    /// A, for an incremental.
    pub from: Option<SnapId>,
    /// The stream's identity (random; a resumed stream reuses the interrupted one's).
    pub stream_id: [u8; 16],
    /// Resume: send only records at or after this offset.
    pub resume_offset: Option<u64>,
}

/// What a send wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Stream bytes.
    pub bytes: u64,
    /// Device bytes sent as data.
    pub data_bytes: u64,
    /// Device bytes sent as zero records.
    pub zero_bytes: u64,
    /// Records.
    pub records: u64,
}

/// Why a send failed.
#[derive(Debug, Error)]
pub enum SendError {
    /// The store refused a read or a query.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// Writing the stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A or B is not a snapshot.
    #[error("no snapshot with id {0}")]
    NoSnapshot(u32),
}

/// Coalesces zero runs across pieces and writes records.
struct Out<W: Write> {
    enc: Encoder<W>,
    zero_at: Option<(u64, u64)>,
    sent: Sent,
}

impl<W: Write> Out<W> {
    fn flush_zero(&mut self) -> Result<(), StreamError> {
        if let Some((o, l)) = self.zero_at.take() {
            self.enc.zero(o, l)?;
            self.sent.zero_bytes += l;
            self.sent.records += 1;
        }
        Ok(())
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), StreamError> {
        match &mut self.zero_at {
            Some((o, l)) if *o + *l == offset => *l += len,
            _ => {
                self.flush_zero()?;
                self.zero_at = Some((offset, len));
            }
        }
        Ok(())
    }

    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), StreamError> {
        self.flush_zero()?;
        self.enc.data(offset, data)?;
        self.sent.data_bytes += data.len() as u64;
        self.sent.records += 1;
        Ok(())
    }

    /// A piece read from the device: zero blocks as zeros, the rest as data.
    fn piece(&mut self, offset: u64, buf: &[u8]) -> Result<(), StreamError> {
        let mut i = 0;
        while i < buf.len() {
            let zero = |j: usize| {
                let e = (j + ZERO_BLOCK).min(buf.len());
                buf[j..e].iter().all(|&x| x == 0)
            };
            let z = zero(i);
            let mut j = i;
            while j < buf.len() && zero(j) == z {
                j = (j + ZERO_BLOCK).min(buf.len());
            }
            if z {
                self.zero(offset + i as u64, (j - i) as u64)?;
            } else {
                self.data(offset + i as u64, &buf[i..j])?;
            }
            i = j;
        }
        Ok(())
    }
}

/// Write the stream of `spec` to `out`; `progress` gets the device bytes done so far.
pub fn send<W: Write>(
    store: &SharedStore,
    spec: &SendSpec,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<Sent, SendError> {
    let (header, ranges) = {
        let mut s = store.lock();
        let snaps = s.snapshots();
        let uuid = s.uuid();
        let info = |id: SnapId| {
            snaps
                .iter()
                .find(|x| x.id == id)
                .ok_or(SendError::NoSnapshot(id.0))
        };
        let b = info(spec.snap)?;
        let from_guid = match spec.from {
            Some(a) => Some(info(a)?.guid),
            None => None,
        };
        // the snapshot's own size; past an older, smaller A everything is sent
        let size = b.size;
        let ranges = match spec.from {
            Some(a) => s.diff(Dev::Snap(a), Dev::Snap(spec.snap), 0, size)?,
            None => vec![(0, size)],
        };
        let header = Header {
            stream_id: spec.stream_id,
            source_uuid: uuid,
            chunk_size: s.chunk_size(),
            size,
            name: b.name.clone(),
            created: b.created,
            guid: b.guid,
            from_guid,
            resume_offset: spec.resume_offset,
        };
        (header, ranges)
    };
    let start = spec.resume_offset.unwrap_or(0);
    let mut o = Out {
        enc: Encoder::new(out, &header)?,
        zero_at: None,
        sent: Sent {
            bytes: 0,
            data_bytes: 0,
            zero_bytes: 0,
            records: 0,
        },
    };
    let mut buf = vec![0u8; MAX_DATA_LEN as usize];
    let mut done = 0;
    for (off, len) in ranges {
        let end = off + len;
        let mut p = off.max(start);
        while p < end {
            let n = (end - p).min(MAX_DATA_LEN);
            let piece = &mut buf[..n as usize];
            store.read(Dev::Snap(spec.snap), p, piece)?;
            o.piece(p, piece)?;
            p += n;
            done += n;
            progress(done);
        }
    }
    o.flush_zero()?;
    let mut sent = o.sent;
    sent.bytes = o.enc.finish()?.1;
    Ok(sent)
}
