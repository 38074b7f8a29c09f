//! The rules of the design note at one address, as pure functions over the elements
//! present there (`Elems`) and the version tree.
//!
//! Nothing here touches a device: the store reads the elements of an address, asks
//! these functions what to do, and writes the difference back.
//!
//! Vocabulary (design note §2): a version is *visible* when a user can open it, or it
//! is the snapshot being merged and this address is not merged yet. The *reader* of a
//! version is the element labelled with its nearest ancestor-or-self; its *heirs* are
//! the visible versions below it that read its element.
use crate::version_tree::Ancestry;
use blockdev::ids::Label;
use btree::elements::Ptr;
use std::collections::BTreeMap;

/// The elements at one address: label -> pointer.
pub type Elems = BTreeMap<Label, Ptr>;

/// What to do for a write to a snapshot (the `fixed-lazy-split` rules of the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapWrite {
    /// Overwrite the element of this label; only the writer reads it.
    InPlace(Label),
    /// The writer shares its data with a visible descendant: split it first (the old
    /// label becomes a ghost parent, the device moves to a new leaf label), then
    /// allocate for the new label.
    Split,
    /// Move the element of this ghost (read by the writer alone) to the writer, then
    /// overwrite it.
    Relabel(Label),
    /// Give the writer a new element.
    Allocate,
}

/// The version tree as seen from one address.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// Ancestor queries.
    pub anc: Ancestry<'a>,
    /// The root of the origin this address belongs to (label 0 for origin 0): the
    /// reader of a version with no element on its path.
    pub root: Label,
    /// A ghost that still counts as visible here (the snapshot being merged, at an
    /// address the merge has not reached).
    pub merging: Option<Label>,
}

impl<'a> View<'a> {
    /// A view of an address of the origin rooted at `root`, with no merge in progress.
    pub fn new(anc: Ancestry<'a>, root: Label) -> Self {
        View {
            anc,
            root,
            merging: None,
        }
    }

    /// Whether `l` counts as a reader here.
    pub fn visible(&self, l: Label) -> bool {
        l != self.root && (!self.anc.tree().is_ghost(l) || self.merging == Some(l))
    }

    fn visible_in_subtree(&self, l: Label) -> u32 {
        let mut n = self.anc.visible_in_subtree(l);
        if let Some(m) = self.merging {
            if self.anc.tree().is_ghost(m) && self.anc.is_ancestor_or_self(l, m) {
                n += 1;
            }
        }
        n
    }

    /// The label whose element `v` reads (its nearest ancestor-or-self with an
    /// element), or the root for the origin.
    pub fn reader(&self, e: &Elems, v: Label) -> Label {
        let mut best = self.root;
        let mut best_depth = 0;
        for &x in e.keys() {
            if self.anc.is_ancestor_or_self(x, v) {
                let d = self.anc.depth(x);
                if best == self.root || d > best_depth {
                    best = x;
                    best_depth = d;
                }
            }
        }
        best
    }

    /// Visible versions strictly below `p` that read `p`'s element (no element in
    /// between). For the root: the visible versions that read the origin.
    pub fn heirs(&self, e: &Elems, p: Label) -> u32 {
        let own = self.visible(p) as u32;
        let mut total = self.visible_in_subtree(p) - own;
        let mut desc: Vec<Label> = e
            .keys()
            .copied()
            .filter(|&x| x != p && self.anc.is_ancestor_or_self(p, x))
            .collect();
        desc.sort_by_key(|&x| self.anc.tin(x));
        let mut covered_to: Option<u32> = None;
        for x in desc {
            if covered_to.is_some_and(|o| self.anc.tin(x) <= o) {
                continue; // inside an element subtree already subtracted
            }
            total -= self.visible_in_subtree(x);
            covered_to = Some(self.anc.tout(x));
        }
        total
    }

    /// Children of `p` through which a visible version reads `p`'s element.
    pub fn chains(&self, e: &Elems, p: Label) -> Vec<Label> {
        self.anc
            .tree()
            .children(p)
            .iter()
            .copied()
            .filter(|&c| !e.contains_key(&c) && (self.visible(c) || self.heirs(e, c) > 0))
            .collect()
    }

    /// The delete rules, applied to every element whose label is an invisible ghost,
    /// until nothing changes: an element nobody visible inherits is dropped; one
    /// inherited through exactly one child chain moves to that child. Returns the
    /// number of changes.
    pub fn normalize(&self, e: &mut Elems) -> usize {
        let mut changes = 0;
        loop {
            let mut cands: Vec<Label> = e
                .keys()
                .copied()
                .filter(|&l| self.anc.tree().is_ghost(l) && !self.visible(l))
                .collect();
            cands.sort_by_key(|&l| self.anc.depth(l));
            let mut changed = false;
            for l in cands {
                if !e.contains_key(&l) {
                    continue;
                }
                if self.heirs(e, l) == 0 {
                    e.remove(&l);
                    changed = true;
                } else {
                    let ch = self.chains(e, l);
                    if ch.len() == 1 {
                        if let Some(p) = e.remove(&l) {
                            e.insert(ch[0], p);
                        }
                        changed = true;
                    }
                }
                if changed {
                    changes += 1;
                }
            }
            if !changed {
                return changes;
            }
        }
    }

    /// The label an origin write must copy the old data to first, if any visible
    /// version still reads the origin here: the newest snapshot of the origin.
    ///
    /// The cheap test comes first: once the newest snapshot has an element here (the
    /// steady state after a copy-out), nothing is copied whatever the other elements
    /// are, and the heirs of the origin (a walk over every element) are not counted.
    pub fn origin_copy_out(&self, e: &Elems) -> Option<Label> {
        let top = self.anc.tree().newest(self.root)?;
        (!e.contains_key(&top) && self.heirs(e, self.root) > 0).then_some(top)
    }

    /// What a write by version `t` needs.
    pub fn snapshot_write(&self, e: &Elems, t: Label) -> SnapWrite {
        let r = self.reader(e, t);
        if r != self.root && r != t && !self.visible(r) && self.heirs(e, r) == 1 {
            return SnapWrite::InPlace(r);
        }
        let heirs_t = self.heirs(e, t);
        if e.contains_key(&t) && heirs_t == 0 {
            return SnapWrite::InPlace(t);
        }
        if !self.anc.tree().children(t).is_empty() && heirs_t > 0 {
            return SnapWrite::Split;
        }
        let tree = self.anc.tree();
        let mut x = tree.parent(t);
        while x != self.root && !e.contains_key(&x) && !self.visible(x) {
            x = tree.parent(x);
        }
        if x != self.root && e.contains_key(&x) && !self.visible(x) && self.heirs(e, x) == 1 {
            return SnapWrite::Relabel(x);
        }
        SnapWrite::Allocate
    }
}
