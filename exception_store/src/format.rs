//! Byte layout of the store. Every offset, magic and constant of the store's own
//! blocks (the superblock and the table records) lives here; B-tree nodes are laid
//! out by `btree::format`.
//!
//! The store device is cut into chunks of `chunk_size` bytes. Blocks 0 and 1 (4 KiB
//! each) are the two superblock slots; the chunks that hold them are reserved. Every
//! other chunk is either a data chunk (one copied-out or written chunk of a version)
//! or a metadata chunk, which holds `chunk_size / 4096` B-tree node blocks.
//!
//! # Superblock (one 4 KiB block, slot `txn_id % 2`)
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | csum: crc32 of bytes 4..4096 xor [`SUPERBLOCK_CSUM_SALT`] |
//! | 4 | 4 | kind: [`SUPERBLOCK_KIND`] |
//! | 8 | 8 | blocknr: 0 or 1, the slot |
//! | 16 | 8 | txn_id |
//! | 24 | 8 | magic: [`MAGIC`] |
//! | 32 | 4 | format_version: [`FORMAT_VERSION`] |
//! | 36 | 4 | incompat features (none known; any bit refuses the open) |
//! | 40 | 4 | ro_compat features (none known; any bit opens read-only) |
//! | 44 | 4 | compat features |
//! | 48 | 16 | uuid |
//! | 64 | 4 | block_size (4096) |
//! | 68 | 4 | chunk_size |
//! | 72 | 8 | store_len (bytes) |
//! | 80 | 8 | origin_len (bytes) |
//! | 88 | 8 | clock (logical time of ghosts and passes) |
//! | 96 | 4 | next_label |
//! | 100 | 4 | next_snap_id |
//! | 104 | 4 | next_job_id |
//! | 108 | 4 | max_extent (elements per extent) |
//! | 112 | 8 | elements_root |
//! | 120 | 8 | versions_root |
//! | 128 | 8 | snapshots_root |
//! | 136 | 8 | jobs_root |
//! | 144 | 4 | needs_check (reserved: never set) |
//! | 148 | 4 | clean_shutdown: 1 when written by the last commit before a clean stop |
//! | 152 | 8 | merged_root (addresses a merge did ahead of its cursor) |
//! | 160 | 8 | label_index_root (format version 2; 0 in version 1) |
//! | 168 | .. | zero |

/// Store magic ("UBLKSNAP" read as a little-endian u64).
pub const MAGIC: u64 = u64::from_le_bytes(*b"UBLKSNAP");
/// Format version written; bumped only for incompatible changes (see docs/format.md).
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build opens (and upgrades to [`FORMAT_VERSION`] at
/// its first commit: version 1 lacks the label index, which `open` builds).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of a metadata block.
pub const BLOCK_SIZE: u64 = btree::format::BLOCK_SIZE as u64;
/// Kind tag of a superblock ("VPSB").
pub const SUPERBLOCK_KIND: u32 = 0x4253_5056;
/// Checksum salt of superblocks.
pub const SUPERBLOCK_CSUM_SALT: u32 = 0x7e11_a5c9;
/// Number of superblock slots (blocks 0 and 1).
pub const NR_SUPERBLOCK_SLOTS: u64 = 2;
/// Smallest chunk size.
pub const MIN_CHUNK_SIZE: u32 = 4096;
/// Largest chunk size.
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
/// Default chunk size (see README: chosen by benchmark).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

pub(crate) const SB_MAGIC_OFFSET: usize = 24;
pub(crate) const SB_VERSION_OFFSET: usize = 32;
pub(crate) const SB_INCOMPAT_OFFSET: usize = 36;
pub(crate) const SB_RO_COMPAT_OFFSET: usize = 40;
pub(crate) const SB_COMPAT_OFFSET: usize = 44;
pub(crate) const SB_UUID_OFFSET: usize = 48;
pub(crate) const SB_BLOCK_SIZE_OFFSET: usize = 64;
pub(crate) const SB_CHUNK_SIZE_OFFSET: usize = 68;
pub(crate) const SB_STORE_LEN_OFFSET: usize = 72;
pub(crate) const SB_ORIGIN_LEN_OFFSET: usize = 80;
pub(crate) const SB_CLOCK_OFFSET: usize = 88;
pub(crate) const SB_NEXT_LABEL_OFFSET: usize = 96;
pub(crate) const SB_NEXT_SNAP_OFFSET: usize = 100;
pub(crate) const SB_NEXT_JOB_OFFSET: usize = 104;
pub(crate) const SB_MAX_EXTENT_OFFSET: usize = 108;
pub(crate) const SB_ELEMENTS_ROOT_OFFSET: usize = 112;
pub(crate) const SB_VERSIONS_ROOT_OFFSET: usize = 120;
pub(crate) const SB_SNAPSHOTS_ROOT_OFFSET: usize = 128;
pub(crate) const SB_JOBS_ROOT_OFFSET: usize = 136;
pub(crate) const SB_NEEDS_CHECK_OFFSET: usize = 144;
pub(crate) const SB_CLEAN_OFFSET: usize = 148;
pub(crate) const SB_MERGED_ROOT_OFFSET: usize = 152;
pub(crate) const SB_LABEL_INDEX_ROOT_OFFSET: usize = 160;
pub(crate) const SB_END: usize = 168;

/// Tree tag of the version table.
pub const VERSIONS_TREE_TAG: u8 = 2;
/// Tree tag of the snapshot table.
pub const SNAPSHOTS_TREE_TAG: u8 = 3;
/// Tree tag of the background job table.
pub const JOBS_TREE_TAG: u8 = 4;
/// Tree tag of the set of addresses merged ahead of the merge cursor.
pub const MERGED_TREE_TAG: u8 = 5;
/// Tree tag of the label index (`crate::label_index`).
pub const LABEL_INDEX_TREE_TAG: u8 = 6;

/// Longest snapshot name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Version record: parent u32, flags u32, ghost_since u64.
pub const VERSION_REC_SIZE: usize = 16;
/// Version flag: a ghost.
pub const VERSION_GHOST: u32 = 1;
/// Snapshot record of format versions 1 and 2: label u32, flags u32, created u64,
/// user parent u32, name len u8, name [u8; 63].
pub const SNAP_REC_SIZE_V2: usize = 4 + 4 + 8 + 4 + 1 + MAX_NAME_LEN;
/// Offset of the snapshot's guid in a snapshot record (format version 3).
pub const SNAP_GUID_OFFSET: usize = SNAP_REC_SIZE_V2;
/// Offset of the snapshot's size in bytes in a snapshot record (format version 3).
pub const SNAP_SIZE_OFFSET: usize = SNAP_GUID_OFFSET + 16;
/// Snapshot record (format version 3): the version 2 record, then guid [u8; 16] and
/// size u64.
pub const SNAP_REC_SIZE: usize = SNAP_SIZE_OFFSET + 8;
/// Snapshot flag: held (never pruned).
pub const SNAP_HOLD: u32 = 1;
/// User parent value meaning "the origin".
pub const PARENT_ORIGIN: u32 = u32::MAX;
/// Job record: kind u32, target u32, start u64, cursor u64.
pub const JOB_REC_SIZE: usize = 24;
/// Job kind: a delete pass.
pub const JOB_DELETE: u32 = 1;
/// Job kind: a cleanup pass (reshapes ghosts that became thin after another pass).
pub const JOB_CLEANUP: u32 = 2;
/// Job kind: a merge of a snapshot into the origin (target: the snapshot's label).
pub const JOB_MERGE: u32 = 3;

const _: () = assert!(SB_END <= BLOCK_SIZE as usize);
const _: () = assert!(MIN_CHUNK_SIZE as u64 >= BLOCK_SIZE);
