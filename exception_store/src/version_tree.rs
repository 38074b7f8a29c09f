//! The version tree, held in memory (persisted through the version table).
//!
//! A forest: each origin of the store is a root (label 0 is origin 0's; a root is
//! its own parent). A root has at most one child, the newest snapshot of its origin.
//! Snapshots of an origin form the inverted chain `root -> newest -> ... -> oldest`;
//! a snapshot of a snapshot is a child of its parent. Ghosts (deleted snapshots, the
//! frozen half of an implicit split) stay while children inherit through them.
//!
//! Ancestor tests use an Euler tour (entry and exit times), rebuilt lazily after any
//! change of shape, with a prefix count of visible versions in tour order, so that
//! "how many visible versions in this subtree" is O(1).
//!
//! # Invariants
//! - Label 0 is a root; every other label is a root or has a parent that exists;
//!   the forest has no cycle. A root is never a ghost.
//! - Labels are never reused (32 bits; see docs/architecture.md).
use blockdev::ids::Label;

/// One version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Parent label (the origin's root for its newest snapshot; a root's is itself).
    pub parent: Label,
    /// Children, in creation order.
    pub children: Vec<Label>,
    /// Not openable.
    pub ghost: bool,
    /// Logical time it became a ghost.
    pub ghost_since: u64,
}

#[derive(Debug, Default, Clone)]
struct Tour {
    tin: Vec<u32>,
    tout: Vec<u32>,
    depth: Vec<u32>,
    /// vis_prefix[i] = number of visible versions among the first i in tour order.
    vis_prefix: Vec<u32>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct VersionTree {
    nodes: Vec<Option<Version>>,
    /// The ghost labels (kept with `nodes`).
    ghosts: std::collections::BTreeSet<Label>,
    tour: Option<Tour>,
}

impl Default for VersionTree {
    fn default() -> Self {
        Self::new()
    }
}

impl VersionTree {
    /// A tree holding only the origin.
    pub fn new() -> Self {
        VersionTree {
            nodes: vec![Some(Version {
                parent: Label(0),
                children: Vec::new(),
                ghost: false,
                ghost_since: 0,
            })],
            ghosts: Default::default(),
            tour: None,
        }
    }

    /// Insert a version loaded from the table (children are linked by [`Self::link`]).
    pub fn load(&mut self, l: Label, parent: Label, ghost: bool, ghost_since: u64) {
        let i = l.0 as usize;
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, None);
        }
        self.nodes[i] = Some(Version {
            parent,
            children: Vec::new(),
            ghost,
            ghost_since,
        });
        if ghost {
            self.ghosts.insert(l);
        } else {
            self.ghosts.remove(&l);
        }
        self.tour = None;
    }

    /// Add `l` as the root of another origin's tree.
    pub fn add_root(&mut self, l: Label) {
        self.load(l, l, false, 0);
    }

    /// Remove root `l` (label 0 stays): its origin has no snapshot left.
    pub fn remove_root(&mut self, l: Label) {
        if l.0 != 0 && self.is_root(l) && self.children(l).is_empty() {
            self.nodes[l.0 as usize] = None;
            self.tour = None;
        }
    }

    /// Whether `l` is a root (an origin): its own parent.
    pub fn is_root(&self, l: Label) -> bool {
        self.get(l).is_some_and(|v| v.parent == l)
    }

    /// The roots, ascending (label 0 first).
    pub fn roots(&self) -> impl Iterator<Item = Label> + '_ {
        self.labels().filter(|&l| self.is_root(l))
    }

    /// The root of the tree holding `l` (walks up the parents).
    pub fn root_of(&self, l: Label) -> Label {
        let mut x = l;
        for _ in 0..self.nodes.len() {
            let p = self.parent(x);
            if p == x {
                return x;
            }
            x = p;
        }
        x
    }

    /// After loading: link children to parents and check the shape. Returns a
    /// description of the first problem.
    pub fn link(&mut self) -> Result<(), String> {
        let labels: Vec<Label> = self.labels().collect();
        for &l in &labels {
            if self.is_root(l) {
                if self.is_ghost(l) {
                    return Err(format!("root {l} is a ghost"));
                }
                continue;
            }
            let p = self.get(l).map(|v| v.parent).ok_or("vanished")?;
            match self.nodes.get_mut(p.0 as usize).and_then(|x| x.as_mut()) {
                Some(pv) => pv.children.push(l),
                None => return Err(format!("label {l} has missing parent {p}")),
            }
        }
        let roots: Vec<Label> = self.roots().collect();
        if roots.iter().any(|&r| self.children(r).len() > 1) {
            return Err("an origin has more than one child".into());
        }
        // reachability (no cycles): count nodes reached from the roots
        let mut seen = 0usize;
        let mut stack = roots;
        while let Some(x) = stack.pop() {
            seen += 1;
            if seen > labels.len() {
                return Err("cycle in the version tree".into());
            }
            stack.extend(self.children(x).iter().copied());
        }
        if seen != labels.len() {
            return Err(format!(
                "{} labels unreachable from the origins",
                labels.len() - seen
            ));
        }
        Ok(())
    }

    /// Every live label, ascending (0 included).
    pub fn labels(&self) -> impl Iterator<Item = Label> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| Label(i as u32))
    }

    /// Every ghost label, ascending.
    pub fn ghosts(&self) -> impl Iterator<Item = Label> + '_ {
        self.ghosts.iter().copied()
    }

    /// Number of live labels, the roots included.
    pub fn len(&self) -> usize {
        self.nodes.iter().filter(|v| v.is_some()).count()
    }

    /// Whether only roots exist.
    pub fn is_empty(&self) -> bool {
        self.labels().all(|l| self.is_root(l))
    }

    /// The version of `l`.
    pub fn get(&self, l: Label) -> Option<&Version> {
        self.nodes.get(l.0 as usize).and_then(|v| v.as_ref())
    }

    fn get_mut(&mut self, l: Label) -> &mut Version {
        match self.nodes.get_mut(l.0 as usize).and_then(|v| v.as_mut()) {
            Some(v) => v,
            None => panic!("label {l} is not in the version tree"),
        }
    }

    /// Whether `l` exists.
    pub fn contains(&self, l: Label) -> bool {
        self.get(l).is_some()
    }

    /// Parent of `l`.
    pub fn parent(&self, l: Label) -> Label {
        self.get(l).map_or(Label(0), |v| v.parent)
    }

    /// Children of `l`.
    pub fn children(&self, l: Label) -> &[Label] {
        self.get(l).map_or(&[], |v| &v.children)
    }

    /// Whether `l` is a ghost.
    pub fn is_ghost(&self, l: Label) -> bool {
        self.get(l).is_some_and(|v| v.ghost)
    }

    /// The newest snapshot of the origin rooted at `root` (the root's child).
    pub fn newest(&self, root: Label) -> Option<Label> {
        self.children(root).first().copied()
    }

    /// Add `l` as the newest snapshot of the origin rooted at `root`.
    pub fn add_origin_snapshot(&mut self, root: Label, l: Label) {
        let old = self.newest(root);
        self.load(l, root, false, 0);
        if let Some(old) = old {
            self.get_mut(old).parent = l;
            self.get_mut(l).children.push(old);
        }
        self.get_mut(root).children = vec![l];
    }

    /// Add `l` as a child of `parent`.
    pub fn add_child(&mut self, l: Label, parent: Label) {
        self.load(l, parent, false, 0);
        self.get_mut(parent).children.push(l);
    }

    /// Turn `l` into a ghost at logical time `now`.
    pub fn make_ghost(&mut self, l: Label, now: u64) {
        let v = self.get_mut(l);
        v.ghost = true;
        v.ghost_since = now;
        self.ghosts.insert(l);
        self.tour = None;
    }

    /// Remove ghost `l` with fewer than two children: its only child (if any) takes
    /// its place under its parent.
    pub fn remove(&mut self, l: Label) {
        let v = self.get_mut(l).clone();
        debug_assert!(v.children.len() < 2);
        let p = v.parent;
        let pos = self.get_mut(p).children.iter().position(|c| *c == l);
        match (v.children.first(), pos) {
            (Some(&c), Some(i)) => {
                self.get_mut(p).children[i] = c;
                self.get_mut(c).parent = p;
            }
            (None, Some(i)) => {
                self.get_mut(p).children.remove(i);
            }
            _ => {}
        }
        self.nodes[l.0 as usize] = None;
        self.ghosts.remove(&l);
        self.tour = None;
    }

    fn tour(&mut self) -> &Tour {
        if self.tour.is_none() {
            let n = self.nodes.len();
            let mut t = Tour {
                tin: vec![u32::MAX; n],
                tout: vec![0; n],
                depth: vec![0; n],
                vis_prefix: vec![0],
            };
            let mut clock = 0u32;
            let roots: Vec<Label> = self.roots().collect();
            for r in roots {
                // iterative DFS: (label, next child index); a root is not visible
                let mut stack: Vec<(Label, usize)> = vec![(r, 0)];
                t.tin[r.0 as usize] = clock;
                let last = *t.vis_prefix.last().unwrap_or(&0);
                t.vis_prefix.push(last);
                clock += 1;
                while let Some(top) = stack.len().checked_sub(1) {
                    let (x, ci) = stack[top];
                    let ch = self.children(x);
                    if ci < ch.len() {
                        let c = ch[ci];
                        stack[top].1 += 1;
                        t.tin[c.0 as usize] = clock;
                        t.depth[c.0 as usize] = stack.len() as u32;
                        let vis = !self.is_ghost(c) as u32;
                        let last = *t.vis_prefix.last().unwrap_or(&0);
                        t.vis_prefix.push(last + vis);
                        clock += 1;
                        stack.push((c, 0));
                    } else {
                        t.tout[x.0 as usize] = clock - 1;
                        stack.pop();
                    }
                }
            }
            self.tour = Some(t);
        }
        match &self.tour {
            Some(t) => t,
            None => unreachable!(),
        }
    }

    /// Make the ancestor queries below valid (rebuilds the tour if needed).
    pub fn prepare(&mut self) -> Ancestry<'_> {
        self.tour();
        Ancestry { vt: self }
    }
}

/// Read-only ancestor queries over a prepared tree.
#[derive(Clone, Copy)]
pub struct Ancestry<'a> {
    vt: &'a VersionTree,
}

impl<'a> Ancestry<'a> {
    fn t(&self) -> &'a Tour {
        match &self.vt.tour {
            Some(t) => t,
            None => unreachable!("prepared"),
        }
    }
    /// The tree.
    pub fn tree(&self) -> &'a VersionTree {
        self.vt
    }
    /// Entry time of `l` in the tour.
    pub fn tin(&self, l: Label) -> u32 {
        self.t().tin[l.0 as usize]
    }
    /// Last entry time inside the subtree of `l`.
    pub fn tout(&self, l: Label) -> u32 {
        self.t().tout[l.0 as usize]
    }
    /// Depth of `l` (0 for a root).
    pub fn depth(&self, l: Label) -> u32 {
        self.t().depth[l.0 as usize]
    }
    /// Whether `a` is `b` or an ancestor of `b`.
    pub fn is_ancestor_or_self(&self, a: Label, b: Label) -> bool {
        let t = self.t();
        let (ai, bi) = (a.0 as usize, b.0 as usize);
        t.tin[ai] <= t.tin[bi] && t.tin[bi] <= t.tout[ai]
    }
    /// Number of non-ghost versions in the subtree of `l`, `l` included (a root
    /// counts as not visible).
    pub fn visible_in_subtree(&self, l: Label) -> u32 {
        let t = self.t();
        let i = l.0 as usize;
        t.vis_prefix[t.tout[i] as usize + 1] - t.vis_prefix[t.tin[i] as usize]
    }
}
