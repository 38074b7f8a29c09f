//! The one corruption type, shared by every layer so that `Error::Corrupt(c)` can be
//! matched at any level.
use crate::ids::BlockNr;
use std::fmt;

/// Which kind of metadata block was found damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockKind {
    /// A superblock slot.
    Superblock,
    /// A B-tree node (internal or leaf).
    Node,
    /// Data that no block kind claims (a reference to a chunk, a length).
    Reference,
}

/// What exactly is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The crc32 does not match.
    BadChecksum,
    /// The magic or block-kind tag is not ours.
    BadMagic,
    /// The block says it lives at another block number (a misdirected write).
    WrongBlockNr {
        /// The number written in the block.
        found: u64,
    },
    /// Written by a transaction newer than the one that references it.
    TxnFromFuture {
        /// The transaction id written in the block.
        found: u64,
    },
    /// Keys not in strictly increasing order.
    KeysOutOfOrder,
    /// An entry count that does not fit the block.
    BadEntryCount,
    /// A tree deeper than any tree we write.
    TooDeep,
    /// A field with a value no writer produces.
    BadField,
    /// A reference to a block or chunk outside the device.
    OutOfRange,
    /// A block or chunk referenced twice.
    DoubleReference,
    /// Unknown incompatible feature bits or format version.
    Unsupported,
}

/// A damaged metadata block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Corrupt {
    /// The kind of block.
    pub kind: BlockKind,
    /// Where it is.
    pub block: BlockNr,
    /// What is wrong.
    pub reason: Reason,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} block {}: {:?}", self.kind, self.block, self.reason)
    }
}

impl std::error::Error for Corrupt {}
