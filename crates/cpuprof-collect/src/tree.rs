//! The target's processes and threads as last seen by the procfs poller.
//!
//! Other collectors (perf, Python) must know which pids belong to the target while it runs;
//! the poller is the one that walks the tree, so it publishes what it found here every poll.
//! Cloning a `LiveTree` shares the same set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use cpuprof_model::{Pid, Tid};

/// Shared, always-current set of the target's processes and their threads.
#[derive(Clone, Default, Debug)]
pub struct LiveTree {
    inner: Arc<Mutex<BTreeMap<Pid, BTreeSet<Tid>>>>,
}

impl LiveTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Pid, BTreeSet<Tid>>> {
        // A panic while holding the lock leaves a consistent map (every write is one insert
        // or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pids of the live processes, ascending.
    pub fn processes(&self) -> Vec<Pid> {
        self.lock().keys().copied().collect()
    }

    /// `(pid, tid)` of every live thread, ascending.
    pub fn threads(&self) -> Vec<(Pid, Tid)> {
        self.lock()
            .iter()
            .flat_map(|(&p, ts)| ts.iter().map(move |&t| (p, t)))
            .collect()
    }

    /// Whether `pid` is a live process of the target.
    pub fn contains(&self, pid: Pid) -> bool {
        self.lock().contains_key(&pid)
    }

    /// Sets the threads of `pid` (adding the process if new).
    pub fn set(&self, pid: Pid, tids: impl IntoIterator<Item = Tid>) {
        self.lock().insert(pid, tids.into_iter().collect());
    }

    /// Forgets `pid` (it ended).
    pub fn remove(&self, pid: Pid) {
        self.lock().remove(&pid);
    }

    /// Number of live processes.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No live process.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
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
}
