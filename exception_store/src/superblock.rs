//! The superblock: two alternating slots, the newest valid one wins.
//!
//! A commit writes every new block, flushes, then writes the superblock of
//! transaction `t` into slot `t % 2` and flushes again. A torn or lost superblock write
//! leaves the other slot (transaction `t - 1`) intact and valid, and every block it
//! references untouched (shadowing never overwrites a committed block).
use crate::{format::*, Error, Result};
use blockdev::{
    ids::{BlockNr, TxnId},
    le, BlockDevice, BlockKind, Corrupt, Reason,
};

/// The decoded superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Transaction that wrote it.
    pub txn_id: TxnId,
    /// Random id of this store.
    pub uuid: [u8; 16],
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Store length in bytes (whole chunks): the device's at format, larger after
    /// each `grow_store`.
    pub store_len: u64,
    /// Origin length in bytes when formatted.
    pub origin_len: u64,
    /// Logical clock.
    pub clock: u64,
    /// Next label to hand out (labels are never reused).
    pub next_label: u32,
    /// Next snapshot id.
    pub next_snap_id: u32,
    /// Next job id.
    pub next_job_id: u32,
    /// Element tree root.
    pub elements_root: BlockNr,
    /// Version table root.
    pub versions_root: BlockNr,
    /// Snapshot table root.
    pub snapshots_root: BlockNr,
    /// Job table root.
    pub jobs_root: BlockNr,
    /// Root of the set of addresses merged ahead of the merge cursor.
    pub merged_root: BlockNr,
    /// Root of the label index; block 0 (never a node) when read from a version 1
    /// store, which has none: `open` builds it.
    pub label_index_root: BlockNr,
    /// Root of the origin table; block 0 (never a node) when read from a store of
    /// format version 3 or older, which has none: `open` makes it (origin 0).
    pub origins_root: BlockNr,
    /// Next group id (group snapshots; 0 is "no group"). Format version 4.
    pub next_group_id: u32,
    /// Set when a metadata write failed: run `check` before trusting the store.
    pub needs_check: bool,
    /// Set by a clean shutdown, cleared by the first commit after open.
    pub clean_shutdown: bool,
    /// ro_compat feature bits found (non-zero opens read-only).
    pub ro_compat: u32,
    /// The format version of the block it was decoded from (`encode` always writes
    /// [`FORMAT_VERSION`]): `open` upgrades what an older version lacks.
    pub format_version: u32,
}

fn bad(slot: u64, reason: Reason) -> Error {
    Error::Corrupt(Corrupt {
        kind: BlockKind::Superblock,
        block: BlockNr(slot),
        reason,
    })
}

impl Superblock {
    /// Encode into a 4 KiB block for its slot (`txn_id % 2`), checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE as usize];
        let slot = self.txn_id.0 % NR_SUPERBLOCK_SLOTS;
        le::put_u32(&mut b, 4, SUPERBLOCK_KIND);
        le::put_u64(&mut b, 8, slot);
        le::put_u64(&mut b, 16, self.txn_id.0);
        le::put_u64(&mut b, SB_MAGIC_OFFSET, MAGIC);
        le::put_u32(&mut b, SB_VERSION_OFFSET, FORMAT_VERSION);
        le::put_u32(&mut b, SB_INCOMPAT_OFFSET, 0);
        le::put_u32(&mut b, SB_RO_COMPAT_OFFSET, self.ro_compat);
        le::put_u32(&mut b, SB_COMPAT_OFFSET, 0);
        b[SB_UUID_OFFSET..SB_UUID_OFFSET + 16].copy_from_slice(&self.uuid);
        le::put_u32(&mut b, SB_BLOCK_SIZE_OFFSET, BLOCK_SIZE as u32);
        le::put_u32(&mut b, SB_CHUNK_SIZE_OFFSET, self.chunk_size);
        le::put_u64(&mut b, SB_STORE_LEN_OFFSET, self.store_len);
        le::put_u64(&mut b, SB_ORIGIN_LEN_OFFSET, self.origin_len);
        le::put_u64(&mut b, SB_CLOCK_OFFSET, self.clock);
        le::put_u32(&mut b, SB_NEXT_LABEL_OFFSET, self.next_label);
        le::put_u32(&mut b, SB_NEXT_SNAP_OFFSET, self.next_snap_id);
        le::put_u32(&mut b, SB_NEXT_JOB_OFFSET, self.next_job_id);
        le::put_u32(&mut b, SB_MAX_EXTENT_OFFSET, btree::elements::MAX_EXTENT);
        le::put_u64(&mut b, SB_ELEMENTS_ROOT_OFFSET, self.elements_root.0);
        le::put_u64(&mut b, SB_VERSIONS_ROOT_OFFSET, self.versions_root.0);
        le::put_u64(&mut b, SB_SNAPSHOTS_ROOT_OFFSET, self.snapshots_root.0);
        le::put_u64(&mut b, SB_JOBS_ROOT_OFFSET, self.jobs_root.0);
        le::put_u64(&mut b, SB_MERGED_ROOT_OFFSET, self.merged_root.0);
        le::put_u64(&mut b, SB_LABEL_INDEX_ROOT_OFFSET, self.label_index_root.0);
        le::put_u64(&mut b, SB_ORIGINS_ROOT_OFFSET, self.origins_root.0);
        le::put_u32(&mut b, SB_NEXT_GROUP_OFFSET, self.next_group_id);
        le::put_u32(&mut b, SB_NEEDS_CHECK_OFFSET, self.needs_check as u32);
        le::put_u32(&mut b, SB_CLEAN_OFFSET, self.clean_shutdown as u32);
        let c = crc32fast::hash(&b[4..]) ^ SUPERBLOCK_CSUM_SALT;
        le::put_u32(&mut b, 0, c);
        b
    }

    /// Decode and verify the block read from `slot`.
    pub fn decode(b: &[u8], slot: u64) -> Result<Superblock> {
        if b.len() != BLOCK_SIZE as usize {
            return Err(bad(slot, Reason::BadField));
        }
        if le::get_u64(b, SB_MAGIC_OFFSET) != MAGIC || le::get_u32(b, 4) != SUPERBLOCK_KIND {
            return Err(bad(slot, Reason::BadMagic));
        }
        if crc32fast::hash(&b[4..]) ^ SUPERBLOCK_CSUM_SALT != le::get_u32(b, 0) {
            return Err(bad(slot, Reason::BadChecksum));
        }
        let found = le::get_u64(b, 8);
        if found != slot {
            return Err(bad(slot, Reason::WrongBlockNr { found }));
        }
        let version = le::get_u32(b, SB_VERSION_OFFSET);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::Unsupported(format!(
                "format version {version} (this build reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
            )));
        }
        let label_index_root = match version {
            1 => BlockNr(0),
            _ => match le::get_u64(b, SB_LABEL_INDEX_ROOT_OFFSET) {
                0 => return Err(bad(slot, Reason::BadField)),
                r => BlockNr(r),
            },
        };
        let (origins_root, next_group_id) = match version {
            1..=3 => (BlockNr(0), 1),
            _ => match le::get_u64(b, SB_ORIGINS_ROOT_OFFSET) {
                0 => return Err(bad(slot, Reason::BadField)),
                r => (BlockNr(r), le::get_u32(b, SB_NEXT_GROUP_OFFSET).max(1)),
            },
        };
        let incompat = le::get_u32(b, SB_INCOMPAT_OFFSET);
        if incompat != 0 {
            return Err(Error::Unsupported(format!(
                "incompatible feature bits {incompat:#x}"
            )));
        }
        let txn = le::get_u64(b, 16);
        if txn % NR_SUPERBLOCK_SLOTS != slot {
            return Err(bad(slot, Reason::BadField));
        }
        if le::get_u32(b, SB_BLOCK_SIZE_OFFSET) != BLOCK_SIZE as u32 {
            return Err(bad(slot, Reason::BadField));
        }
        let chunk_size = le::get_u32(b, SB_CHUNK_SIZE_OFFSET);
        if !valid_chunk_size(chunk_size) {
            return Err(bad(slot, Reason::BadField));
        }
        if le::get_u32(b, SB_MAX_EXTENT_OFFSET) != btree::elements::MAX_EXTENT {
            return Err(Error::Unsupported("a different extent length".into()));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[SB_UUID_OFFSET..SB_UUID_OFFSET + 16]);
        Ok(Superblock {
            txn_id: TxnId(txn),
            uuid,
            chunk_size,
            store_len: le::get_u64(b, SB_STORE_LEN_OFFSET),
            origin_len: le::get_u64(b, SB_ORIGIN_LEN_OFFSET),
            clock: le::get_u64(b, SB_CLOCK_OFFSET),
            next_label: le::get_u32(b, SB_NEXT_LABEL_OFFSET),
            next_snap_id: le::get_u32(b, SB_NEXT_SNAP_OFFSET),
            next_job_id: le::get_u32(b, SB_NEXT_JOB_OFFSET),
            elements_root: BlockNr(le::get_u64(b, SB_ELEMENTS_ROOT_OFFSET)),
            versions_root: BlockNr(le::get_u64(b, SB_VERSIONS_ROOT_OFFSET)),
            snapshots_root: BlockNr(le::get_u64(b, SB_SNAPSHOTS_ROOT_OFFSET)),
            jobs_root: BlockNr(le::get_u64(b, SB_JOBS_ROOT_OFFSET)),
            merged_root: BlockNr(le::get_u64(b, SB_MERGED_ROOT_OFFSET)),
            label_index_root,
            origins_root,
            next_group_id,
            needs_check: le::get_u32(b, SB_NEEDS_CHECK_OFFSET) != 0,
            clean_shutdown: le::get_u32(b, SB_CLEAN_OFFSET) != 0,
            ro_compat: le::get_u32(b, SB_RO_COMPAT_OFFSET),
            format_version: version,
        })
    }
}

/// Whether `c` is an allowed chunk size (a power of two from 4 KiB to 1 MiB).
pub fn valid_chunk_size(c: u32) -> bool {
    c.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c)
}

/// Write `sb` into its slot.
pub fn write_superblock(dev: &dyn BlockDevice, sb: &Superblock) -> Result<()> {
    let slot = sb.txn_id.0 % NR_SUPERBLOCK_SLOTS;
    dev.write_at(&sb.encode(), slot * BLOCK_SIZE)
        .map_err(|source| Error::Io {
            device: "store",
            offset: slot * BLOCK_SIZE,
            source,
        })
}

/// Read both slots and return the valid one with the highest transaction id. If
/// neither is valid, the error of slot 0 (or an unsupported-format error) is returned.
pub fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock> {
    if dev.len() < NR_SUPERBLOCK_SLOTS * BLOCK_SIZE {
        return Err(Error::Invalid(format!(
            "store device of {} bytes is too small to hold a superblock",
            dev.len()
        )));
    }
    let mut results = Vec::new();
    for slot in 0..NR_SUPERBLOCK_SLOTS {
        let mut b = vec![0u8; BLOCK_SIZE as usize];
        let r = dev
            .read_at(&mut b, slot * BLOCK_SIZE)
            .map_err(|source| Error::Io {
                device: "store",
                offset: slot * BLOCK_SIZE,
                source,
            })
            .and_then(|_| Superblock::decode(&b, slot));
        results.push(r);
    }
    let best = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max_by_key(|s| s.txn_id)
        .cloned();
    match best {
        Some(sb) => Ok(sb),
        None => {
            // Prefer an "unsupported" explanation over a plain magic mismatch.
            let mut errs: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
            let pos = errs
                .iter()
                .position(|e| matches!(e, Error::Unsupported(_) | Error::Io { .. }))
                .unwrap_or(0);
            Err(errs.swap_remove(pos))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            txn_id: TxnId(7),
            uuid: [0xab; 16],
            chunk_size: 65536,
            store_len: 1 << 30,
            origin_len: 1 << 29,
            clock: 42,
            next_label: 5,
            next_snap_id: 3,
            next_job_id: 1,
            elements_root: BlockNr(16),
            versions_root: BlockNr(17),
            snapshots_root: BlockNr(18),
            jobs_root: BlockNr(19),
            merged_root: BlockNr(20),
            label_index_root: BlockNr(21),
            origins_root: BlockNr(22),
            next_group_id: 4,
            needs_check: false,
            clean_shutdown: true,
            ro_compat: 0,
            format_version: FORMAT_VERSION,
        }
    }

    #[test]
    fn roundtrip_and_golden_bytes() {
        let sb = sample();
        let b = sb.encode();
        assert_eq!(Superblock::decode(&b, 1).unwrap(), sb);
        // Golden: the first 40 bytes of this superblock. A layout change fails here.
        let hex: String = b[4..40].iter().map(|x| format!("{x:02x}")).collect();
        // kind "VPSB", slot 1, txn 7, magic "UBLKSNAP", format version 4
        assert_eq!(
            hex,
            "565053420100000000000000070000000000000055424c4b534e41500400000000000000"
        );
        // the version 4 fields: origins_root 22, next_group_id 4
        let v4: String = b[168..180].iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(v4, "160000000000000004000000");
    }

    /// A version 1 block as that format wrote it: this block with version 1 and no
    /// label index root.
    fn version1(sb: &Superblock) -> Vec<u8> {
        let mut b = sb.encode();
        le::put_u32(&mut b, SB_VERSION_OFFSET, 1);
        le::put_u64(&mut b, SB_LABEL_INDEX_ROOT_OFFSET, 0);
        let c = crc32fast::hash(&b[4..]) ^ SUPERBLOCK_CSUM_SALT;
        le::put_u32(&mut b, 0, c);
        b
    }

    #[test]
    fn version1_decodes_without_a_label_index() {
        let sb = sample();
        let got = Superblock::decode(&version1(&sb), 1).unwrap();
        assert_eq!(got.label_index_root, BlockNr(0));
        assert_eq!(got.elements_root, sb.elements_root);
    }

    /// A version 3 block as that format wrote it: this block with version 3 and
    /// nothing past the label index root.
    #[test]
    fn version3_decodes_without_an_origin_table() {
        let sb = sample();
        let mut b = sb.encode();
        le::put_u32(&mut b, SB_VERSION_OFFSET, 3);
        b[SB_ORIGINS_ROOT_OFFSET..SB_END].fill(0);
        let c = crc32fast::hash(&b[4..]) ^ SUPERBLOCK_CSUM_SALT;
        le::put_u32(&mut b, 0, c);
        let got = Superblock::decode(&b, 1).unwrap();
        assert_eq!(got.origins_root, BlockNr(0));
        assert_eq!(got.next_group_id, 1);
        assert_eq!(got.format_version, 3);
        assert_eq!(got.label_index_root, sb.label_index_root);
    }

    #[test]
    fn version4_without_an_origin_table_is_refused() {
        let mut sb = sample();
        sb.origins_root = BlockNr(0);
        assert!(Superblock::decode(&sb.encode(), 1).is_err());
    }

    #[test]
    fn version2_without_a_label_index_is_refused() {
        let mut sb = sample();
        sb.label_index_root = BlockNr(0);
        assert!(Superblock::decode(&sb.encode(), 1).is_err());
    }

    #[test]
    fn newer_versions_are_unsupported() {
        let mut b = sample().encode();
        le::put_u32(&mut b, SB_VERSION_OFFSET, FORMAT_VERSION + 1);
        let c = crc32fast::hash(&b[4..]) ^ SUPERBLOCK_CSUM_SALT;
        le::put_u32(&mut b, 0, c);
        assert!(matches!(
            Superblock::decode(&b, 1),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let b = sample().encode();
        for off in (0..SB_END).chain([200, 4095]) {
            let mut c = b.clone();
            c[off] ^= 0x10;
            assert!(Superblock::decode(&c, 1).is_err(), "flip at {off} accepted");
        }
    }
}
