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

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockKind::Superblock => "superblock",
            BlockKind::Node => "B-tree node",
            BlockKind::Reference => "reference",
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::BadChecksum => f.write_str("checksum mismatch"),
            Reason::BadMagic => f.write_str("bad magic (not written by ublk-snap)"),
            Reason::WrongBlockNr { found } => {
                write!(f, "holds block {found} (a misdirected write)")
            }
            Reason::TxnFromFuture { found } => {
                write!(f, "written by transaction {found}, newer than its parent")
            }
            Reason::KeysOutOfOrder => f.write_str("keys out of order"),
            Reason::BadEntryCount => f.write_str("entry count does not fit the block"),
            Reason::TooDeep => f.write_str("tree deeper than any written"),
            Reason::BadField => f.write_str("a field holds a value no writer produces"),
            Reason::OutOfRange => f.write_str("reference outside the device"),
            Reason::DoubleReference => f.write_str("referenced twice"),
            Reason::Unsupported => f.write_str("unsupported format version or feature"),
        }
    }
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at block {}: {}", self.kind, self.block, self.reason)
    }
}

impl std::error::Error for Corrupt {}
