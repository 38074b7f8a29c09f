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
//! | 168 | 8 | origins_root (format version 4; absent before) |
//! | 176 | 4 | next_group_id (format version 4) |
//! | 180 | .. | zero |

/// Store magic ("UBLKSNAP" read as a little-endian u64).
pub const MAGIC: u64 = u64::from_le_bytes(*b"UBLKSNAP");
/// Format version written; bumped only for incompatible changes (see docs/format.md).
pub const FORMAT_VERSION: u32 = 4;
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
pub(crate) const SB_ORIGINS_ROOT_OFFSET: usize = 168;
pub(crate) const SB_NEXT_GROUP_OFFSET: usize = 176;
pub(crate) const SB_END: usize = 180;

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
/// Tree tag of the origin table (format version 4).
pub const ORIGINS_TREE_TAG: u8 = 7;

/// Longest snapshot name, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// Addresses are cut per origin (format version 4): origin `k`'s chunk `c` is the
/// pool address `k << ORIGIN_SHIFT | c` (2^40 chunks per origin, 2^24 origins).
pub const ORIGIN_SHIFT: u32 = 40;

/// The chunk-number bits of a pool address.
pub const ORIGIN_CHUNK_MASK: u64 = (1 << ORIGIN_SHIFT) - 1;

/// Most origins a store holds (ids `0..MAX_ORIGINS`).
pub const MAX_ORIGINS: u32 = 1 << 24;
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
/// Snapshot record of format version 3: the version 2 record, then guid [u8; 16] and
/// size u64.
pub const SNAP_REC_SIZE_V3: usize = SNAP_SIZE_OFFSET + 8;
/// Offset of the snapshot's origin id in a snapshot record (format version 4).
pub const SNAP_ORIGIN_OFFSET: usize = SNAP_REC_SIZE_V3;
/// Offset of the snapshot's group id (0: none) in a snapshot record (format
/// version 4).
pub const SNAP_GROUP_OFFSET: usize = SNAP_ORIGIN_OFFSET + 4;
/// Snapshot record (format version 4): the version 3 record, then origin u32 and
/// group u32.
pub const SNAP_REC_SIZE: usize = SNAP_GROUP_OFFSET + 4;
/// Longest origin device path kept in an origin record, in bytes.
pub const MAX_ORIGIN_PATH_LEN: usize = 254;
/// Origin record (format version 4): root label u32, flags u32, size u64, quota
/// (chunks) u64, created u64, name len u8, name [u8; 63], path len u16, path
/// [u8; 254].
pub const ORIGIN_REC_SIZE: usize = 32 + 1 + MAX_NAME_LEN + 2 + MAX_ORIGIN_PATH_LEN;
/// Offset of the name length in an origin record.
pub const ORIGIN_NAME_OFFSET: usize = 32;
/// Offset of the path length in an origin record.
pub const ORIGIN_PATH_OFFSET: usize = ORIGIN_NAME_OFFSET + 1 + MAX_NAME_LEN;
/// Origin flag: being removed (its snapshots are being deleted).
pub const ORIGIN_REMOVING: u32 = 1;
/// The name of origin 0 in a store upgraded from format version 3 or older.
pub const FIRST_ORIGIN_NAME: &str = "origin";
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
