//! The node cache: every node read or written goes through it.
//!
//! It owns the metadata device handle, a byte budget, and the dirty nodes of the open
//! transaction. Clean nodes are evicted least-recently-used first; a dirty node that
//! must leave the cache is written to its (freshly allocated, not yet committed) block
//! first, so the open transaction may be larger than memory.
//!
//! The dirty nodes' block numbers are also kept in a set (`dirty`): a commit writes
//! them in block order without walking every cached node. Invariant: a block is in
//! `dirty` exactly when the cache holds it as a dirty entry.
//!
//! # Durability
//! [`NodeCache::write_dirty`] writes every dirty node; the caller then flushes the
//! device and writes the superblock (see `exception_store::commit`). Until then no
//! committed tree references any dirty block, so a crash loses nothing committed.
use crate::{format::BLOCK_SIZE, node::Node, Error, Result};
use blockdev::{
    ids::{BlockNr, TxnId},
    BlockDevice, Reason,
};
use lru::LruCache;
use std::{collections::BTreeSet, sync::Arc};

/// Approximate memory held by one cached node.
const ENTRY_COST: usize = BLOCK_SIZE + 64;

struct Entry {
    node: Arc<Node>,
    dirty: bool,
}

/// Counters for benchmarks and `status`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheStats {
    /// Lookups served from memory.
    pub hits: u64,
    /// Lookups that read the device.
    pub misses: u64,
    /// Nodes written (commit or eviction).
    pub writes: u64,
    /// Nodes cached now.
    pub nr_cached: usize,
    /// Dirty nodes cached now.
    pub nr_dirty: usize,
}

/// See the module documentation.
pub struct NodeCache {
    dev: Arc<dyn BlockDevice>,
    lru: LruCache<BlockNr, Entry>,
    /// The dirty entries' blocks (module documentation).
    dirty: BTreeSet<BlockNr>,
    max_entries: usize,
    txn: TxnId,
    stats: CacheStats,
}

impl std::fmt::Debug for NodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeCache({} nodes, txn {})", self.lru.len(), self.txn.0)
    }
}

impl NodeCache {
    /// A cache over `dev` holding at most about `budget_bytes` of nodes; `txn` is the
    /// transaction now open (one more than the last committed).
    pub fn new(dev: Arc<dyn BlockDevice>, budget_bytes: usize, txn: TxnId) -> Self {
        NodeCache {
            dev,
            lru: LruCache::unbounded(),
            dirty: BTreeSet::new(),
            max_entries: (budget_bytes / ENTRY_COST).max(64),
            txn,
            stats: CacheStats::default(),
        }
    }

    /// The open transaction.
    pub fn txn(&self) -> TxnId {
        self.txn
    }

    /// The device nodes live on.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        let mut s = self.stats;
        s.nr_cached = self.lru.len();
        s.nr_dirty = self.dirty.len();
        s
    }

    /// Read node `b` of the tree tagged `tag`, verifying it on a miss with the node
    /// checks and then `validate` (the tree's key-order check).
    pub fn read(
        &mut self,
        b: BlockNr,
        tag: u8,
        esizes: (usize, usize),
        validate: &dyn Fn(&Node) -> std::result::Result<(), Reason>,
    ) -> Result<Arc<Node>> {
        if let Some(e) = self.lru.get(&b) {
            self.stats.hits += 1;
            // A cached node of another tree means a block referenced by two trees.
            if e.node.tree_tag() != tag {
                return Err(blockdev::Corrupt {
                    kind: blockdev::BlockKind::Node,
                    block: b,
                    reason: Reason::DoubleReference,
                }
                .into());
            }
            return Ok(e.node.clone());
        }
        self.stats.misses += 1;
        let mut buf = vec![0u8; BLOCK_SIZE];
        self.dev
            .read_at(&mut buf, b.0 * BLOCK_SIZE as u64)
            .map_err(|source| Error::Io { block: b, source })?;
        let node = Node::verify(buf, b, self.txn, tag, esizes.0, esizes.1)?;
        validate(&node).map_err(|reason| blockdev::Corrupt {
            kind: blockdev::BlockKind::Node,
            block: b,
            reason,
        })?;
        let node = Arc::new(node);
        self.insert(
            b,
            Entry {
                node: node.clone(),
                dirty: false,
            },
        )?;
        Ok(node)
    }

    /// Store a node changed by the open transaction; it must already carry its block
    /// number and the open transaction id.
    pub fn put_dirty(&mut self, node: Node) -> Result<()> {
        debug_assert_eq!(node.txn(), self.txn);
        let b = node.blocknr();
        self.insert(
            b,
            Entry {
                node: Arc::new(node),
                dirty: true,
            },
        )
    }

    /// Drop a freed block from the cache (a dirty one is simply never written).
    pub fn forget(&mut self, b: BlockNr) {
        self.lru.pop(&b);
        self.dirty.remove(&b);
    }

    fn insert(&mut self, b: BlockNr, e: Entry) -> Result<()> {
        if e.dirty {
            self.dirty.insert(b);
        } else {
            self.dirty.remove(&b);
        }
        self.lru.put(b, e);
        while self.lru.len() > self.max_entries {
            let Some((vb, ve)) = self.lru.pop_lru() else {
                break;
            };
            if ve.dirty {
                if let Err(err) = self.write_node(vb, &ve.node) {
                    // Keep it so that the data is not lost; the caller latches.
                    self.lru.put(vb, ve);
                    return Err(err);
                }
                self.dirty.remove(&vb);
            }
        }
        Ok(())
    }

    fn write_node(&mut self, b: BlockNr, node: &Node) -> Result<()> {
        let mut sealed = node.clone();
        sealed.seal();
        self.stats.writes += 1;
        self.dev
            .write_at(sealed.bytes(), b.0 * BLOCK_SIZE as u64)
            .map_err(|source| Error::Io { block: b, source })
    }

    /// Write every dirty node of the open transaction.
    pub fn write_dirty(&mut self) -> Result<()> {
        // in block order; one that fails stays dirty (the caller latches)
        while let Some(&b) = self.dirty.first() {
            if let Some(node) = self.lru.peek(&b).map(|e| e.node.clone()) {
                self.write_node(b, &node)?;
                if let Some(e) = self.lru.peek_mut(&b) {
                    e.dirty = false;
                }
            }
            self.dirty.remove(&b);
        }
        Ok(())
    }

    /// The open transaction committed: open `next`.
    pub fn begin(&mut self, next: TxnId) {
        debug_assert!(self.dirty.is_empty());
        debug_assert!(self.lru.iter().all(|(_, e)| !e.dirty));
        self.txn = next;
    }

    /// Forget everything cached (after a failed transaction, before reloading).
    pub fn clear(&mut self) {
        self.lru.clear();
        self.dirty.clear();
    }
}
