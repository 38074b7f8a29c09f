//! What a device reads, range by range, and where two devices differ: the answers of
//! [`Store::map`](crate::Store::map), [`Store::layers`](crate::Store::layers) and
//! [`Store::diff`](crate::Store::diff), shared by `snapctl map`, `snapctl diff`,
//! replication (`send` reads only what `diff` lists) and the NBD block-status
//! contexts.
//!
//! Both queries are computed from the element index alone, never by reading data.
//!
//! # Layers
//! A device's *layers* are its own version, then every visible snapshot on the path
//! from it up the version tree, then the origin, numbered from 1 (QEMU's
//! `qemu:allocation-depth`: 1 is the device's own data, N the Nth layer below it).
//! A range owned by a ghost (a deleted snapshot whose data a descendant still
//! reads) counts as the nearest layer below it on the path from the device, since
//! that is the first layer whose contents include it. The origin device has one
//! layer, itself.
//!
//! # Invariants
//! - A map covers the asked range exactly, in ascending order, with no empty or
//!   overlapping extents; neighbouring extents differ in owner or depth, or their
//!   store chunks are not consecutive.
//! - Extents end at chunk boundaries or at the ends of the asked range.
//! - A diff's runs ascend, never touch or overlap, and cover every chunk where the two
//!   devices read different elements (a different chunk, the origin against a chunk,
//!   data against a hole); a chunk where both read the same element, or both the
//!   origin, is never listed.
use blockdev::ids::{ChunkNr, Label, SnapId};

/// Where an extent's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The origin device, at the same offset.
    Origin,
    /// Store data of version `label`: the extent starts at byte
    /// `offset % chunk_size` of chunk `chunk` and goes on in consecutive chunks.
    Chunk {
        /// The version whose element the device reads.
        label: Label,
        /// The store chunk of the extent's first byte.
        chunk: ChunkNr,
    },
    /// Zeros, because version `label` holds a hole (a discard or write-zeroes).
    Hole {
        /// The version whose element the device reads.
        label: Label,
    },
}

impl Owner {
    /// The owning version (label 0 for the origin).
    pub fn label(&self) -> Label {
        match *self {
            Owner::Origin => Label(0),
            Owner::Chunk { label, .. } | Owner::Hole { label } => label,
        }
    }
}

/// One run of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapExtent {
    /// First byte on the device.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Where they come from.
    pub owner: Owner,
    /// Which layer holds them: 1 the device's own, the last the origin.
    pub depth: u32,
}

/// One layer of a device (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// 1 for the device itself.
    pub depth: u32,
    /// Its version (label 0: the origin).
    pub label: Label,
    /// The snapshot it is, `None` for the origin.
    pub snapshot: Option<SnapId>,
}

/// Appends extents to a map, merging each with the previous one when it continues it.
#[derive(Debug, Default)]
pub(crate) struct MapBuilder {
    pub(crate) out: Vec<MapExtent>,
}

impl MapBuilder {
    /// Add `len` bytes at `offset` (which must be where the previous extent ended).
    /// `chunk_size` tells whether two store extents continue each other.
    pub(crate) fn push(
        &mut self,
        offset: u64,
        len: u64,
        owner: Owner,
        depth: u32,
        chunk_size: u64,
    ) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.out.last_mut() {
            debug_assert_eq!(last.offset + last.len, offset);
            let continues = last.depth == depth
                && match (last.owner, owner) {
                    (Owner::Origin, Owner::Origin) => true,
                    (Owner::Hole { label: a }, Owner::Hole { label: b }) => a == b,
                    (Owner::Chunk { label: a, chunk: c }, Owner::Chunk { label: b, chunk: d }) => {
                        // byte position in the store where the last extent ends
                        let end = c.0 * chunk_size + last.offset % chunk_size + last.len;
                        a == b && end == d.0 * chunk_size + offset % chunk_size
                    }
                    _ => false,
                };
            if continues {
                last.len += len;
                return;
            }
        }
        self.out.push(MapExtent {
            offset,
            len,
            owner,
            depth,
        });
    }
}

/// Appends `(offset, len)` runs, merging touching ones.
pub(crate) fn push_run(out: &mut Vec<(u64, u64)>, offset: u64, len: u64) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.0 + last.1 == offset {
            last.1 += len;
            return;
        }
    }
    out.push((offset, len));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_store_chunks_merge_and_others_do_not() {
        let cs = 4096;
        let mut b = MapBuilder::default();
        let own = |c| Owner::Chunk {
            label: Label(2),
            chunk: ChunkNr(c),
        };
        b.push(0, 4096, own(10), 1, cs);
        b.push(4096, 4096, own(11), 1, cs); // continues
        b.push(8192, 4096, own(20), 1, cs); // not consecutive
        b.push(12288, 4096, own(21), 2, cs); // other depth
        b.push(16384, 100, Owner::Origin, 3, cs);
        b.push(16484, 0, Owner::Origin, 3, cs); // empty: dropped
        b.push(16484, 4000, Owner::Origin, 3, cs);
        let got: Vec<(u64, u64)> = b.out.iter().map(|e| (e.offset, e.len)).collect();
        assert_eq!(
            got,
            vec![(0, 8192), (8192, 4096), (12288, 4096), (16384, 4100)]
        );
    }

    #[test]
    fn a_store_extent_starting_mid_chunk_continues_into_the_next_chunk() {
        let cs = 4096;
        let mut b = MapBuilder::default();
        let own = |c| Owner::Chunk {
            label: Label(2),
            chunk: ChunkNr(c),
        };
        b.push(1000, 3096, own(10), 1, cs);
        b.push(4096, 4096, own(11), 1, cs);
        assert_eq!(b.out.len(), 1);
        assert_eq!(b.out[0].len, 7192);
    }

    #[test]
    fn touching_runs_merge() {
        let mut v = Vec::new();
        push_run(&mut v, 0, 10);
        push_run(&mut v, 10, 5);
        push_run(&mut v, 20, 0);
        push_run(&mut v, 20, 1);
        assert_eq!(v, vec![(0, 15), (20, 1)]);
    }
}
