//! One metadata block as a node: header accessors, fixed-size entries, sealing
//! (checksum) and verification of what was read from disk.
use crate::format::*;
use blockdev::{
    ids::{BlockNr, TxnId},
    le, BlockKind, Corrupt, Reason,
};

/// A 4 KiB node buffer. Entries are `entry_size` bytes: a key, then a value (leaf) or a
/// child block number (internal).
#[derive(Clone)]
pub struct Node {
    buf: Box<[u8]>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Node(block {}, txn {}, {} entries, leaf {})",
            self.blocknr(),
            self.txn().0,
            self.nr_entries(),
            self.is_leaf()
        )
    }
}

fn salt(kind: u32) -> u32 {
    if kind == KIND_LEAF {
        LEAF_CSUM_SALT
    } else {
        INTERNAL_CSUM_SALT
    }
}

/// The checksum a block should carry, given its kind.
pub fn checksum(buf: &[u8], kind: u32) -> u32 {
    crc32fast::hash(&buf[CSUM_OFFSET + 4..BLOCK_SIZE]) ^ salt(kind)
}

impl Node {
    /// An empty node of a tree.
    pub fn new(leaf: bool, tree_tag: u8) -> Node {
        let mut n = Node {
            buf: vec![0u8; BLOCK_SIZE].into_boxed_slice(),
        };
        le::put_u32(
            &mut n.buf,
            KIND_OFFSET,
            if leaf { KIND_LEAF } else { KIND_INTERNAL },
        );
        le::put_u32(&mut n.buf, FLAGS_OFFSET, tree_tag as u32);
        n
    }

    /// The raw block.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Whether this is a leaf.
    pub fn is_leaf(&self) -> bool {
        le::get_u32(&self.buf, KIND_OFFSET) == KIND_LEAF
    }
    /// The block number written in the header.
    pub fn blocknr(&self) -> BlockNr {
        BlockNr(le::get_u64(&self.buf, BLOCKNR_OFFSET))
    }
    /// The transaction that wrote (or is writing) this node.
    pub fn txn(&self) -> TxnId {
        TxnId(le::get_u64(&self.buf, TXN_OFFSET))
    }
    /// The tree tag.
    pub fn tree_tag(&self) -> u8 {
        (le::get_u32(&self.buf, FLAGS_OFFSET) & FLAGS_TREE_MASK) as u8
    }
    /// Number of entries.
    pub fn nr_entries(&self) -> usize {
        le::get_u32(&self.buf, NR_ENTRIES_OFFSET) as usize
    }
    fn set_nr_entries(&mut self, n: usize) {
        le::put_u32(&mut self.buf, NR_ENTRIES_OFFSET, n as u32);
    }
    /// Give the node a new home and owner transaction (shadowing).
    pub fn relocate(&mut self, b: BlockNr, txn: TxnId) {
        le::put_u64(&mut self.buf, BLOCKNR_OFFSET, b.0);
        le::put_u64(&mut self.buf, TXN_OFFSET, txn.0);
    }

    /// Entry `i` (key and value bytes).
    pub fn entry(&self, i: usize, esize: usize) -> &[u8] {
        let o = HEADER_SIZE + i * esize;
        &self.buf[o..o + esize]
    }
    /// Mutable entry `i`.
    pub fn entry_mut(&mut self, i: usize, esize: usize) -> &mut [u8] {
        let o = HEADER_SIZE + i * esize;
        &mut self.buf[o..o + esize]
    }
    /// Insert an entry at `i`, shifting the later ones. The caller checks capacity.
    pub fn insert_entry(&mut self, i: usize, esize: usize, bytes: &[u8]) {
        let n = self.nr_entries();
        debug_assert!(n < capacity(esize) && i <= n && bytes.len() == esize);
        let o = HEADER_SIZE + i * esize;
        let end = HEADER_SIZE + n * esize;
        self.buf.copy_within(o..end, o + esize);
        self.buf[o..o + esize].copy_from_slice(bytes);
        self.set_nr_entries(n + 1);
    }
    /// Remove entry `i`, shifting the later ones down.
    pub fn remove_entry(&mut self, i: usize, esize: usize) {
        let n = self.nr_entries();
        debug_assert!(i < n);
        let o = HEADER_SIZE + i * esize;
        let end = HEADER_SIZE + n * esize;
        self.buf.copy_within(o + esize..end, o);
        self.buf[end - esize..end].fill(0);
        self.set_nr_entries(n - 1);
    }
    /// Move entries `at..` into a new node of the same kind and tree.
    pub fn split_off(&mut self, at: usize, esize: usize) -> Node {
        let n = self.nr_entries();
        let mut right = Node::new(self.is_leaf(), self.tree_tag());
        let from = HEADER_SIZE + at * esize;
        let end = HEADER_SIZE + n * esize;
        right.buf[HEADER_SIZE..HEADER_SIZE + (end - from)].copy_from_slice(&self.buf[from..end]);
        right.set_nr_entries(n - at);
        self.buf[from..end].fill(0);
        self.set_nr_entries(at);
        right
    }
    /// Append every entry of `other` (same kind) to this node. The caller checks capacity.
    pub fn append(&mut self, other: &Node, esize: usize) {
        let n = self.nr_entries();
        let m = other.nr_entries();
        debug_assert!(n + m <= capacity(esize));
        let o = HEADER_SIZE + n * esize;
        self.buf[o..o + m * esize]
            .copy_from_slice(&other.buf[HEADER_SIZE..HEADER_SIZE + m * esize]);
        self.set_nr_entries(n + m);
    }

    /// Compute and store the checksum; call just before writing.
    pub fn seal(&mut self) {
        let kind = le::get_u32(&self.buf, KIND_OFFSET);
        let c = checksum(&self.buf, kind);
        le::put_u32(&mut self.buf, CSUM_OFFSET, c);
    }

    /// Verify a block read from `at`: checksum, kind, own block number, transaction
    /// (not newer than `max_txn`), tree tag and entry count, in that order.
    pub fn verify(
        buf: Vec<u8>,
        at: BlockNr,
        max_txn: TxnId,
        tree_tag: u8,
        esize_leaf: usize,
        esize_internal: usize,
    ) -> Result<Node, Corrupt> {
        let bad = |reason| Corrupt {
            kind: BlockKind::Node,
            block: at,
            reason,
        };
        if buf.len() != BLOCK_SIZE {
            return Err(bad(Reason::BadField));
        }
        let kind = le::get_u32(&buf, KIND_OFFSET);
        if kind != KIND_LEAF && kind != KIND_INTERNAL {
            // A bad kind usually means a bad checksum too; report the checksum first
            // unless it happens to match under either salt.
            return Err(bad(Reason::BadMagic));
        }
        if checksum(&buf, kind) != le::get_u32(&buf, CSUM_OFFSET) {
            return Err(bad(Reason::BadChecksum));
        }
        let n = Node {
            buf: buf.into_boxed_slice(),
        };
        if n.blocknr() != at {
            return Err(bad(Reason::WrongBlockNr {
                found: n.blocknr().0,
            }));
        }
        if n.txn() > max_txn {
            return Err(bad(Reason::TxnFromFuture { found: n.txn().0 }));
        }
        if n.tree_tag() != tree_tag {
            return Err(bad(Reason::BadMagic));
        }
        let esize = if n.is_leaf() {
            esize_leaf
        } else {
            esize_internal
        };
        let nr = n.nr_entries();
        if nr > capacity(esize) || (!n.is_leaf() && nr == 0) {
            return Err(bad(Reason::BadEntryCount));
        }
        Ok(n)
    }
}
