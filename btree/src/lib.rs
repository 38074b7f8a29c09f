//! The metadata engine of ublk-snap: a copy-on-write B+tree over 4 KiB checksummed
//! blocks, and on top of it the versioned-pointer element index.
//!
//! # Layers
//! - [`node`]: one 4 KiB block, its 32-byte header (checksum, kind, own block number,
//!   transaction id, flags, entry count) and fixed-size entries.
//! - [`NodeCache`]: reads, verifies and caches nodes under a byte budget; holds the
//!   dirty nodes of the open transaction and writes them out on commit or eviction.
//! - [`Tree`]: a B+tree with fixed-size keys and values ([`Codec`]): lookup, range
//!   scans, insert and remove, all by shadowing (copy-on-write): a node written by an
//!   earlier transaction is never modified in place, so the last committed tree stays
//!   intact on disk until the superblock points elsewhere.
//! - [`elements`]: the versioned pointers: (address, label) -> chunk or hole, with
//!   extents for runs of consecutive chunks of one label.
//!
//! # Invariants
//! - Every node on disk carries a crc32 salted by its kind, its own block number and
//!   the transaction that wrote it; a node is verified before use, never trusted.
//! - Keys strictly increase within a node and along a leaf level; the first key of an
//!   internal entry is a lower bound of its child.
//! - A node whose transaction id is the open transaction is private to it and may be
//!   changed in place; any other node is shadowed first.
//! - Nothing in this crate panics on bytes read from disk.
//!
//! Block allocation belongs to the layer above, behind [`MetaAlloc`].
#![warn(missing_docs)]

mod codec;
pub mod elements;
mod error;
pub mod format;
pub mod node;
mod node_cache;
mod tree;

pub use codec::Codec;
pub use error::{Error, Result};
pub use node_cache::{CacheStats, NodeCache};
pub use tree::{Tree, TreeStats};

use blockdev::ids::BlockNr;

/// Where the tree gets metadata blocks from and gives them back to.
pub trait MetaAlloc {
    /// A free 4 KiB block, or [`Error::NoSpace`].
    fn alloc_block(&mut self) -> Result<BlockNr>;
    /// Give a block back. It must not be reused before the open transaction commits.
    fn free_block(&mut self, b: BlockNr);
}
