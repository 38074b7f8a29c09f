//! [`OriginGate`]: origin writes in flight against the operations that must not
//! overlap one (creating a snapshot, starting a merge, the last commit of a stop).
//!
//! An origin write *enters* the gate before its copy-out decision and *leaves* it
//! once its data is on the origin; an exclusive operation waits until no write is
//! inside and keeps new ones out while it runs. So a snapshot never sees an origin
//! write whose copy-out was decided before the snapshot existed.
//!
//! Unlike a read-write lock, an entry is not tied to a guard's scope or to a thread:
//! a ublk queue may enter for a write, go on serving other requests, and leave when
//! that write's commit is done ([`crate::SharedStore::origin_write_start`]). Such a
//! queue must never block on [`enter`](OriginGate::enter) while it holds entries
//! (an exclusive operation waiting for those entries would wait forever):
//! [`try_enter`](OriginGate::try_enter) says when it would block, and the queue
//! then finishes its writes first.
//!
//! # Invariants
//! - `writers` counts entries not yet left; every `enter` or successful `try_enter`
//!   is matched by exactly one `leave`.
//! - While `exclusive` is set no entry is granted, and the exclusive operation runs
//!   only once `writers` is zero.
//! - [`exclusive_all`] closes every gate it is given (in the order given) before it
//!   waits for the writers of any, and runs once all of them are empty.
use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    writers: usize,
    exclusive: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct OriginGate {
    state: Mutex<State>,
    changed: Condvar,
}

impl OriginGate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enter for one origin write, waiting while an exclusive operation runs or waits.
    pub fn enter(&self) {
        let mut st = self.state.lock();
        while st.exclusive {
            self.changed.wait(&mut st);
        }
        st.writers += 1;
    }

    /// [`enter`](Self::enter), leaving when the returned entry is dropped.
    pub fn entry(&self) -> Entry<'_> {
        self.enter();
        Entry(self)
    }

    /// Enter for one origin write if that needs no waiting.
    pub fn try_enter(&self) -> bool {
        let mut st = self.state.lock();
        if st.exclusive {
            return false;
        }
        st.writers += 1;
        true
    }

    /// Leave after an origin write's data is written (or it failed).
    pub fn leave(&self) {
        let mut st = self.state.lock();
        debug_assert!(st.writers > 0, "leave without enter");
        st.writers = st.writers.saturating_sub(1);
        if st.writers == 0 {
            self.changed.notify_all();
        }
    }

    /// Run `f` with no origin write inside: wait for other exclusive operations, keep
    /// new writes out, wait for those inside to leave, run, reopen.
    pub fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        exclusive_all(&[self], f)
    }

    /// Wait until no other exclusive operation runs or waits, then keep new writes
    /// out (those inside may still leave).
    fn close(&self) {
        let mut st = self.state.lock();
        while st.exclusive {
            self.changed.wait(&mut st);
        }
        st.exclusive = true;
    }

    /// Wait until the writes inside a closed gate have left.
    fn drain(&self) {
        let mut st = self.state.lock();
        while st.writers > 0 {
            self.changed.wait(&mut st);
        }
    }

    /// Let writes in again after [`close`](Self::close).
    fn reopen(&self) {
        self.state.lock().exclusive = false;
        self.changed.notify_all();
    }
}

/// Run `f` with every gate of `gates` held exclusively: first every gate is closed
/// to new writes, in the order given (callers give origin id order, so that two such
/// operations never wait for each other crosswise), then the writes inside all of
/// them are waited for together, then `f` runs and every gate reopens.
///
/// Closing all before draining any is what keeps a group create over many origins
/// short: draining gate by gate (each closed only once the previous one was empty)
/// let the writers of the gates still open start new writes meanwhile, so the
/// create waited about one write's commit per member, 16 in a row for 16 origins
/// (benches/group.rs, `GROUP_ORIGINS=16`); now it waits for the slowest write in
/// flight once.
pub fn exclusive_all<T>(gates: &[&OriginGate], f: impl FnOnce() -> T) -> T {
    // reopen what was closed even if `f` panics, so that no writer waits forever
    struct Reopen<'a, 'b> {
        gates: &'b [&'a OriginGate],
        closed: usize,
    }
    impl Drop for Reopen<'_, '_> {
        fn drop(&mut self) {
            for g in &self.gates[..self.closed] {
                g.reopen();
            }
        }
    }
    let mut reopen = Reopen { gates, closed: 0 };
    for g in gates {
        g.close();
        reopen.closed += 1;
    }
    for g in gates {
        g.drain();
    }
    f()
}

/// An entry of the gate held for a scope ([`OriginGate::entry`]).
#[derive(Debug)]
pub struct Entry<'a>(&'a OriginGate);

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::OriginGate;
    use std::{
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        },
        time::Duration,
    };

    /// An exclusive operation waits for the writers inside and keeps new ones out
    /// (`try_enter` fails, `enter` waits) until it is done; the writer that held an
    /// entry may leave from another thread.
    #[test]
    fn exclusive_waits_for_writers_and_keeps_new_ones_out() {
        let gate = Arc::new(OriginGate::new());
        gate.enter();
        assert!(gate.try_enter());
        let ran = Arc::new(AtomicBool::new(false));
        let excl = {
            let (gate, ran) = (gate.clone(), ran.clone());
            std::thread::spawn(move || gate.exclusive(|| ran.store(true, Ordering::SeqCst)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!ran.load(Ordering::SeqCst), "ran with writers inside");
        assert!(!gate.try_enter(), "a writer got in while exclusive waits");
        gate.leave();
        let leaver = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.leave())
        };
        leaver.join().unwrap();
        excl.join().unwrap();
        assert!(ran.load(Ordering::SeqCst));
        assert!(gate.try_enter(), "the gate reopened");
        gate.leave();
    }

    /// `exclusive_all` closes every gate before it waits for the writers of any: with
    /// a writer inside each of three gates, no gate lets a new writer in while the
    /// first one still drains (gate by gate, the second and third stayed open until
    /// the first was empty, and a 16-origin group create waited for 16 writes in a
    /// row); the writers leave in any order, then it runs, then all reopen.
    #[test]
    fn exclusive_all_closes_every_gate_before_draining_any() {
        let gates: Arc<Vec<OriginGate>> = Arc::new((0..3).map(|_| OriginGate::new()).collect());
        for g in gates.iter() {
            g.enter();
        }
        let ran = Arc::new(AtomicBool::new(false));
        let excl = {
            let (gates, ran) = (gates.clone(), ran.clone());
            std::thread::spawn(move || {
                let all: Vec<&OriginGate> = gates.iter().collect();
                super::exclusive_all(&all, || ran.store(true, Ordering::SeqCst))
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while gates.iter().any(|g| !g.state.lock().exclusive) {
            assert!(
                std::time::Instant::now() < deadline,
                "gates never all closed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        for g in gates.iter() {
            assert!(
                !g.try_enter(),
                "a writer got in while the first gate drains"
            );
        }
        for g in gates.iter().rev() {
            assert!(!ran.load(Ordering::SeqCst), "ran with writers inside");
            g.leave();
        }
        excl.join().unwrap();
        assert!(ran.load(Ordering::SeqCst));
        for g in gates.iter() {
            assert!(g.try_enter(), "a gate stayed closed");
            g.leave();
        }
    }

    /// A panicking exclusive operation reopens the gate.
    #[test]
    fn a_panicking_exclusive_operation_reopens_the_gate() {
        let gate = Arc::new(OriginGate::new());
        let g = gate.clone();
        let r = std::thread::spawn(move || g.exclusive(|| panic!("boom"))).join();
        assert!(r.is_err());
        assert!(gate.try_enter());
        gate.leave();
    }
}
