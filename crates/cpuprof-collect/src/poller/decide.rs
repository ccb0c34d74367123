//! The poller's decisions, as pure functions of what it knew and what it just read: whether a
//! pid was reused, whether the process exec'd, whether its slow files (command line, `maps`,
//! `environ`) are due, and — [`process`] — the new state of a process and its threads and the
//! events one poll's reading makes. Reading is [`super::Poller`]'s (one [`ProcessSnapshot`]
//! per process and poll); these are unit-tested on captured `/proc` text.

use std::collections::BTreeMap;

use cpuprof_model::{CpuTimes, Event, Pid, RunState, ThreadPoint, Tid};

use super::process::{ProcState, ThreadBase, ThreadState};
use crate::procfs::schedstat::SchedStat;
use crate::procfs::stat::Stat;
use crate::procfs::status::Status;

/// Re-read command line, libraries and environment this often even without an `exec`.
pub const INFO_REFRESH_NS: u64 = 2_000_000_000;
/// ...and at most this often when the number of threads changes (a pool starting is when a
/// runtime's library was just loaded).
pub const INFO_MIN_NS: u64 = 250_000_000;

/// What the poller knew of a process at its last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known<'a> {
    /// `stat` field 22: identifies the process across pid reuse.
    pub starttime: u64,
    /// Its name then.
    pub comm: &'a str,
    /// Code and stack addresses then (`stat` fields 26–28).
    pub layout: [u64; 3],
}

/// What a new `stat` says about a known process (or a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time this pid is seen.
    New,
    /// The pid now belongs to another process: the old one is gone (the new one is picked
    /// up at the next poll).
    Reused,
    /// The same process; `exec` when it ran a new program since (a new name, or a new image
    /// under the same name: a pyenv shim `python3` exec'ing the real `python3`).
    Same {
        /// It exec'd.
        exec: bool,
    },
}

/// Compares a process's new `stat` with what was known of it.
pub fn seen(known: Option<&Known>, st: &Stat) -> Seen {
    match known {
        None => Seen::New,
        Some(k) if k.starttime != st.starttime => Seen::Reused,
        Some(k) => Seen::Same {
            exec: k.comm != st.comm || k.layout != st.layout,
        },
    }
}

/// Are the slow files due: a new process, an exec, a changed thread count (at most every
/// [`INFO_MIN_NS`]), or [`INFO_REFRESH_NS`] since they were read?
pub fn info_due(seen: Seen, threads: usize, threads_at_read: usize, since_read_ns: u64) -> bool {
    match seen {
        Seen::New | Seen::Same { exec: true } => true,
        Seen::Reused => false,
        Seen::Same { exec: false } => {
            (threads != threads_at_read && since_read_ns >= INFO_MIN_NS)
                || since_read_ns >= INFO_REFRESH_NS
        }
    }
}

/// What one poll read of a thread.
#[derive(Debug, Clone)]
pub struct ThreadSnapshot {
    /// `schedstat` (`None` on kernels without `CONFIG_SCHED_INFO`).
    pub schedstat: Option<SchedStat>,
    /// `stat`.
    pub stat: Stat,
    /// `status`, when it was read this poll (it is read every few polls only).
    pub status: Option<Status>,
}

/// What one poll read of a process.
#[derive(Debug, Clone)]
pub struct ProcessSnapshot {
    /// Its `stat`.
    pub stat: Stat,
    /// Its threads now.
    pub tids: Vec<Tid>,
    /// The threads whose files read.
    pub threads: BTreeMap<Tid, ThreadSnapshot>,
    /// A new process's command line and executable.
    pub start: Option<(Vec<String>, Option<String>)>,
}

/// A process's new state and what its poll makes of it.
#[derive(Debug, Clone)]
pub struct ProcessUpdate {
    /// The new state.
    pub state: ProcState,
    /// Events, in order: the process's start, its threads' points, the ends of threads gone.
    pub events: Vec<Event>,
    /// Threads whose kept descriptors can be closed.
    pub forget: Vec<Tid>,
    /// It exec'd since the last poll.
    pub exec: bool,
    /// Its slow files are due.
    pub refresh_info: bool,
}

/// One poll of a process: its state after `snap` (`prev`: the state before; `baseline`: the
/// first poll of an attached recording, whose readings are the zero of every counter).
pub fn process(
    pid: Pid,
    t: u64,
    prev: Option<&ProcState>,
    snap: ProcessSnapshot,
    seen: Seen,
    baseline: bool,
) -> ProcessUpdate {
    let st = &snap.stat;
    let own = CpuTimes {
        user_ns: st.utime_ns,
        sys_ns: st.stime_ns,
    };
    let kids = CpuTimes {
        user_ns: st.cutime_ns,
        sys_ns: st.cstime_ns,
    };
    let mut events = Vec::new();
    let mut forget = Vec::new();
    let mut ps = match prev {
        Some(p) => p.clone(),
        None => {
            let mut ps = ProcState {
                ppid: st.ppid,
                starttime: st.starttime,
                comm: st.comm.clone(),
                layout: st.layout,
                ..Default::default()
            };
            if baseline {
                ps.base_own = own;
                ps.base_children = kids;
            }
            let (command, exe) = snap.start.clone().unwrap_or_default();
            events.push(Event::ProcessStart {
                t,
                pid,
                ppid: st.ppid,
                command,
                exe,
            });
            ps
        }
    };
    let mut old_threads = std::mem::take(&mut ps.threads);
    let mut threads = snap.threads;
    let mut live: BTreeMap<Tid, ThreadState> = BTreeMap::new();
    for &tid in &snap.tids {
        let prev_t = old_threads.remove(&tid);
        match threads.remove(&tid) {
            Some(ts) => {
                let (state, evs) = thread(pid, tid, t, prev_t.as_ref(), ts, baseline);
                events.extend(evs);
                live.insert(tid, state);
            }
            // Known but unreadable now: it ended (below).
            None => match prev_t {
                Some(p) => {
                    old_threads.insert(tid, p);
                }
                None => forget.push(tid),
            },
        }
    }
    let mut dead_ns = 0;
    for (tid, gone) in old_threads {
        dead_ns += gone.cpu_ns;
        forget.push(tid);
        events.push(Event::ThreadEnd { t, pid, tid });
    }
    ps.threads = live;
    ps.dead_threads_ns += dead_ns;
    ps.ppid = st.ppid;
    ps.zombie = st.state == 'Z';
    ps.set_counters(t, own, kids);
    let exec = matches!(seen, Seen::Same { exec: true });
    ps.comm = st.comm.clone();
    ps.layout = st.layout;
    let since = t.saturating_sub(ps.info_read_ns);
    let refresh_info = info_due(seen, snap.tids.len(), ps.info_threads, since);
    if refresh_info {
        ps.info_read_ns = t;
        ps.info_threads = snap.tids.len();
    }
    ProcessUpdate {
        state: ps,
        events,
        forget,
        exec,
        refresh_info,
    }
}

/// One poll of a thread: its new state, and its point (preceded, on the first poll of an
/// attached recording, by its baseline: the kernel's figures at its exit count from birth).
pub fn thread(
    pid: Pid,
    tid: Tid,
    t: u64,
    prev: Option<&ThreadState>,
    snap: ThreadSnapshot,
    baseline: bool,
) -> (ThreadState, Vec<Event>) {
    let st = snap.stat;
    // Kernels without CONFIG_SCHED_INFO have no schedstat: tick CPU, no run-queue wait.
    let ss = snap.schedstat.unwrap_or(SchedStat {
        cpu_ns: st.utime_ns + st.stime_ns,
        runq_ns: 0,
        timeslices: 0,
    });
    let sw = match (snap.status, prev) {
        (Some(s), _) => s,
        (None, Some(p)) => Status {
            vcsw: p.switches.0,
            ivcsw: p.switches.1,
            ..Default::default()
        },
        (None, None) => Status::default(),
    };
    let mut events = Vec::new();
    let base = match prev {
        Some(p) => p.base,
        None if baseline => {
            let base = ThreadBase {
                cpu_ns: ss.cpu_ns,
                runq_ns: ss.runq_ns,
                user_ns: st.utime_ns,
                sys_ns: st.stime_ns,
                vcsw: sw.vcsw,
                ivcsw: sw.ivcsw,
            };
            events.push(Event::ThreadBaseline {
                pid,
                tid,
                base: ThreadPoint {
                    t,
                    cpu_ns: base.cpu_ns,
                    runq_ns: base.runq_ns,
                    user_ns: base.user_ns,
                    sys_ns: base.sys_ns,
                    state: RunState::from_letter(st.state),
                    vcsw: base.vcsw,
                    ivcsw: base.ivcsw,
                },
            });
            base
        }
        None => ThreadBase::default(),
    };
    let point = ThreadPoint {
        t,
        cpu_ns: ss.cpu_ns.saturating_sub(base.cpu_ns),
        runq_ns: ss.runq_ns.saturating_sub(base.runq_ns),
        user_ns: st.utime_ns.saturating_sub(base.user_ns),
        sys_ns: st.stime_ns.saturating_sub(base.sys_ns),
        state: RunState::from_letter(st.state),
        vcsw: sw.vcsw.saturating_sub(base.vcsw),
        ivcsw: sw.ivcsw.saturating_sub(base.ivcsw),
    };
    events.push(Event::ThreadPoint {
        pid,
        tid,
        name: st.comm,
        point,
    });
    (
        ThreadState {
            cpu_ns: point.cpu_ns,
            switches: (sw.vcsw, sw.ivcsw),
            base,
        },
        events,
    )
}

/// Nothing moved in a known process since its last poll, by its own `stat`: its main
/// thread is not runnable, its tick counters (its threads' and its reaped children's), its
/// thread count and its name are those of the last poll. Then no thread of it got a whole
/// tick of CPU and none started or ended, so a live view may skip reading its threads: what
/// they did in less than a tick shows at their next read (the counters are cumulative).
pub fn quiet(known: &ProcState, now: &Stat) -> bool {
    let own = (
        now.utime_ns.saturating_sub(known.base_own.user_ns),
        now.stime_ns.saturating_sub(known.base_own.sys_ns),
    );
    let children = (
        now.cutime_ns.saturating_sub(known.base_children.user_ns),
        now.cstime_ns.saturating_sub(known.base_children.sys_ns),
    );
    !matches!(now.state, 'R' | 'Z' | 'X')
        && !known.zombie
        && now.num_threads as usize == known.threads.len()
        && now.comm == known.comm
        && own == (known.own_stat.user_ns, known.own_stat.sys_ns)
        && children == (known.children.user_ns, known.children.sys_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::stat::parse;

    /// `/proc/PID/stat` of a `python3` (a captured line, pid and addresses edited).
    const PYTHON: &[u8] = b"4242 (python3) S 4100 4242 4100 34816 4242 4194560 5213 0 0 0 \
        41 7 0 0 20 0 3 0 1434727 31338496 3050 18446744073709551615 94523031146496 \
        94523033166377 140721673599184 0 0 0 0 16781312 134234626 0 0 0 17 1 0 0 0 0 0";
    /// The same pid after `exec` of the real interpreter under the same name: a new image.
    const PYTHON_EXECED: &[u8] = b"4242 (python3) S 4100 4242 4100 34816 4242 4194560 5213 0 0 0 \
        41 7 0 0 20 0 3 0 1434727 31338496 3050 18446744073709551615 94711000000000 \
        94711002000000 140729999999184 0 0 0 0 16781312 134234626 0 0 0 17 1 0 0 0 0 0";
    /// The pid reused by another process (another start time).
    const REUSED: &[u8] = b"4242 (sleep) S 1 4242 4100 0 -1 4194560 90 0 0 0 0 0 0 0 20 0 1 0 \
        1500000 5361664 200 18446744073709551615 94000000000000 94000000020000 \
        140700000000000 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";

    #[test]
    fn a_process_is_quiet_while_its_own_stat_stays_put() {
        let st = parse(PYTHON, 100).unwrap();
        let mut ps = ProcState {
            comm: st.comm.clone(),
            ..Default::default()
        };
        for tid in [4242, 4243, 4244] {
            ps.threads.insert(tid, ThreadState::default());
        }
        ps.set_counters(
            0,
            CpuTimes {
                user_ns: st.utime_ns,
                sys_ns: st.stime_ns,
            },
            CpuTimes::default(),
        );
        assert!(quiet(&ps, &st));
        // A tick more of CPU, a thread more, the main thread runnable: read it.
        let mut busier = st.clone();
        busier.utime_ns += 10_000_000;
        assert!(!quiet(&ps, &busier));
        let mut more = st.clone();
        more.num_threads += 1;
        assert!(!quiet(&ps, &more));
        let mut running = st.clone();
        running.state = 'R';
        assert!(!quiet(&ps, &running));
    }

    fn known(st: &Stat) -> Known<'_> {
        Known {
            starttime: st.starttime,
            comm: &st.comm,
            layout: st.layout,
        }
    }

    #[test]
    fn new_same_exec_and_reuse() {
        let a = parse(PYTHON, 100).unwrap();
        assert_eq!((a.comm.as_str(), a.starttime), ("python3", 1434727));
        assert_eq!(seen(None, &a), Seen::New);
        assert_eq!(seen(Some(&known(&a)), &a), Seen::Same { exec: false });
        let b = parse(PYTHON_EXECED, 100).unwrap();
        assert_eq!(seen(Some(&known(&a)), &b), Seen::Same { exec: true });
        let c = parse(REUSED, 100).unwrap();
        assert_eq!(seen(Some(&known(&a)), &c), Seen::Reused);
    }

    #[test]
    fn slow_files_are_read_when_something_changed_or_it_is_time() {
        let same = Seen::Same { exec: false };
        assert!(info_due(Seen::New, 1, 0, 0));
        assert!(info_due(Seen::Same { exec: true }, 3, 3, 0));
        assert!(!info_due(Seen::Reused, 1, 1, u64::MAX));
        assert!(!info_due(same, 3, 3, INFO_REFRESH_NS - 1));
        assert!(info_due(same, 3, 3, INFO_REFRESH_NS));
        // A pool starting: read again, but not more often than INFO_MIN_NS.
        assert!(!info_due(same, 5, 3, INFO_MIN_NS - 1));
        assert!(info_due(same, 5, 3, INFO_MIN_NS));
    }

    /// A thread's `stat` (captured from a busy Python worker, pid and times edited).
    fn thread_stat(tid: u32, utime: u64) -> Vec<u8> {
        format!(
            "{tid} (python3) R 4100 4242 4100 34816 4242 4194368 10 0 0 0 {utime} 2 0 0 20 0 3 \
             0 1434730 31338496 3050 18446744073709551615 0 0 0 0 0 0 0 16781312 134234626 0 0 \
             0 -1 1 0 0 0 0 0"
        )
        .into_bytes()
    }

    fn snap_of(tids: &[u32], utime: u64) -> ProcessSnapshot {
        ProcessSnapshot {
            stat: parse(PYTHON, 100).unwrap(),
            tids: tids.to_vec(),
            threads: tids
                .iter()
                .map(|&t| {
                    (
                        t,
                        ThreadSnapshot {
                            schedstat: crate::procfs::schedstat::parse(
                                format!("{} 5000000 7\n", utime * 10_000_000).as_bytes(),
                            ),
                            stat: parse(&thread_stat(t, utime), 100).unwrap(),
                            status: None,
                        },
                    )
                })
                .collect(),
            start: Some((vec!["python3".into(), "job.py".into()], None)),
        }
    }

    #[test]
    fn a_new_process_starts_then_its_threads_point_then_ended_threads_end() {
        let first = process(
            4242,
            100,
            None,
            snap_of(&[4242, 4243], 10),
            Seen::New,
            false,
        );
        assert!(matches!(
            first.events[0],
            Event::ProcessStart { pid: 4242, .. }
        ));
        let points = first
            .events
            .iter()
            .filter(|e| matches!(e, Event::ThreadPoint { .. }))
            .count();
        assert_eq!(points, 2);
        assert!(first.refresh_info);
        // Next poll: thread 4243 is gone; its CPU moves to the ended threads' sum.
        let st = parse(PYTHON, 100).unwrap();
        let seen_now = seen(
            Some(&Known {
                starttime: first.state.starttime,
                comm: &first.state.comm,
                layout: first.state.layout,
            }),
            &st,
        );
        let second = process(
            4242,
            200,
            Some(&first.state),
            snap_of(&[4242], 20),
            seen_now,
            false,
        );
        assert!(second
            .events
            .iter()
            .any(|e| matches!(e, Event::ThreadEnd { tid: 4243, .. })));
        assert_eq!(second.forget, vec![4243]);
        assert_eq!(second.state.dead_threads_ns, 100_000_000);
        assert!(!second.refresh_info);
        assert!(!second
            .events
            .iter()
            .any(|e| matches!(e, Event::ProcessStart { .. })));
    }

    #[test]
    fn attached_baseline_makes_counters_start_at_zero() {
        let up = process(4242, 0, None, snap_of(&[4242], 10), Seen::New, true);
        assert!(up
            .events
            .iter()
            .any(|e| matches!(e, Event::ThreadBaseline { tid: 4242, .. })));
        let point = up.events.iter().find_map(|e| match e {
            Event::ThreadPoint { point, .. } => Some(*point),
            _ => None,
        });
        assert_eq!(point.unwrap().cpu_ns, 0);
        assert_eq!(up.state.own_stat.total_ns(), 0);
    }
}
