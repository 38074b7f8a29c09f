//! Consistency check of a store: everything `open` verifies (superblock, every node's
//! checksum, magic, own block number and transaction, key order and bounds, tables),
//! plus what only a whole walk can tell:
//! - every allocated chunk and block is referenced exactly once (no leak, no double
//!   reference), compared with the live allocator of the open store. The allocator
//!   is not stored: `open` rebuilds it from the trees, so a leak can only show in a
//!   store that has been running (an online check), never right after an open.
//!   Chunks of copy-outs in flight (`Store::copy_out_begin`) count as referenced;
//! - no element names a label outside the version tree, or label 0;
//! - the label index holds exactly the counts the elements give (`crate::label_index`);
//! - each origin's used chunks (`Store::origin_used`) are what its addresses'
//!   elements name;
//! - every snapshot reads through a live, non-ghost label, one snapshot per label,
//!   and its size is whole sectors, no larger than the origin's (which only grows);
//! - with no background work pending: every ghost has two or more children, and every
//!   element is read by some visible version (no orphaned element).
//!
//! Every problem found is reported, not only the first.
use crate::{rules::View, store::Store, Result};
use blockdev::ids::{Addr, Label};
use btree::elements::Ptr;
use std::collections::{BTreeMap, BTreeSet};

/// What `check` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Problems that make the store unsafe to trust.
    pub errors: Vec<String>,
    /// Wasted space and the like (e.g. leaked chunks): the data is safe.
    pub warnings: Vec<String>,
    /// Elements (extents counted per address) seen.
    pub nr_elements: u64,
    /// Metadata blocks seen.
    pub nr_meta_blocks: u64,
    /// Data chunks referenced.
    pub nr_data_chunks: u64,
    /// Data chunks allocated but referenced by nothing (each also a warning).
    pub nr_leaked_chunks: u64,
    /// Metadata blocks allocated but referenced by nothing (each also a warning).
    pub nr_leaked_blocks: u64,
    /// Entries where the label index disagrees with the elements (each also an
    /// error; `check --repair` rebuilds the index when these are the only errors).
    pub nr_index_errors: u64,
}

impl Report {
    /// Whether nothing at all was found.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.warnings.is_empty()
    }
}

impl Store {
    /// Check the open store (see the module documentation). An `Err` means the walk
    /// itself could not proceed (an unreadable or corrupt block).
    pub fn check(&mut self) -> Result<Report> {
        let mut rep = Report::default();
        let (alloc_data, alloc_blocks) = self.alloc.snapshot_usage();
        let (pend_chunks, pend_blocks) = self.alloc.pending();
        let mut blocks = BTreeSet::new();
        let mut dups = Vec::new();
        let mut by_addr: BTreeMap<u64, Vec<(Label, Ptr)>> = BTreeMap::new();
        let mut data = BTreeSet::new();
        {
            let mut on_node = |b: blockdev::ids::BlockNr| {
                if !blocks.insert(b.0) {
                    dups.push(b.0);
                }
                Ok(())
            };
            self.walk_table_nodes(&mut on_node)?;
            let by_addr = &mut by_addr;
            let data = &mut data;
            let dups2 = &mut Vec::new();
            self.elements
                .walk(&mut self.cache, &mut on_node, &mut |k, v| {
                    for i in 0..v.len as u64 {
                        let a = Addr(k.addr.0 + i);
                        let p = v.ptr_at(k.addr, a);
                        if let Ptr::Chunk(c) = p {
                            if !data.insert(c.0) {
                                dups2.push(c.0);
                            }
                        }
                        by_addr.entry(a.0).or_default().push((k.label, p));
                    }
                    Ok(())
                })?;
            for c in dups2.iter() {
                rep.errors.push(format!("data chunk {c} referenced twice"));
            }
        }
        for b in dups {
            rep.errors
                .push(format!("metadata block {b} referenced twice"));
        }
        rep.nr_meta_blocks = blocks.len() as u64;
        rep.nr_data_chunks = data.len() as u64;
        // each origin's space, as the elements give it
        let mut used: BTreeMap<u32, u64> = BTreeMap::new();
        for (a, es) in &by_addr {
            let n = es
                .iter()
                .filter(|(_, p)| matches!(p, Ptr::Chunk(_)))
                .count();
            *used.entry(crate::store::addr_origin(*a)).or_default() += n as u64;
        }
        let ks: BTreeSet<u32> = used
            .keys()
            .chain(self.origin_used.keys())
            .copied()
            .collect();
        for k in ks {
            let (counted, kept) = (used.get(&k).copied().unwrap_or(0), self.origin_used(k));
            if counted != kept {
                rep.errors.push(format!(
                    "origin #{k}: its snapshots hold {counted} chunks, the store counts {kept}"
                ));
            }
        }
        // allocator vs references (pending frees are still allocated until commit)
        // (and chunks of copy-outs in flight are referenced by their copy)
        let pend_c: BTreeSet<u64> = pend_chunks
            .iter()
            .chain(self.copying.values())
            .map(|c| c.0)
            .collect();
        let pend_b: BTreeSet<u64> = pend_blocks.iter().map(|b| b.0).collect();
        for c in alloc_data.difference(&data) {
            if !pend_c.contains(c) {
                rep.nr_leaked_chunks += 1;
                rep.warnings
                    .push(format!("data chunk {c} allocated but unreferenced (leak)"));
            }
        }
        for c in data.difference(&alloc_data) {
            rep.errors
                .push(format!("data chunk {c} referenced but not allocated"));
        }
        for b in alloc_blocks.difference(&blocks) {
            if !pend_b.contains(b) {
                rep.nr_leaked_blocks += 1;
                rep.warnings.push(format!(
                    "metadata block {b} allocated but unreferenced (leak)"
                ));
            }
        }
        for b in blocks.difference(&alloc_blocks) {
            rep.errors
                .push(format!("metadata block {b} referenced but not allocated"));
        }
        // labels and snapshots
        let mut seen_labels = BTreeSet::new();
        for s in self.snapshots() {
            if !self.vt.contains(s.label) || self.vt.is_ghost(s.label) {
                rep.errors.push(format!(
                    "snapshot {} reads through dead label {}",
                    s.name, s.label
                ));
            }
            if !seen_labels.insert(s.label) {
                rep.errors
                    .push(format!("label {} used by two snapshots", s.label));
            }
            let origin_size = self.origin_size(s.origin).unwrap_or(0);
            if s.size > origin_size || !s.size.is_multiple_of(512) {
                // the origin only grows and a snapshot takes its size (`grow_origin`)
                rep.errors.push(format!(
                    "snapshot {} is {} bytes: not a whole number of sectors no larger \
                     than the origin's {}",
                    s.name, s.size, origin_size
                ));
            }
            if self.vt.contains(s.label)
                && self.vt.root_of(s.label) != self.root_of_origin(s.origin)
            {
                rep.errors.push(format!(
                    "snapshot {} of origin #{} reads through label {} of another origin's tree",
                    s.name, s.origin, s.label
                ));
            }
        }
        let quiescent = self.jobs.is_empty();
        let roots: std::collections::BTreeMap<u32, Label> =
            self.origins.iter().map(|(k, o)| (*k, o.root)).collect();
        let view = View::new(self.vt.prepare(), Label(0));
        let tree = view.anc.tree();
        // the visible versions of each origin's tree
        let mut visible: std::collections::HashMap<Label, Vec<Label>> = Default::default();
        for l in tree.labels().filter(|&l| !tree.is_root(l)) {
            if view.visible(l) {
                visible.entry(tree.root_of(l)).or_default().push(l);
            }
        }
        let none = Vec::new();
        for (a, elems) in &by_addr {
            rep.nr_elements += elems.len() as u64;
            let Some(&root) = roots.get(&crate::store::addr_origin(*a)) else {
                rep.errors.push(format!(
                    "elements at address {a} of origin #{}, which is not in the origin table",
                    crate::store::addr_origin(*a)
                ));
                continue;
            };
            let view = View { root, ..view };
            let mut labels = BTreeSet::new();
            for (l, _) in elems {
                if tree.is_root(*l) || !tree.contains(*l) {
                    rep.errors
                        .push(format!("element ({a}, {l}) names a dead label"));
                } else if tree.root_of(*l) != root {
                    rep.errors.push(format!(
                        "element ({a}, {l}) names a label of another origin's tree"
                    ));
                }
                if !labels.insert(*l) {
                    rep.errors.push(format!("two elements ({a}, {l})"));
                }
            }
            if quiescent && rep.errors.is_empty() {
                let e: crate::rules::Elems = elems.iter().copied().collect();
                let read: BTreeSet<Label> = visible
                    .get(&root)
                    .unwrap_or(&none)
                    .iter()
                    .map(|&v| view.reader(&e, v))
                    .collect();
                for (l, _) in elems {
                    if !read.contains(l) {
                        rep.warnings.push(format!(
                            "element ({a}, {l}) is read by no visible version (orphan)"
                        ));
                    }
                }
            }
        }
        // the label index against the elements
        let mut expected = crate::label_index::Counts::new();
        for (a, elems) in &by_addr {
            for (l, _) in elems {
                crate::label_index::count_extent(&mut expected, *l, *a, 1);
            }
        }
        let mut found = crate::label_index::Counts::new();
        self.label_index
            .walk(&mut self.cache, &mut |_| Ok(()), &mut |k, n| {
                found.insert(*k, *n);
                Ok(())
            })?;
        if found != expected {
            let keys: BTreeSet<_> = found.keys().chain(expected.keys()).copied().collect();
            for k in keys {
                let (f, e) = (found.get(&k), expected.get(&k));
                if f != e {
                    rep.nr_index_errors += 1;
                    rep.errors.push(format!(
                        "label index: label {} region {} counts {} addresses, the elements {}",
                        k.label,
                        k.region,
                        f.copied().unwrap_or(0),
                        e.copied().unwrap_or(0)
                    ));
                }
            }
        }
        if quiescent {
            for l in tree.labels() {
                if !tree.is_root(l) && tree.is_ghost(l) && tree.children(l).len() < 2 {
                    rep.errors.push(format!(
                        "ghost {l} has {} children with no pass pending",
                        tree.children(l).len()
                    ));
                }
            }
        }
        Ok(rep)
    }
}

impl Store {
    /// Every metadata block the committed and open trees reference (for `dump` and
    /// damage tests), sorted.
    pub fn metadata_blocks(&mut self) -> Result<Vec<blockdev::ids::BlockNr>> {
        let mut out = Vec::new();
        let mut on_node = |b| {
            out.push(b);
            Ok(())
        };
        self.walk_table_nodes(&mut on_node)?;
        self.elements
            .walk(&mut self.cache, &mut on_node, &mut |_, _| Ok(()))?;
        out.sort();
        Ok(out)
    }

    /// Visit every node of the other trees (versions, snapshots, jobs, merged-ahead
    /// set, label index, origins), verifying each.
    fn walk_table_nodes(
        &mut self,
        on_node: &mut dyn FnMut(blockdev::ids::BlockNr) -> btree::Result<()>,
    ) -> Result<()> {
        self.versions
            .walk(&mut self.cache, on_node, &mut |_, _| Ok(()))?;
        self.snap_tree
            .walk(&mut self.cache, on_node, &mut |_, _| Ok(()))?;
        self.job_tree
            .walk(&mut self.cache, on_node, &mut |_, _| Ok(()))?;
        self.merged_tree
            .walk(&mut self.cache, on_node, &mut |_, _| Ok(()))?;
        self.label_index
            .walk(&mut self.cache, on_node, &mut |_, _| Ok(()))?;
        self.origin_tree
            .walk(&mut self.cache, on_node, &mut |_, _| Ok(()))?;
        Ok(())
    }
}
