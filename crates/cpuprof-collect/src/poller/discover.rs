//! Finding the tree's new processes.
//!
//! One listing of `/proc` per poll: a pid not seen before whose parent is in the tree (or is
//! cpuprof itself, which adopts orphans as subreaper) joins the tree, as do its own new
//! children, found in the same pass. Pids outside the tree are remembered while they exist,
//! so each is read once. This costs one directory read per poll however many threads the
//! target has, where reading every thread's `children` file would cost one read per thread.
//!
//! The listing is skipped when no pid was allocated since the last one: `/proc/loadavg` ends
//! with the last pid the kernel handed out in this pid namespace, and every new process or
//! thread takes a new one. A steady thread pool then costs no listing at all; the listing
//! was a third of the poller's CPU, and grows with the number of processes on the machine.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use cpuprof_model::Pid;

use crate::procfs::{stat, ProcReader};

/// The processes a watch without a root follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every user-space process of the machine (of this pid namespace) but cpuprof itself;
    /// kernel threads (children of `kthreadd`) have no pools and no budget to fight over.
    Machine,
    /// The processes of a cgroup directory and of its descendant groups (v1 or v2), as
    /// listed in their `cgroup.procs`; read at every poll, so a process moved in joins.
    Cgroup(PathBuf),
}

/// `kthreadd`, the parent of every kernel thread.
const KTHREADD: Pid = 2;

/// Remembers the pids that are not part of the tree.
#[derive(Debug, Default)]
pub struct Discovery {
    foreign: HashSet<Pid>,
    /// `/proc/loadavg`, kept open.
    loadavg: Option<File>,
    /// The last pid allocated when `/proc` was last listed.
    listed_at: Option<u64>,
    /// No pid was allocated between the last two scans.
    unchanged: bool,
}

/// The last field of `/proc/loadavg`: the pid allocated last in this pid namespace.
fn parse_last_pid(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    text.split_ascii_whitespace().nth(4)?.parse().ok()
}

/// Pids listed in `/proc` now.
fn list_pids() -> Vec<Pid> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Of `unknown` (pid → parent), those whose parent chain reaches `is_member`, in an order
/// where parents come before their children.
pub fn joiners(unknown: &BTreeMap<Pid, Pid>, is_member: impl Fn(Pid) -> bool) -> Vec<Pid> {
    let mut joined: Vec<Pid> = Vec::new();
    let mut in_tree: BTreeSet<Pid> = BTreeSet::new();
    loop {
        let before = joined.len();
        for (&pid, &ppid) in unknown {
            if !in_tree.contains(&pid) && (is_member(ppid) || in_tree.contains(&ppid)) {
                in_tree.insert(pid);
                joined.push(pid);
            }
        }
        if joined.len() == before {
            return joined;
        }
    }
}

impl Discovery {
    /// New processes of the tree. `tracked`: pids already in it; `adopter`: cpuprof's pid
    /// in launch mode (its children are the target and adopted orphans); `scope`: the
    /// processes to follow when there is no root.
    pub fn scan(
        &mut self,
        reader: &mut ProcReader,
        ticks: u64,
        tracked: &dyn Fn(Pid) -> bool,
        adopter: Option<Pid>,
        scope: Option<&Scope>,
    ) -> Vec<Pid> {
        if let Some(Scope::Cgroup(dir)) = scope {
            // The group lists its members: no listing of /proc at all.
            self.unchanged = false;
            let mut pids = crate::cgroup::procs(dir);
            pids.retain(|&p| !tracked(p));
            pids.sort_unstable();
            pids.dedup();
            return pids;
        }
        // Read before listing: a pid allocated after this read shows at the next poll.
        let last_pid = self.last_pid();
        self.unchanged = last_pid.is_some() && last_pid == self.listed_at;
        if self.unchanged {
            return Vec::new(); // no process or thread was created anywhere
        }
        self.listed_at = last_pid;
        let listing = list_pids();
        let present: HashSet<Pid> = listing.iter().copied().collect();
        self.foreign.retain(|p| present.contains(p));
        let mut unknown: BTreeMap<Pid, Pid> = BTreeMap::new();
        for pid in listing {
            if tracked(pid) || self.foreign.contains(&pid) || Some(pid) == adopter {
                continue;
            }
            let Ok(text) = reader.read_proc(pid, None, "stat") else {
                continue; // already gone
            };
            if let Some(s) = stat::parse(text, ticks) {
                unknown.insert(pid, s.ppid);
            }
        }
        let joined = match scope {
            Some(_) => {
                let me = std::process::id();
                unknown
                    .iter()
                    .filter(|&(&pid, &ppid)| pid != me && pid != KTHREADD && ppid != KTHREADD)
                    .map(|(&pid, _)| pid)
                    .collect()
            }
            None => joiners(&unknown, |p| tracked(p) || Some(p) == adopter),
        };
        let joined_set: HashSet<Pid> = joined.iter().copied().collect();
        self.foreign
            .extend(unknown.keys().filter(|p| !joined_set.contains(p)));
        joined
    }

    /// True when the last [`scan`](Discovery::scan) saw no pid allocated since the one
    /// before: no process and no thread was created, so every process still has the threads
    /// it had then, less those that ended.
    pub fn nothing_created(&self) -> bool {
        self.unchanged
    }

    /// The pid the kernel allocated last, if `/proc/loadavg` says.
    fn last_pid(&mut self) -> Option<u64> {
        if self.loadavg.is_none() {
            self.loadavg = File::open("/proc/loadavg").ok();
        }
        let mut buf = [0u8; 128];
        let n = self.loadavg.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_last_pid(&buf[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_and_grandchildren_join_parents_first() {
        // 10 is in the tree; 12 is its child, 13 a child of 12, 20 unrelated.
        let unknown = BTreeMap::from([(13, 12), (12, 10), (20, 1)]);
        assert_eq!(joiners(&unknown, |p| p == 10), vec![12, 13]);
    }

    #[test]
    fn last_pid_is_the_fifth_field_of_loadavg() {
        assert_eq!(parse_last_pid(b"0.20 0.18 0.12 1/80 11206\n"), Some(11206));
        assert_eq!(parse_last_pid(b"0.20 0.18\n"), None);
    }

    #[test]
    fn lists_again_only_after_a_new_pid() {
        let me = std::process::id();
        let mut d = Discovery::default();
        let mut r = ProcReader::new();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // Skipped while no pid is allocated (retried: other tests and the machine make
        // processes too): the child, not in the tree, is then not found.
        let skipped = (0..20).any(|_| {
            let before = d.last_pid();
            d.listed_at = before;
            let found = d.scan(&mut r, 100, &|p| p == me, None, None);
            d.last_pid() == before && found.is_empty() && d.nothing_created()
        });
        assert!(skipped, "/proc was listed although no pid was allocated");
        // A new pid: the next scan lists /proc and finds the child.
        let listed = d.listed_at.expect("/proc/loadavg has the last pid");
        let mut other = std::process::Command::new("true").spawn().unwrap();
        other.wait().unwrap();
        let found = d.scan(&mut r, 100, &|p| p == me, None, None);
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(d.listed_at.unwrap() > listed && !d.nothing_created());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn the_machine_scope_has_every_user_process_but_this_one() {
        let mut d = Discovery::default();
        let mut r = ProcReader::new();
        let found = d.scan(&mut r, 100, &|_| false, None, Some(&Scope::Machine));
        assert!(
            found.contains(&1),
            "init is a user-space process: {found:?}"
        );
        assert!(!found.contains(&std::process::id()));
        assert!(!found.contains(&KTHREADD));
    }

    #[test]
    fn finds_a_child_of_this_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let mut d = Discovery::default();
        let mut r = ProcReader::new();
        let found = d.scan(&mut r, 100, &|p| p == me, None, None);
        assert!(found.contains(&child.id()), "{found:?}");
        // Unrelated processes are remembered, and not read again.
        assert!(!d.foreign.is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
