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
        let mut st = self.state.lock();
        while st.exclusive {
            self.changed.wait(&mut st);
        }
        st.exclusive = true;
        while st.writers > 0 {
            self.changed.wait(&mut st);
        }
        drop(st);
        // reopen even if `f` panics, so that no writer waits forever
        struct Reopen<'a>(&'a OriginGate);
        impl Drop for Reopen<'_> {
            fn drop(&mut self) {
                self.0.state.lock().exclusive = false;
                self.0.changed.notify_all();
            }
        }
        let _reopen = Reopen(self);
        f()
    }
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
