//! Which processes belong to the target tree, for events that see the whole machine.
//!
//! A CPU-wide event samples every task on its CPU; we keep the records of the tree's
//! processes only. The tree is followed through fork and exit records, which the kernel
//! writes into the ring of the CPU the parent (or the exiting task) ran on. Rings are read one
//! after the other, so a child's first samples on one CPU can be read before its fork record
//! on another: the sampler first looks through every ring up to one moment for fork records
//! ([`Members::fork`]), then drains the rings up to that moment. For the same reason a process
//! that exited stays a member until the drain after the one that read its exit record: its
//! last samples on another CPU may only be read then.

use rustc_hash::FxHashSet;

use cpuprof_model::Pid;

/// The processes of the target tree.
#[derive(Debug, Default)]
pub struct Members {
    live: FxHashSet<Pid>,
    /// Exited in the current drain.
    exiting: Vec<Pid>,
    /// Exited in the previous drain: removed at the end of the current one.
    exited: Vec<Pid>,
}

impl Members {
    /// A tree rooted at these processes.
    pub fn new(roots: impl IntoIterator<Item = Pid>) -> Self {
        Members {
            live: roots.into_iter().collect(),
            ..Default::default()
        }
    }

    /// True when `pid`'s records are kept.
    pub fn contains(&self, pid: Pid) -> bool {
        self.live.contains(&pid)
    }

    /// A fork record: `pid` joins when its parent is a member.
    pub fn fork(&mut self, ppid: Pid, pid: Pid) {
        if ppid != pid && self.live.contains(&ppid) {
            self.live.insert(pid);
        }
    }

    /// Processes found another way (attach mode's procfs poller).
    pub fn extend(&mut self, pids: impl IntoIterator<Item = Pid>) {
        self.live.extend(pids);
    }

    /// A process's main thread exited.
    pub fn exit(&mut self, pid: Pid) {
        if self.live.contains(&pid) {
            self.exiting.push(pid);
        }
    }

    /// The end of a drain: forget the processes that exited one drain ago.
    pub fn end_drain(&mut self) {
        for pid in self.exited.drain(..) {
            self.live.remove(&pid);
        }
        std::mem::swap(&mut self.exited, &mut self.exiting);
    }
}

#[cfg(test)]
mod tests {
    use super::Members;

    #[test]
    fn children_join_and_strangers_do_not() {
        let mut m = Members::new([10]);
        m.fork(10, 11);
        m.fork(11, 12);
        m.fork(99, 100);
        m.fork(10, 10); // a thread of 10
        assert!(m.contains(11) && m.contains(12));
        assert!(!m.contains(100) && !m.contains(99));
    }

    #[test]
    fn an_exited_process_stays_for_one_more_drain() {
        let mut m = Members::new([10]);
        m.fork(10, 11);
        m.exit(11);
        m.exit(500);
        m.end_drain();
        assert!(
            m.contains(11),
            "its samples on another CPU may come in the next drain"
        );
        m.end_drain();
        assert!(!m.contains(11));
        assert!(m.contains(10));
    }
}
