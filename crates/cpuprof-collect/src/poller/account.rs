//! Accounting for CPU the poller could not see: processes that ended between two polls.
//!
//! A process that exits takes its counters with it, and one that lives shorter than a
//! polling interval is never seen at all. The kernel still knows: when a parent reaps a
//! child, the child's whole CPU (its own plus its reaped descendants') is added to the
//! parent's `cutime`/`cstime`; when cpuprof reaps one (the launched target, or an orphan
//! re-parented to it as subreaper), `wait4` returns the same sum as rusage.
//!
//! So each poll, for every process that is still alive, the growth of its children
//! counters (`delta`) is exactly the CPU of the subtrees it reaped since the last poll.
//! Part of it is known already — the last poll of the processes that vanished below it
//! (`known` = their own CPU + their children counters at that poll); the rest (`residual`)
//! is CPU they used after the last poll, or the CPU of children that were never seen. The
//! residual goes to the vanished processes directly below that ancestor, in proportion to
//! what they were known to use, or — when nothing seen vanished — to the ancestor itself as
//! CPU of its unseen children. The profile's total then equals the kernel's accounting.
//!
//! ```text
//!   A (alive, cutime +300)          known(X) = 120, known(Y) = 60 (Y's parent X vanished too)
//!   └─ X (vanished)                 residual = 300 - 180 = 120, all to X (the only top)
//!      └─ Y (vanished)              X ends with own + 120, Y with its own
//! ```

use std::collections::BTreeMap;

use cpuprof_model::{CpuTimes, Pid};

/// A process seen at the previous poll and gone (or reaped) now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vanished {
    /// Its pid.
    pub pid: Pid,
    /// Its parent at the last poll.
    pub ppid: Pid,
    /// Own CPU + children counters at its last poll.
    pub known: CpuTimes,
    /// Its `wait4` rusage, when cpuprof reaped it.
    pub reaped: Option<CpuTimes>,
}

/// Where a vanished process's CPU surfaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    /// In the children counters of this live ancestor.
    Alive(Pid),
    /// In the rusage cpuprof got when it reaped this process.
    Reaped(Pid),
    /// Nowhere cpuprof can read (its parent is outside the tree).
    Lost,
}

/// Adds `b` to `a`.
pub fn add(a: &mut CpuTimes, b: CpuTimes) {
    a.user_ns += b.user_ns;
    a.sys_ns += b.sys_ns;
}

/// `total` ns split in the user/system proportion of `like`.
pub fn split_like(total: u64, like: CpuTimes) -> CpuTimes {
    let parts = like.total_ns();
    if parts == 0 {
        return CpuTimes {
            user_ns: total,
            sys_ns: 0,
        };
    }
    let user = (u128::from(total) * u128::from(like.user_ns) / u128::from(parts)) as u64;
    CpuTimes {
        user_ns: user,
        sys_ns: total - user,
    }
}

/// `a - b` per field, never below zero.
pub fn sub(a: CpuTimes, b: CpuTimes) -> CpuTimes {
    CpuTimes {
        user_ns: a.user_ns.saturating_sub(b.user_ns),
        sys_ns: a.sys_ns.saturating_sub(b.sys_ns),
    }
}

/// Distributes unseen CPU. `alive` maps each live process to the growth of its children
/// counters since the last poll. Returns the CPU to add per pid: for a vanished pid, on top
/// of its last known own CPU; for a live pid, to its CPU of unseen children.
///
/// The children counters tick in 10 ms steps, so a poll can know more than the counters
/// show yet; `carry` keeps that deficit per live process (ns, at most zero) and takes it off
/// the next growth instead of dropping it, so that the errors do not add up.
pub fn attribute(
    vanished: &[Vanished],
    alive: &BTreeMap<Pid, CpuTimes>,
    carry: &mut BTreeMap<Pid, i64>,
) -> BTreeMap<Pid, CpuTimes> {
    let by_pid: BTreeMap<Pid, &Vanished> = vanished.iter().map(|v| (v.pid, v)).collect();
    let group_of = |v: &Vanished| -> Group {
        if v.reaped.is_some() {
            return Group::Reaped(v.pid);
        }
        let mut p = v.ppid;
        for _ in 0..=vanished.len() {
            if let Some(up) = by_pid.get(&p) {
                if up.reaped.is_some() {
                    return Group::Reaped(up.pid);
                }
                p = up.ppid;
            } else if alive.contains_key(&p) {
                return Group::Alive(p);
            } else {
                return Group::Lost;
            }
        }
        Group::Lost
    };
    let mut members: BTreeMap<Group, Vec<&Vanished>> = BTreeMap::new();
    for v in vanished {
        members.entry(group_of(v)).or_default().push(v);
    }
    let mut out: BTreeMap<Pid, CpuTimes> = BTreeMap::new();
    // Live processes that reaped nothing seen: the whole growth is unseen children.
    for (&pid, &delta) in alive {
        if delta.total_ns() > 0 && !members.contains_key(&Group::Alive(pid)) {
            let c = carry.entry(pid).or_insert(0);
            let net = delta.total_ns() as i64 + *c;
            if net > 0 {
                *c = 0;
                add(out.entry(pid).or_default(), split_like(net as u64, delta));
            } else {
                *c = net;
            }
        }
    }
    for (group, ms) in members {
        let (delta, tops): (CpuTimes, Vec<&Vanished>) = match group {
            Group::Lost => continue,
            Group::Alive(a) => (
                alive.get(&a).copied().unwrap_or_default(),
                ms.iter().copied().filter(|m| m.ppid == a).collect(),
            ),
            Group::Reaped(r) => (by_pid[&r].reaped.unwrap_or_default(), vec![by_pid[&r]]),
        };
        let known: u64 = ms.iter().map(|m| m.known.total_ns()).sum();
        // Deficits the vanished members still carried come off their group's growth.
        let carried: i64 = ms.iter().filter_map(|m| carry.remove(&m.pid)).sum();
        let mut net = delta.total_ns() as i64 - known as i64 + carried;
        if let Group::Alive(a) = group {
            let c = carry.entry(a).or_insert(0);
            net += *c;
            *c = net.min(0);
        }
        if net <= 0 {
            continue;
        }
        let residual = net as u64;
        let residual_split = split_like(residual, delta);
        if tops.is_empty() {
            if let Group::Alive(a) = group {
                add(out.entry(a).or_default(), residual_split);
            }
            continue;
        }
        let top_known: u64 = tops.iter().map(|t| t.known.total_ns()).sum();
        let mut given = 0u64;
        for (i, t) in tops.iter().enumerate() {
            let share = if i + 1 == tops.len() {
                residual - given
            } else if top_known == 0 {
                residual / tops.len() as u64
            } else {
                (u128::from(residual) * u128::from(t.known.total_ns()) / u128::from(top_known))
                    as u64
            };
            given += share;
            add(
                out.entry(t.pid).or_default(),
                split_like(share, residual_split),
            );
        }
    }
    carry.retain(|pid, _| alive.contains_key(pid));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(total: u64) -> CpuTimes {
        CpuTimes {
            user_ns: total,
            sys_ns: 0,
        }
    }

    fn v(pid: Pid, ppid: Pid, known: u64) -> Vanished {
        Vanished {
            pid,
            ppid,
            known: c(known),
            reaped: None,
        }
    }

    #[test]
    fn residual_goes_to_the_top_vanished_child() {
        // A(1) reaped X(2) whose child Y(3) vanished in the same interval.
        let alive = BTreeMap::from([(1, c(300))]);
        let out = attribute(&[v(2, 1, 120), v(3, 2, 60)], &alive, &mut BTreeMap::new());
        assert_eq!(out, BTreeMap::from([(2, c(120))]));
    }

    #[test]
    fn unseen_children_count_in_their_parent() {
        let alive = BTreeMap::from([(1, c(50)), (4, c(0))]);
        assert_eq!(
            attribute(&[], &alive, &mut BTreeMap::new()),
            BTreeMap::from([(1, c(50))])
        );
    }

    #[test]
    fn split_between_siblings_by_what_they_were_known_to_use() {
        let alive = BTreeMap::from([(1, c(400))]);
        let out = attribute(&[v(2, 1, 100), v(3, 1, 100)], &alive, &mut BTreeMap::new());
        assert_eq!(out, BTreeMap::from([(2, c(100)), (3, c(100))]));
    }

    #[test]
    fn reaped_by_cpuprof_uses_rusage_and_lost_ones_get_nothing() {
        let mut root = v(10, 999, 500);
        root.reaped = Some(CpuTimes {
            user_ns: 600,
            sys_ns: 200,
        });
        // 11 was a child of the root and vanished with it; 20's parent is outside the tree.
        let out = attribute(
            &[root, v(11, 10, 100), v(20, 77, 5)],
            &BTreeMap::new(),
            &mut BTreeMap::new(),
        );
        assert_eq!(
            out,
            BTreeMap::from([(
                10,
                CpuTimes {
                    user_ns: 150,
                    sys_ns: 50
                }
            )])
        );
    }

    #[test]
    fn known_more_than_delta_adds_nothing() {
        let alive = BTreeMap::from([(1, c(90))]);
        let mut carry = BTreeMap::new();
        assert!(attribute(&[v(2, 1, 100)], &alive, &mut carry).is_empty());
        // The 10 ns the counters had not shown yet come off the next growth.
        let alive = BTreeMap::from([(1, c(30))]);
        assert_eq!(
            attribute(&[], &alive, &mut carry),
            BTreeMap::from([(1, c(20))])
        );
        // A deficit of a process that vanishes goes to its group.
        let mut carry = BTreeMap::from([(2, -15)]);
        let alive = BTreeMap::from([(1, c(130))]);
        assert_eq!(
            attribute(&[v(2, 1, 100)], &alive, &mut carry),
            BTreeMap::from([(2, c(15))])
        );
        assert!(carry.values().all(|&c| c == 0));
    }
}
