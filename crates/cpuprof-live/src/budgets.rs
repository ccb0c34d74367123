//! Each watched process's budget and cgroup, and each cgroup's throttling over the window.
//!
//! A machine runs containers with quotas of their own: the processes of one cgroup share its
//! budget and are analysed together, against it (see [`crate::Watch`]). Membership, affinity
//! and quota change rarely and cost a few file reads each, so they are read once per process
//! and again every [`REREAD_NS`]; throttling counters are read at every refresh, once per
//! group.

use std::collections::{BTreeMap, HashMap, VecDeque};

use cpuprof_collect::{budget, cgroup};
use cpuprof_model::{CgroupInfo, Pid, Throttling};

/// How often a process's cgroup and affinity are read again: they change when a service
/// manager moves a process or a program calls `sched_setaffinity`, rarely, and reading them
/// for every process of a machine costs more than the view's polling does.
pub const REREAD_NS: u64 = 30_000_000_000;

/// What is known of one process.
#[derive(Debug, Clone)]
struct Known {
    read_at: u64,
    /// CPUs in its affinity mask (0: unreadable).
    affinity: u32,
    cgroup: Option<CgroupInfo>,
    /// Its owner, from `/proc/PID`.
    uid: Option<u32>,
}

/// The budget of every watched process, and throttling history per cgroup.
#[derive(Debug, Default)]
pub struct Budgets {
    online: u32,
    groups: cgroup::GroupCache,
    known: HashMap<Pid, Known>,
    /// Per cgroup path: (time, counters), oldest first, over the last windows.
    throttling: BTreeMap<String, VecDeque<(u64, Throttling)>>,
}

impl Budgets {
    /// Budgets on a machine with `online` CPUs.
    pub fn new(online: u32) -> Self {
        Budgets {
            online: online.max(1),
            ..Default::default()
        }
    }

    /// Reads what is missing or old for `pids` at monotonic time `now`, and forgets the rest.
    pub fn refresh(&mut self, pids: &[Pid], now: u64) {
        let live: std::collections::HashSet<Pid> = pids.iter().copied().collect();
        self.known.retain(|p, _| live.contains(p));
        for &pid in pids {
            let fresh = self
                .known
                .get(&pid)
                .is_some_and(|k| now.saturating_sub(k.read_at) < REREAD_NS);
            if fresh {
                continue;
            }
            let uid = std::fs::metadata(format!("/proc/{pid}")).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.uid()
            });
            self.known.insert(
                pid,
                Known {
                    read_at: now,
                    affinity: budget::machine::affinity_cpus(pid),
                    cgroup: self.groups.of(pid, now, REREAD_NS),
                    uid,
                },
            );
        }
    }

    /// The cgroup path of `pid` (`""` when unknown).
    pub fn group_of(&self, pid: Pid) -> &str {
        self.known
            .get(&pid)
            .and_then(|k| k.cgroup.as_ref())
            .map_or("", |c| c.path.as_str())
    }

    /// The cgroup of `pid` as last read.
    pub fn cgroup_of(&self, pid: Pid) -> Option<&CgroupInfo> {
        self.known.get(&pid)?.cgroup.as_ref()
    }

    /// Reads the throttling counters of `group` now, and returns the group with its counters
    /// at the start of the window (`window_ns` before `now`) and now.
    pub fn throttling_over(&mut self, group: &CgroupInfo, now: u64, window_ns: u64) -> CgroupInfo {
        let mut g = group.clone();
        let Some(current) = cgroup::throttling_now(group) else {
            return g;
        };
        let history = self.throttling.entry(group.path.clone()).or_default();
        history.push_back((now, current));
        // Keep one reading at or before the window's start.
        while history.len() > 2 && history[1].0 + window_ns <= now {
            history.pop_front();
        }
        g.throttling_start = history.front().map(|h| h.1);
        g.throttling_end = Some(current);
        g
    }

    /// Remembers a group's throttling counters read at monotonic time `at` (the watched
    /// cgroup's, read when the watch began), so that the first window has a start.
    pub fn seed_throttling(&mut self, group: &str, at: u64, counters: Throttling) {
        self.throttling
            .entry(group.to_string())
            .or_default()
            .push_front((at, counters));
    }

    /// Forgets the throttling history of groups not in `groups`.
    pub fn keep_groups(&mut self, groups: &[String]) {
        self.throttling.retain(|k, _| groups.contains(k));
    }

    /// Processes owned by another user than `uid`: their libraries and environment cannot be
    /// read without privilege.
    pub fn others(&self, uid: u32) -> usize {
        self.known
            .values()
            .filter(|k| k.uid.is_some_and(|u| u != uid))
            .count()
    }
}

impl crate::snapshot::Budgets for Budgets {
    fn budget_cores(&self, pid: Pid) -> f64 {
        let mut b = f64::from(self.online);
        if let Some(k) = self.known.get(&pid) {
            if k.affinity > 0 {
                b = b.min(f64::from(k.affinity));
            }
            if let Some(q) = k.cgroup.as_ref().and_then(|c| c.quota_cpus) {
                b = b.min(q);
            }
        }
        b
    }
}
