//! Background work: delete passes and cleanup passes, and the reshape of ghosts that
//! ends each pass (design note §3, "Delete").
//!
//! A pass visits, in address order, every address that carries elements (addresses
//! without elements need nothing) and applies the delete rules to every element whose
//! label is an invisible ghost. Its cursor is persisted with the changes it made, in
//! the same transaction, so after a crash the pass resumes where the last commit left
//! it (the rules are idempotent). When it ends, ghosts with fewer than two children
//! that were ghosts before it began, and have no pass of their own still running, are
//! removed (or their only child promoted); any other thin ghost gets a cleanup pass.
use super::Store;
use crate::{
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
        match self
            .elements
            .next_populated(&mut self.cache, Addr(job.cursor))?
        {
            Some(a) => {
                self.normalize_at(a.0)?;
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.cursor = a.0 + 1;
                }
            }
            None => {
                self.jobs.remove(&id);
                self.reshape(job.start);
            }
        }
        self.dirty_jobs.insert(id);
        self.changed = true;
        Ok(())
    }

    /// Remove or promote thin ghosts that a whole pass (begun at `start`) has seen as
    /// ghosts; schedule a cleanup pass for any other thin ghost.
    pub(crate) fn reshape(&mut self, start: u64) {
        loop {
            let victim = self.vt.labels().find(|&l| {
                let Some(v) = self.vt.get(l) else {
                    return false;
                };
                l.0 != 0
                    && v.ghost
                    && v.children.len() < 2
                    && !self.jobs.values().any(|j| j.target == l)
                    && v.ghost_since < start
            });
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
            .labels()
            .filter_map(|l| {
                let v = self.vt.get(l)?;
                (l.0 != 0 && v.ghost && v.children.len() < 2).then_some((l, v.ghost_since))
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
    }
}
