//! Background work: delete passes and cleanup passes, and the reshape of ghosts that
//! ends each pass (design note §3, "Delete").
//!
//! A pass visits, in address order, the addresses where the labels it *watches* hold
//! elements, and applies the delete rules there to every element whose label is an
//! invisible ghost. A delete pass watches its deleted label and that label's ghost
//! ancestors: deleting a version changes the heirs of those elements and of no others
//! (a descendant's elements are read by its own subtree only, which the delete does
//! not change). A cleanup pass watches every ghost. Where the watched labels hold
//! elements comes from the label index (`crate::label_index`), region by region, so a
//! pass costs work in proportion to those labels' data, not to the store. Ghosts that
//! appear during the pass (a split) are watched from then on; elements they get
//! behind the cursor get the rules at once (the origin write's ghost rule).
//!
//! The cursor is persisted with the changes the pass made, in the same transaction,
//! so after a crash the pass resumes where the last commit left it (the rules are
//! idempotent). When it ends, ghosts with fewer than two children that were ghosts
//! before it began, have no pass of their own still running, and hold no element (the
//! label index says so) are removed (or their only child promoted); any other thin
//! ghost gets a cleanup pass. Removing only element-less ghosts makes a reshape
//! unable to change what any version reads, whatever a pass visited.
use super::Store;
use crate::{
    label_index::{region_of, REGION_CHUNKS},
    tables::{JobKind, JobRec},
    Result,
};
use blockdev::ids::{Addr, Label};

impl Store {
    /// Whether background work is pending.
    pub fn has_background_work(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Do up to `budget` address visits of background work. Returns whether work
    /// remains. Changes become durable at the next commit.
    pub fn background_step(&mut self, budget: usize) -> Result<bool> {
        for _ in 0..budget {
            if self.jobs.is_empty() {
                return Ok(false);
            }
            let ids: Vec<u32> = self.jobs.keys().copied().collect();
            let id = ids[self.next_job_turn % ids.len()];
            self.next_job_turn = self.next_job_turn.wrapping_add(1);
            self.latching(|s| s.pass_step(id))?;
        }
        Ok(!self.jobs.is_empty())
    }

    /// Run every pass to its end, committing every `batch` visits.
    pub fn run_background(&mut self, batch: usize) -> Result<()> {
        while self.background_step(batch)? {
            self.commit()?;
        }
        self.commit()?;
        Ok(())
    }

    pub(crate) fn pass_step(&mut self, id: u32) -> Result<()> {
        let Some(job) = self.jobs.get(&id).copied() else {
            return Ok(());
        };
        if job.kind == JobKind::Merge {
            return self.merge_batch(id, super::merge::MERGE_BATCH);
        }
        match self.next_visit(&job)? {
            Some(a) => {
                // a step changes at most every element of its address
                let k = self.load_elems_shared(a)?.len() as u64;
                self.step_room(k)?;
                self.normalize_at(a)?;
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.cursor = a + 1;
                }
            }
            None => {
                self.step_room(0)?;
                self.jobs.remove(&id);
                self.reshape(job.start)?;
            }
        }
        self.dirty_jobs.insert(id);
        self.changed = true;
        Ok(())
    }

    /// The labels pass `job` watches (see the module documentation).
    fn watched(&mut self, job: &JobRec) -> Vec<Label> {
        let anc = self.vt.prepare();
        anc.tree()
            .ghosts()
            .filter(|&g| job.kind == JobKind::Cleanup || anc.is_ancestor_or_self(g, job.target))
            .collect()
    }

    /// The next address at or after the cursor of `job` to visit: the first address
    /// where a watched label holds an element, found region by region through the
    /// label index. `None` when the pass is done.
    fn next_visit(&mut self, job: &JobRec) -> Result<Option<u64>> {
        let watched = self.watched(job);
        let mut from = job.cursor;
        loop {
            let mut next: Option<u64> = None;
            for &g in &watched {
                if let Some(r) =
                    self.label_index
                        .next_region(&mut self.cache, g, region_of(from))?
                {
                    next = Some(next.map_or(r, |n| n.min(r)));
                }
            }
            let Some(r) = next else {
                return Ok(None);
            };
            let end = (r + 1).saturating_mul(REGION_CHUNKS);
            let lo = from.max(r * REGION_CHUNKS);
            let wanted = |l: Label| watched.contains(&l);
            match self
                .elements
                .next_of_labels(&mut self.cache, Addr(lo), Addr(end), &wanted)?
            {
                Some(a) => return Ok(Some(a.0)),
                // the watched elements of this region lie behind the cursor
                None => from = end,
            }
        }
    }

    /// Remove or promote thin ghosts that a whole pass (begun at `start`) has seen as
    /// ghosts and that hold no element; schedule a cleanup pass for any other thin
    /// ghost.
    pub(crate) fn reshape(&mut self, start: u64) -> Result<()> {
        loop {
            let candidates: Vec<Label> = self
                .vt
                .ghosts()
                .filter(|&l| {
                    self.vt.get(l).is_some_and(|v| {
                        !self.vt.is_root(l)
                            && v.children.len() < 2
                            && v.ghost_since < start
                            && !self.jobs.values().any(|j| j.target == l)
                    })
                })
                .collect();
            let mut victim = None;
            for l in candidates {
                if !self.label_index.holds_any(&mut self.cache, l)? {
                    victim = Some(l);
                    break;
                }
            }
            let Some(l) = victim else {
                break;
            };
            let p = self.vt.parent(l);
            let child = self.vt.children(l).first().copied();
            self.vt.remove(l);
            self.dirty_versions.insert(l);
            self.dirty_versions.insert(p);
            if let Some(c) = child {
                self.dirty_versions.insert(c);
            }
        }
        let needy: Vec<(Label, u64)> = self
            .vt
            .ghosts()
            .filter_map(|l| {
                let v = self.vt.get(l)?;
                (!self.vt.is_root(l) && v.children.len() < 2).then_some((l, v.ghost_since))
            })
            .collect();
        for (_, since) in needy {
            if !self.jobs.values().any(|j| j.start > since) {
                let start = self.tick();
                let id = self.sb.next_job_id;
                self.sb.next_job_id += 1;
                self.jobs.insert(
                    id,
                    JobRec {
                        kind: JobKind::Cleanup,
                        target: Label(0),
                        start,
                        cursor: 0,
                    },
                );
                self.dirty_jobs.insert(id);
                break;
            }
        }
        // an origin being removed goes once its tree is bare
        self.reap_origins();
        Ok(())
    }
}
