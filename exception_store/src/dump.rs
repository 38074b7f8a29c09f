//! `dump`: what a user's store holds, in plain data, for bug reports: the superblock,
//! the version tree, the snapshots with their own usage, background work, and (on
//! request) every element. The tools render it as a table or JSON.
//!
//! Also [`Store::open_offline`], which opens a store without its origin (for `check`
//! and `dump`): the origin is replaced by a device of the recorded size that reads
//! zeros and refuses writes, and nothing is ever committed.
use crate::{
    store::{Store, StoreOptions},
    superblock::read_superblock,
    Result,
};
use blockdev::{
    ids::{Addr, Label},
    BlockDevice,
};
use btree::elements::Ptr;
use std::{collections::BTreeMap, io, sync::Arc};

/// A stand-in origin for offline tools: it has the recorded size, and every read or
/// write fails. (Reading zeros instead would let a tool that copies from the origin,
/// a copy-out or a merge step, silently store zeros for a snapshot.)
#[derive(Debug)]
struct AbsentOrigin(u64);

impl BlockDevice for AbsentOrigin {
    fn len(&self) -> u64 {
        self.0
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        blockdev::check_range(self.0, offset, buf.len() as u64)?;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the origin is not open (offline tool)",
        ))
    }
    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the origin is not open (offline tool)",
        ))
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// One version of the tree, as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDump {
    /// Its label.
    pub label: u32,
    /// Its parent's label.
    pub parent: u32,
    /// A ghost.
    pub ghost: bool,
    /// The snapshot reading through it, if any.
    pub snapshot: Option<String>,
    /// Addresses where it has an element (data it holds itself).
    pub nr_elements: u64,
}

/// The whole dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// Superblock fields: transaction, chunk size, sizes, counters.
    pub superblock: BTreeMap<&'static str, u64>,
    /// Every version.
    pub versions: Vec<VersionDump>,
    /// Background jobs: (kind, target label, cursor).
    pub jobs: Vec<(String, u32, u64)>,
    /// Every element (address, label, chunk or `None` for a hole), when asked for.
    pub elements: Option<Vec<(u64, u32, Option<u64>)>>,
}

impl Store {
    /// Open the store on `dev` without its origin, for `check` and `dump`.
    pub fn open_offline(dev: Arc<dyn BlockDevice>) -> Result<Store> {
        let sb = read_superblock(&*dev)?;
        Store::open(
            Arc::new(AbsentOrigin(sb.origin_len)),
            dev,
            StoreOptions::default(),
        )
    }

    /// Dump the store (see the module documentation).
    pub fn dump(&mut self, with_elements: bool) -> Result<Dump> {
        let sb = &self.sb;
        let mut superblock = BTreeMap::new();
        superblock.insert("txn_id", sb.txn_id.0);
        superblock.insert("chunk_size", sb.chunk_size as u64);
        superblock.insert("store_len", sb.store_len);
        superblock.insert("origin_len", sb.origin_len);
        superblock.insert("clock", sb.clock);
        superblock.insert("next_label", sb.next_label as u64);
        superblock.insert("next_snap_id", sb.next_snap_id as u64);
        superblock.insert("elements_root", sb.elements_root.0);
        superblock.insert("label_index_root", sb.label_index_root.0);
        superblock.insert("origins_root", sb.origins_root.0);
        superblock.insert("next_group_id", sb.next_group_id as u64);
        superblock.insert("needs_check", sb.needs_check as u64);
        let mut per_label: BTreeMap<u32, u64> = BTreeMap::new();
        let mut elements = with_elements.then(Vec::new);
        self.elements
            .walk(&mut self.cache, &mut |_| Ok(()), &mut |k, v| {
                *per_label.entry(k.label.0).or_default() += v.len as u64;
                if let Some(out) = elements.as_mut() {
                    for i in 0..v.len as u64 {
                        let a = Addr(k.addr.0 + i);
                        let p = match v.ptr_at(k.addr, a) {
                            Ptr::Chunk(c) => Some(c.0),
                            Ptr::Hole => None,
                        };
                        out.push((a.0, k.label.0, p));
                    }
                }
                Ok(())
            })?;
        let by_label: BTreeMap<Label, String> = self
            .snaps
            .values()
            .map(|r| (r.label, r.name.clone()))
            .collect();
        let versions = self
            .vt
            .labels()
            .filter_map(|l| {
                let v = self.vt.get(l)?;
                Some(VersionDump {
                    label: l.0,
                    parent: v.parent.0,
                    ghost: v.ghost,
                    snapshot: by_label.get(&l).cloned(),
                    nr_elements: per_label.get(&l.0).copied().unwrap_or(0),
                })
            })
            .collect();
        let jobs = self
            .status()
            .jobs
            .iter()
            .zip(self.jobs.values())
            .map(|(i, j)| (i.kind.to_string(), j.target.0, j.cursor))
            .collect();
        if let Some(e) = elements.as_mut() {
            e.sort();
        }
        Ok(Dump {
            superblock,
            versions,
            jobs,
            elements,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dev;
    use blockdev::MemDevice;

    #[test]
    fn offline_check_and_dump() {
        let origin: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(64 * 4096));
        let dev = Arc::new(MemDevice::new(8 << 20));
        let mut s = Store::format(origin, dev.clone(), 4096, StoreOptions::default()).unwrap();
        let a = s.create_snapshot("a", None, 1).unwrap();
        s.write(Dev::Origin(0), 0, &[1; 8192]).unwrap();
        s.write(Dev::Snap(a), 3 * 4096, &[2; 4096]).unwrap();
        s.flush().unwrap();
        let mut off = Store::open_offline(dev).unwrap();
        assert!(off.check().unwrap().is_clean());
        let d = off.dump(true).unwrap();
        assert_eq!(d.superblock["txn_id"], s.txn_id().0);
        let v = d
            .versions
            .iter()
            .find(|v| v.snapshot.as_deref() == Some("a"))
            .unwrap();
        assert_eq!(v.nr_elements, 3);
        assert_eq!(d.elements.unwrap().len(), 3);
        // offline stores refuse to write the origin
        assert!(off.write(Dev::Origin(0), 0, &[0; 512]).is_err());
    }
}
