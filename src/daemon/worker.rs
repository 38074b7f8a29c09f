//! The background worker: one thread that advances background passes (deletes,
//! cleanups) in small budgets and commits periodically, so that writes between
//! FLUSHes do not pile up in memory and a crash loses at most a few seconds of
//! unflushed (but never flushed) work. About once a second it samples the jobs'
//! progress for [`Progress`] (the ETA in `status`) and logs snapshots the space
//! policy deleted.
use crate::service::progress::{Progress, SAMPLE_INTERVAL};
use exception_store::SharedStore;
use parking_lot::{Condvar, Mutex};
use std::{
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Address visits per background step (the store lock is held for one step).
pub const STEP_BUDGET: usize = 32;
/// How often the worker commits.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// Pause between background steps, so I/O keeps the store lock most of the time.
const STEP_PAUSE: Duration = Duration::from_millis(2);
/// Pause between tries of a pass that found no room on a full store.
const ROOM_PAUSE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The running worker; [`Worker::stop`] (or drop) ends it.
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Worker")
    }
}

impl Worker {
    /// Start the worker on `store`; `tick` runs about once a second on its thread
    /// (the daemon starts a deferred merge from it).
    pub fn start(
        store: Arc<SharedStore>,
        progress: Arc<Progress>,
        tick: Box<dyn Fn() + Send>,
    ) -> std::io::Result<Worker> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("ublk-snapd-worker".into())
            .spawn({
                let shared = shared.clone();
                move || run(&store, &progress, &*tick, &shared)
            })?;
        Ok(Worker {
            shared,
            thread: Some(thread),
        })
    }

    /// Ask the worker to end and wait for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("background worker panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sample the jobs for the ETA; log new automatic deletions.
fn observe(store: &SharedStore, progress: &Progress, auto_deleted: &mut u64) {
    let st = store.lock().status();
    progress.observe(&st.jobs, Instant::now());
    if st.auto_deleted > *auto_deleted {
        tracing::warn!(
            deleted = st.auto_deleted - *auto_deleted,
            total = st.auto_deleted,
            nr_free = st.nr_free,
            "the space policy deleted the oldest unheld snapshots to make room"
        );
        *auto_deleted = st.auto_deleted;
    }
}

fn run(store: &SharedStore, progress: &Progress, tick: &dyn Fn(), shared: &Shared) {
    let mut next_commit = Instant::now() + COMMIT_INTERVAL;
    let mut next_sample = Instant::now();
    let mut auto_deleted = 0;
    let mut failed = false;
    let mut waiting_for_room = false;
    loop {
        if Instant::now() >= next_sample {
            observe(store, progress, &mut auto_deleted);
            tick();
            next_sample = Instant::now() + SAMPLE_INTERVAL;
        }
        let busy = !failed && store.lock().has_background_work();
        if busy {
            let step = store.background_step(STEP_BUDGET);
            if step.is_ok() {
                waiting_for_room = false;
            }
            match step {
                // the last pass ended: commit now, so that the space it freed is
                // free (and shown free) at once, not at the next periodic commit
                Ok(false) => next_commit = Instant::now(),
                Ok(true) => {}
                // A pass with no room to go on even after a commit refuses without
                // latching the store: it waits (commits, deletes and a grown store
                // free room) and tries again at the next commit.
                Err(exception_store::Error::NoSpace(_)) if !store.lock().is_failed() => {
                    if !std::mem::replace(&mut waiting_for_room, true) {
                        tracing::warn!(
                            "store full: background passes wait for room (delete a snapshot or grow the store)"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "background work failed; stopped until restart");
                    failed = true;
                }
            }
        }
        if Instant::now() >= next_commit {
            if let Err(e) = store.commit() {
                if !failed {
                    tracing::error!(error = %e, "periodic commit failed");
                }
                failed = true;
            }
            next_commit = Instant::now() + COMMIT_INTERVAL;
        }
        let pause = if busy && waiting_for_room {
            ROOM_PAUSE
        } else if busy {
            STEP_PAUSE
        } else {
            next_commit
                .min(next_sample)
                .saturating_duration_since(Instant::now())
        };
        let mut stop = shared.stop.lock();
        if *stop {
            return;
        }
        shared.wake.wait_for(&mut stop, pause);
        if *stop {
            return;
        }
    }
}
