//! The version tree, held in memory (persisted through the version table).
//!
//! Label 0 is the origin; it has at most one child, the newest snapshot of the origin.
//! Snapshots of the origin form the inverted chain `0 -> newest -> ... -> oldest`;
//! a snapshot of a snapshot is a child of its parent. Ghosts (deleted snapshots, the
//! frozen half of an implicit split) stay while children inherit through them.
//!
//! Ancestor tests use an Euler tour (entry and exit times), rebuilt lazily after any
//! change of shape, with a prefix count of visible versions in tour order, so that
//! "how many visible versions in this subtree" is O(1).
//!
//! # Invariants
//! - Every label but 0 has a parent that exists; the tree has no cycle.
//! - Labels are never reused (32 bits; see docs/architecture.md).
use blockdev::ids::Label;

/// One version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Parent label (0 for the newest snapshot of the origin; unused for 0 itself).
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

    /// After loading: link children to parents and check the shape. Returns a
    /// description of the first problem.
    pub fn link(&mut self) -> Result<(), String> {
        let labels: Vec<Label> = self.labels().collect();
        for &l in &labels {
            if l.0 == 0 {
                continue;
            }
            let p = self.get(l).map(|v| v.parent).ok_or("vanished")?;
            match self.nodes.get_mut(p.0 as usize).and_then(|x| x.as_mut()) {
                Some(pv) => pv.children.push(l),
                None => return Err(format!("label {l} has missing parent {p}")),
            }
        }
        if self.get(Label(0)).map_or(0, |v| v.children.len()) > 1 {
            return Err("the origin has more than one child".into());
        }
        // reachability (no cycles): count nodes reached from 0
        let mut seen = 0usize;
        let mut stack = vec![Label(0)];
        while let Some(x) = stack.pop() {
            seen += 1;
            if seen > labels.len() {
                return Err("cycle in the version tree".into());
            }
            stack.extend(self.children(x).iter().copied());
        }
        if seen != labels.len() {
            return Err(format!(
                "{} labels unreachable from the origin",
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

    /// Number of live labels, the origin included.
    pub fn len(&self) -> usize {
        self.nodes.iter().filter(|v| v.is_some()).count()
    }

    /// Whether only the origin exists.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
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

    /// The newest snapshot of the origin (the child of label 0).
    pub fn newest(&self) -> Option<Label> {
        self.children(Label(0)).first().copied()
    }

    /// Add `l` as the newest snapshot of the origin.
    pub fn add_origin_snapshot(&mut self, l: Label) {
        let old = self.newest();
        self.load(l, Label(0), false, 0);
        if let Some(old) = old {
            self.get_mut(old).parent = l;
            self.get_mut(l).children.push(old);
        }
        self.get_mut(Label(0)).children = vec![l];
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
            // iterative DFS: (label, next child index)
            let mut stack: Vec<(Label, usize)> = vec![(Label(0), 0)];
            t.tin[0] = 0;
            t.vis_prefix.push(0);
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
    /// Depth of `l` (0 for the origin).
    pub fn depth(&self, l: Label) -> u32 {
        self.t().depth[l.0 as usize]
    }
    /// Whether `a` is `b` or an ancestor of `b`.
    pub fn is_ancestor_or_self(&self, a: Label, b: Label) -> bool {
        let t = self.t();
        let (ai, bi) = (a.0 as usize, b.0 as usize);
        t.tin[ai] <= t.tin[bi] && t.tin[bi] <= t.tout[ai]
    }
    /// Number of non-ghost versions in the subtree of `l`, `l` included (the origin
    /// counts as not visible).
    pub fn visible_in_subtree(&self, l: Label) -> u32 {
        let t = self.t();
        let i = l.0 as usize;
        t.vis_prefix[t.tout[i] as usize + 1] - t.vis_prefix[t.tin[i] as usize]
    }
}
