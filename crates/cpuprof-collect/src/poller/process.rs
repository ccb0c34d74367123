//! What the poller remembers about one process and its threads between polls.

use std::collections::BTreeMap;

use cpuprof_model::{CpuTimes, Pid, Tid};

use super::account::{add, split_like, sub};

/// Counters of one thread at its last poll (already relative to its baseline).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadState {
    /// CPU, ns (`schedstat`).
    pub cpu_ns: u64,
    /// Context switch counters as last read from `status` (voluntary, involuntary).
    pub switches: (u64, u64),
    /// Baseline subtracted from every reading (attach mode: CPU before the recording).
    pub base: ThreadBase,
}

/// Readings of a thread at the start of an attached recording.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadBase {
    /// CPU, ns.
    pub cpu_ns: u64,
    /// Run-queue wait, ns.
    pub runq_ns: u64,
    /// User time, ns.
    pub user_ns: u64,
    /// System time, ns.
    pub sys_ns: u64,
    /// Voluntary switches.
    pub vcsw: u64,
    /// Involuntary switches.
    pub ivcsw: u64,
}

/// One process of the tree as last polled.
#[derive(Debug, Clone, Default)]
pub struct ProcState {
    /// Parent at the last poll.
    pub ppid: Pid,
    /// Start time (clock ticks after boot): a different value means the pid was reused.
    pub starttime: u64,
    /// Code and stack addresses at the last poll (a change means `exec`; see
    /// [`crate::procfs::stat::Stat::layout`]).
    pub layout: [u64; 3],
    /// Name at the last poll (a change means `exec`).
    pub comm: String,
    /// It has exited and waits to be reaped (its counters are final).
    pub zombie: bool,
    /// Live threads.
    pub threads: BTreeMap<Tid, ThreadState>,
    /// CPU of threads that ended, at their last poll, ns.
    pub dead_threads_ns: u64,
    /// `utime`/`stime` of the whole process (ended threads included), minus baseline.
    pub own_stat: CpuTimes,
    /// `cutime`/`cstime`, minus baseline.
    pub children: CpuTimes,
    /// `children` before the latest poll's reading.
    pub children_before: CpuTimes,
    /// Time of the latest poll that read this process.
    pub read_at: u64,
    /// CPU of children that ended unseen, attributed by [`super::account`].
    pub unseen_children: CpuTimes,
    /// Baselines (attach mode): own and children counters before the recording.
    pub base_own: CpuTimes,
    /// See `base_own`.
    pub base_children: CpuTimes,
    /// When libraries, environment and command line were last read (monotonic ns).
    pub info_read_ns: u64,
    /// Threads the process had then (a BLAS or OpenMP pool starting means new libraries).
    pub info_threads: usize,
}

impl ProcState {
    /// The process's own CPU: the precise sum of its threads (`schedstat`, ended threads at
    /// their last poll) or its tick counters when those are larger (threads that ended
    /// between polls), split into user and system like the tick counters.
    pub fn own_cpu(&self) -> CpuTimes {
        let threads: u64 =
            self.threads.values().map(|t| t.cpu_ns).sum::<u64>() + self.dead_threads_ns;
        split_like(threads.max(self.own_stat.total_ns()), self.own_stat)
    }

    /// Own CPU plus the CPU of unseen children: what the profile shows for this process.
    pub fn reported_cpu(&self) -> CpuTimes {
        let mut c = self.own_cpu();
        add(&mut c, self.unseen_children);
        c
    }

    /// What its parent's counters (or its rusage) will hold beyond what was already
    /// reported, as far as known at poll `t`: own CPU plus the children counters as of the
    /// last poll whose growth was attributed (the one before `t` if it was read at `t`).
    pub fn known_at(&self, t: u64) -> CpuTimes {
        let mut c = self.own_cpu();
        add(
            &mut c,
            if self.read_at == t {
                self.children_before
            } else {
                self.children
            },
        );
        c
    }

    /// Sets the counters from a process-level `stat` reading at poll `t` (subtracting
    /// baselines).
    pub fn set_counters(&mut self, t: u64, own: CpuTimes, children: CpuTimes) {
        self.children_before = self.children;
        self.read_at = t;
        self.own_stat = sub(own, self.base_own);
        self.children = sub(children, self.base_children);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_takes_the_larger_source() {
        let mut p = ProcState::default();
        p.threads.insert(
            1,
            ThreadState {
                cpu_ns: 1_234_567,
                ..Default::default()
            },
        );
        p.set_counters(
            1,
            CpuTimes {
                user_ns: 0,
                sys_ns: 0,
            },
            CpuTimes::default(),
        );
        assert_eq!(p.own_cpu().total_ns(), 1_234_567);
        // A thread ended between polls: the tick counters know more.
        p.set_counters(
            2,
            CpuTimes {
                user_ns: 30_000_000,
                sys_ns: 10_000_000,
            },
            CpuTimes::default(),
        );
        assert_eq!(
            p.own_cpu(),
            CpuTimes {
                user_ns: 30_000_000,
                sys_ns: 10_000_000
            }
        );
        p.unseen_children = CpuTimes {
            user_ns: 5,
            sys_ns: 0,
        };
        assert_eq!(p.reported_cpu().total_ns(), 40_000_005);
    }
}
