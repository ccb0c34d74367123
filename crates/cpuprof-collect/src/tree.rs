//! The target's processes and threads as last seen by the procfs poller.
//!
//! Other collectors (perf, Python) must know which pids belong to the target while it runs;
//! the poller is the one that walks the tree, so it publishes what it found here every poll.
//! Cloning a `LiveTree` shares the same set.
//!
//! The set also counts its changes (a process appeared, ended or called `exec`), so that a
//! collector with nothing to do can sleep until the tree changes instead of waking up to
//! look ([`LiveTree::wait_for_change`]): on a busy machine every wakeup preempts the target.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use cpuprof_model::{Pid, Tid};

/// Shared, always-current set of the target's processes and their threads.
#[derive(Clone, Default, Debug)]
pub struct LiveTree {
    inner: Arc<Shared>,
}

#[derive(Default, Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default, Debug)]
struct State {
    procs: BTreeMap<Pid, BTreeSet<Tid>>,
    /// Bumped at every change of the process set, every `exec` and every [`LiveTree::wake`].
    generation: u64,
    /// Processes forked by the tree that the poller has not taken in yet.
    announced: BTreeSet<Pid>,
}

impl LiveTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent state (every write is one insert
        // or remove and a counter), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, mut state: MutexGuard<'_, State>) {
        state.generation += 1;
        drop(state);
        self.inner.changed.notify_all();
    }

    /// Pids of the live processes, ascending.
    pub fn processes(&self) -> Vec<Pid> {
        self.lock().procs.keys().copied().collect()
    }

    /// `(pid, tid)` of every live thread, ascending.
    pub fn threads(&self) -> Vec<(Pid, Tid)> {
        self.lock()
            .procs
            .iter()
            .flat_map(|(&p, ts)| ts.iter().map(move |&t| (p, t)))
            .collect()
    }

    /// Whether `pid` is a live process of the target.
    pub fn contains(&self, pid: Pid) -> bool {
        self.lock().procs.contains_key(&pid)
    }

    /// Sets the threads of `pid` (adding the process if new).
    pub fn set(&self, pid: Pid, tids: impl IntoIterator<Item = Tid>) {
        let mut state = self.lock();
        if state
            .procs
            .insert(pid, tids.into_iter().collect())
            .is_none()
        {
            self.bump(state);
        }
    }

    /// Forgets `pid` (it ended).
    pub fn remove(&self, pid: Pid) {
        let mut state = self.lock();
        if state.procs.remove(&pid).is_some() {
            self.bump(state);
        }
    }

    /// A process of the tree forked `pid` (the kernel's fork event): the poller takes it in
    /// at its next poll, even if its parent has exited by then.
    pub fn announce(&self, pid: Pid) {
        self.lock().announced.insert(pid);
    }

    /// The processes announced since the last call.
    pub fn take_announced(&self) -> Vec<Pid> {
        std::mem::take(&mut self.lock().announced)
            .into_iter()
            .collect()
    }

    /// A process of the tree called `exec`: it runs another program now.
    pub fn exec_seen(&self) {
        self.bump(self.lock());
    }

    /// Wakes every [`Self::wait_for_change`] (the recording is stopping).
    pub fn wake(&self) {
        self.bump(self.lock());
    }

    /// How many changes there were so far.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Waits until the tree changed since generation `seen`, or `timeout` passed; returns the
    /// generation now.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let state = self.lock();
        let (state, _) = self
            .inner
            .changed
            .wait_timeout_while(state, timeout, |s| s.generation == seen)
            .unwrap_or_else(|e| e.into_inner());
        state.generation
    }

    /// Number of live processes.
    pub fn len(&self) -> usize {
        self.lock().procs.len()
    }

    /// No live process.
    pub fn is_empty(&self) -> bool {
        self.lock().procs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_set() {
        let a = LiveTree::default();
        let b = a.clone();
        a.set(10, [10, 11]);
        b.set(5, [5]);
        assert_eq!(a.processes(), vec![5, 10]);
        assert_eq!(b.threads(), vec![(5, 5), (10, 10), (10, 11)]);
        assert!(b.contains(10));
        a.remove(10);
        assert!(!b.contains(10));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn waiters_wake_on_new_processes_exec_and_wake_but_not_on_thread_changes() {
        let tree = LiveTree::default();
        tree.set(1, [1]);
        let g = tree.generation();
        tree.set(1, [1, 2]);
        assert_eq!(
            tree.generation(),
            g,
            "a new thread is not a change of the process set"
        );
        let t0 = std::time::Instant::now();
        assert_eq!(tree.wait_for_change(g, Duration::from_millis(30)), g);
        assert!(t0.elapsed() >= Duration::from_millis(30));

        let other = tree.clone();
        let waiter = std::thread::spawn(move || other.wait_for_change(g, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        tree.set(2, [2]);
        assert_eq!(waiter.join().unwrap(), g + 1);
        tree.exec_seen();
        tree.remove(2);
        tree.remove(2);
        tree.wake();
        assert_eq!(tree.generation(), g + 4);
    }
}
