//! Byte layout of a B-tree node. Every offset and constant of this crate lives here.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | csum: crc32 of bytes 4..4096, xor the salt of the node kind |
//! | 4 | 4 | kind: [`KIND_INTERNAL`] or [`KIND_LEAF`] |
//! | 8 | 8 | blocknr: where this block lives (misdirected-write check) |
//! | 16 | 8 | txn_id: the transaction that wrote it |
//! | 24 | 4 | flags: bits 0..8 the tree tag (which tree it belongs to) |
//! | 28 | 4 | nr_entries |
//! | 32 | .. | entries: key then value (leaf) or key then child block (internal) |
//!
//! Bytes after the last entry are zero.

/// Size of every metadata block.
pub const BLOCK_SIZE: usize = 4096;
/// Size of the common header.
pub const HEADER_SIZE: usize = 32;
/// Offset of the checksum.
pub const CSUM_OFFSET: usize = 0;
/// Offset of the kind tag.
pub const KIND_OFFSET: usize = 4;
/// Offset of the block number.
pub const BLOCKNR_OFFSET: usize = 8;
/// Offset of the transaction id.
pub const TXN_OFFSET: usize = 16;
/// Offset of the flags word.
pub const FLAGS_OFFSET: usize = 24;
/// Offset of the entry count.
pub const NR_ENTRIES_OFFSET: usize = 28;
/// Mask of the tree tag in the flags word.
pub const FLAGS_TREE_MASK: u32 = 0xff;

/// Kind tag of an internal node ("VPNI").
pub const KIND_INTERNAL: u32 = 0x494e_5056;
/// Kind tag of a leaf node ("VPNL").
pub const KIND_LEAF: u32 = 0x4c4e_5056;
/// Checksum salt of internal nodes.
pub const INTERNAL_CSUM_SALT: u32 = 0x5c3a_9e17;
/// Checksum salt of leaves.
pub const LEAF_CSUM_SALT: u32 = 0x2b81_d4f3;
/// Size of a child pointer in an internal node.
pub const CHILD_SIZE: usize = 8;
/// No tree we write is deeper than this; a deeper descent is corruption.
pub const MAX_DEPTH: usize = 16;

/// How many entries of `entry_size` bytes fit in a node.
pub const fn capacity(entry_size: usize) -> usize {
    (BLOCK_SIZE - HEADER_SIZE) / entry_size
}

const _: () = assert!(HEADER_SIZE == NR_ENTRIES_OFFSET + 4);
