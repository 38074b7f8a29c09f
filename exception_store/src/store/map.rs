//! The store side of [`crate::map`]: a device's map, its layers, and the diff of two
//! devices, from the element index and the label index, never reading data.
//!
//! - `map` walks the element tree over the asked range only (`Elements::overlapping`),
//!   skipping stretches without elements in one step (`next_populated`), so its cost
//!   is the elements in the range, not the range's size.
//! - `diff` looks only where a version that could make the two devices differ holds
//!   elements: the versions on the paths from each device up to their nearest common
//!   ancestor, the ancestor excluded (below it the two paths are separate; from it up
//!   they are shared, so an element there is read by both or overridden on one side by
//!   an element below, which is on a path). The label index names their regions; each
//!   region is one range scan. Diffing two neighbouring rolling snapshots therefore
//!   costs the elements of the older one, whatever the device size or snapshot count.
use super::{Dev, Store};
use crate::{
    label_index::{region_of, REGION_CHUNKS},
    map::{push_run, Layer, MapBuilder, MapExtent, Owner},
    rules::Elems,
    Result,
};
use blockdev::ids::{Addr, Label, SnapId};
use btree::elements::Ptr;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Most addresses whose element sets one scan of `map` gathers at a time.
const MAP_WINDOW: u64 = 1024;

impl Store {
    /// The layers of `dev`: itself, the visible snapshots above it, the origin (see
    /// [`crate::map`]).
    pub fn layers(&mut self, dev: Dev) -> Result<Vec<Layer>> {
        let mut out = Vec::new();
        if let Dev::Snap(id) = dev {
            let by_label: HashMap<Label, SnapId> =
                self.snaps.iter().map(|(id, r)| (r.label, *id)).collect();
            let mut x = self.label_of(id)?;
            while !self.vt.is_root(x) {
                if !self.vt.is_ghost(x) {
                    out.push(Layer {
                        depth: out.len() as u32 + 1,
                        label: x,
                        snapshot: by_label.get(&x).copied(),
                    });
                }
                x = self.vt.parent(x);
            }
        }
        let root = self.root_of_origin(self.origin_of(dev)?);
        out.push(Layer {
            depth: out.len() as u32 + 1,
            label: root,
            snapshot: None,
        });
        Ok(out)
    }

    /// What `dev` reads over `len` bytes at `offset`, as merged extents (see
    /// [`crate::map`]).
    pub fn map(&mut self, dev: Dev, offset: u64, len: u64) -> Result<Vec<MapExtent>> {
        self.check_dev_range(dev, offset, len)?;
        let label = self.dev_label(dev)?;
        let (depth_of, origin_depth) = self.path_depths(label);
        let cs = self.chunk_size;
        // addresses of this device's origin: `base + chunk`
        let base = super::pool_addr(self.origin_of(dev)?, 0);
        let end = offset + len;
        let mut b = MapBuilder::default();
        if len == 0 {
            return Ok(b.out);
        }
        if label.is_none() && !self.is_merging() {
            b.push(offset, len, Owner::Origin, 1, cs);
            return Ok(b.out);
        }
        let last = base + (end - 1) / cs + 1; // one past the last address
        let mut pos = offset;
        let mut a = base + offset / cs;
        while a < last {
            let next = self
                .elements
                .next_populated(&mut self.cache, Addr(a))?
                .map_or(last, |x| x.0.min(last));
            if next > a {
                let to = ((next - base) * cs).min(end);
                b.push(pos, to - pos, Owner::Origin, origin_depth, cs);
                pos = to;
                a = next;
                continue;
            }
            let sets = self.elems_in(a, (a + MAP_WINDOW).min(last))?;
            for (x, e) in &sets {
                let gap_to = ((x - base) * cs).max(pos);
                b.push(pos, gap_to - pos, Owner::Origin, origin_depth, cs);
                let to = ((x - base + 1) * cs).min(end);
                let (owner, depth) = self.owner_at(label, *x, e, &depth_of, origin_depth);
                b.push(gap_to, to - gap_to, owner, depth, cs);
                pos = to;
            }
            a = sets.keys().next_back().map_or(last, |x| x + 1);
        }
        b.push(pos, end - pos, Owner::Origin, origin_depth, cs);
        Ok(b.out)
    }

    /// The runs of `len` bytes at `offset` where `a` and `b` may read differently (see
    /// [`crate::map`] and the module documentation). The range lies inside the larger
    /// of the two devices; past the smaller one's size everything differs (it reads
    /// nothing there).
    pub fn diff(&mut self, a: Dev, b: Dev, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let (size_a, size_b) = (self.dev_size(a)?, self.dev_size(b)?);
        let (small, big) = (size_a.min(size_b), size_a.max(size_b));
        super::check_in(big, offset, len)?;
        let end = offset + len;
        let mut out = if offset < small {
            self.diff_within(a, b, offset, end.min(small) - offset)?
        } else {
            Vec::new()
        };
        if end > small {
            let from = offset.max(small);
            push_run(&mut out, from, end - from);
        }
        Ok(out)
    }

    /// [`diff`](Self::diff) of a range inside both devices.
    fn diff_within(&mut self, a: Dev, b: Dev, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let (la, lb) = (self.dev_label(a)?, self.dev_label(b)?);
        let k = self.origin_of(a)?;
        if self.origin_of(b)? != k {
            return Err(crate::Error::Invalid(
                "the two devices belong to different origins: a diff compares versions of one origin"
                    .into(),
            ));
        }
        let mut out = Vec::new();
        if len == 0 {
            return Ok(out);
        }
        let cs = self.chunk_size;
        let end = offset + len;
        let base = super::pool_addr(k, 0);
        let (first, last) = (base + offset / cs, base + (end - 1) / cs + 1);
        let mut regions = BTreeSet::new();
        let root = self.root_of_origin(k);
        for w in self.diff_labels(la.unwrap_or(root), lb.unwrap_or(root)) {
            let mut r = region_of(first);
            while let Some(found) = self.label_index.next_region(&mut self.cache, w, r)? {
                if found * REGION_CHUNKS >= last {
                    break;
                }
                regions.insert(found);
                r = found + 1;
            }
        }
        for region in regions {
            let from = (region * REGION_CHUNKS).max(first);
            let to = ((region + 1) * REGION_CHUNKS).min(last);
            for (x, e) in self.elems_in(from, to)? {
                if self.source_at(la, x, &e) != self.source_at(lb, x, &e) {
                    let start = ((x - base) * cs).max(offset);
                    push_run(&mut out, start, ((x - base + 1) * cs).min(end) - start);
                }
            }
        }
        Ok(out)
    }

    /// Store chunks of `dev`'s own that no other visible version reads: what deleting
    /// it gives back (0 for the origin). Visits only the regions where its label
    /// holds elements (label index).
    pub fn unshared_chunks(&mut self, dev: Dev) -> Result<u64> {
        let Some(l) = self.dev_label(dev)? else {
            return Ok(0);
        };
        let mut n = 0;
        let mut r = 0;
        while let Some(found) = self.label_index.next_region(&mut self.cache, l, r)? {
            let from = found * REGION_CHUNKS;
            for (x, e) in self.elems_in(from, from + REGION_CHUNKS)? {
                if matches!(e.get(&l), Some(Ptr::Chunk(_))) && self.view_at(x).heirs(&e, l) == 0 {
                    n += 1;
                }
            }
            r = found + 1;
        }
        Ok(n)
    }

    /// The label `dev` reads through (`None`: the origin).
    fn dev_label(&self, dev: Dev) -> Result<Option<Label>> {
        match dev {
            Dev::Origin(_) => Ok(None),
            Dev::Snap(id) => self.label_of(id).map(Some),
        }
    }

    /// For the path from `label` up: the layer depth of every label on it, and the
    /// origin's.
    fn path_depths(&self, label: Option<Label>) -> (HashMap<Label, u32>, u32) {
        let mut depths = HashMap::new();
        let mut visible = 0;
        let Some(mut x) = label else {
            return (depths, 1);
        };
        while !self.vt.is_root(x) {
            if !self.vt.is_ghost(x) {
                visible += 1;
            }
            depths.insert(x, visible.max(1));
            x = self.vt.parent(x);
        }
        (depths, visible + 1)
    }

    /// The labels whose elements can make `a` and `b` read differently: the paths
    /// from each up to their nearest common ancestor, that ancestor excluded; during
    /// a merge, when one of them is the origin, also the path of the snapshot being
    /// merged (the origin reads it where the merge has not been).
    fn diff_labels(&self, a: Label, b: Label) -> HashSet<Label> {
        let path = |mut x: Label| {
            let mut p = vec![x];
            while !self.vt.is_root(x) {
                x = self.vt.parent(x);
                p.push(x);
            }
            p
        };
        let (pa, pb) = (path(a), path(b));
        let on_a: HashSet<Label> = pa.iter().copied().collect();
        let common = pb.iter().copied().find(|x| on_a.contains(x));
        let below = |p: &[Label]| -> Vec<Label> {
            p.iter()
                .copied()
                .take_while(|x| Some(*x) != common)
                .collect()
        };
        let mut out: HashSet<Label> = below(&pa).into_iter().chain(below(&pb)).collect();
        if self.vt.is_root(a) || self.vt.is_root(b) {
            // the merge into this origin (its target in this origin's tree)
            let root = if self.vt.is_root(a) { a } else { b };
            let merging = self
                .jobs
                .values()
                .filter(|j| j.kind == crate::tables::JobKind::Merge)
                .find(|j| self.vt.root_of(j.target) == root)
                .map(|j| j.target);
            if let Some(t) = merging {
                out.extend(path(t).into_iter().filter(|&x| !self.vt.is_root(x)));
            }
        }
        out.retain(|&x| !self.vt.is_root(x));
        out
    }

    /// The element sets of every address in `from..to` that has elements (one range
    /// scan of the element tree).
    fn elems_in(&mut self, from: u64, to: u64) -> Result<BTreeMap<u64, Elems>> {
        let mut sets: BTreeMap<u64, Elems> = BTreeMap::new();
        self.elements
            .overlapping(&mut self.cache, Addr(from), Addr(to), &mut |k, v| {
                let start = k.addr.0.max(from);
                let stop = (k.addr.0 + v.len as u64).min(to);
                for x in start..stop {
                    sets.entry(x)
                        .or_default()
                        .insert(k.label, v.ptr_at(k.addr, Addr(x)));
                }
            })?;
        Ok(sets)
    }

    /// What the device reading through `label` (`None`: the origin) reads at address
    /// `a`: `None` for the origin, else the element it reads.
    fn source_at(&mut self, label: Option<Label>, a: u64, e: &Elems) -> Option<Ptr> {
        let l = label.or_else(|| self.merging_at(a))?;
        let view = self.view_at(a);
        let r = view.reader(e, l);
        if r == view.root {
            None
        } else {
            e.get(&r).copied()
        }
    }

    /// The owner and layer depth of address `a` for the device reading through `label`.
    fn owner_at(
        &mut self,
        label: Option<Label>,
        a: u64,
        e: &Elems,
        depth_of: &HashMap<Label, u32>,
        origin_depth: u32,
    ) -> (Owner, u32) {
        let Some(l) = label.or_else(|| self.merging_at(a)) else {
            return (Owner::Origin, origin_depth);
        };
        let view = self.view_at(a);
        let r = view.reader(e, l);
        let depth = depth_of.get(&r).copied().unwrap_or(1);
        match e.get(&r) {
            _ if r == view.root => (Owner::Origin, origin_depth),
            Some(Ptr::Chunk(c)) => (
                Owner::Chunk {
                    label: r,
                    chunk: *c,
                },
                depth,
            ),
            _ => (Owner::Hole { label: r }, depth),
        }
    }
}

#[cfg(test)]
mod tests;
