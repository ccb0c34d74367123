//! A live view of the processes cpuprof watches: what `cpuprof top` shows and `cpuprof
//! agent` exports.
//!
//! A [`Watch`] is a recording that never ends ([`cpuprof_session::Session`] on a scope: the
//! machine, a cgroup, or one process tree). At each refresh it cuts the last window out of
//! the recording ([`cpuprof_model::Profile::window`]), splits it by cgroup (processes of one
//! group share its budget; a container's quota is its own), runs the same analysis as `cpuprof
//! record` on each group against that group's budget, and returns a [`Snapshot`]: per process
//! its CPU against its budget, run-queue wait, threads, pools and findings now. What no
//! window needs any more is forgotten, so a watch's memory follows what is alive.
#![deny(missing_docs)]

pub mod budgets;
pub mod snapshot;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use cpuprof_collect::clock::monotonic_ns;
use cpuprof_collect::procfs::{pressure, system_stat};
use cpuprof_model::{Pid, Profile};
use cpuprof_session::{ExitSource, Options, Session, Target};

pub use snapshot::Snapshot;

/// How a watch records.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// How often every thread is read (and the view refreshed).
    pub interval: Duration,
    /// The window the figures and findings are over.
    pub window: Duration,
    /// Native stacks through perf (for a "top functions" view; off by default: it costs).
    pub stacks: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            interval: Duration::from_secs(1),
            window: Duration::from_secs(5),
            stacks: false,
        }
    }
}

/// What one process did since the previous [`Watch::increments`]: summed over calls, a
/// process's counters, exact however its threads come and go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Increment {
    /// Process.
    pub pid: Pid,
    /// User CPU, ns.
    pub user_ns: u64,
    /// System CPU, ns.
    pub sys_ns: u64,
    /// Run-queue wait, ns.
    pub runq_ns: u64,
}

/// A live watch.
pub struct Watch {
    session: Session,
    opts: WatchOptions,
    budgets: budgets::Budgets,
    /// `/proc/stat` at the previous refreshes, oldest first (for cores busy over the window).
    cpu_history: Vec<(u64, system_stat::CpuTotals)>,
    ticks: u64,
    ended: bool,
    /// Recording time up to which [`Watch::increments`] has counted.
    counted_to: u64,
}

impl Watch {
    /// Starts watching `target` (a scope or a process tree; not a command).
    pub fn start(target: Target, opts: WatchOptions) -> Result<Watch> {
        let options = Options {
            interval: opts.interval,
            perf: opts
                .stacks
                .then(cpuprof_collect::perf::PerfOptions::default),
            python: None,
            exit_accounting: ExitSource::LastPoll,
            ..Options::default()
        };
        let mut session = Session::launch(target, options)?;
        session.release()?;
        let online = session.profile().machine.online_cpus;
        let cpu_history = system_stat::read()
            .map(|c| vec![(monotonic_ns(), c)])
            .unwrap_or_default();
        let mut budgets = budgets::Budgets::new(online);
        if let Some(g) = &session.profile().machine.cgroup {
            if let Some(t) = g.throttling_start {
                budgets.seed_throttling(&g.path, session.origin(), t);
            }
        }
        Ok(Watch {
            session,
            opts,
            budgets,
            cpu_history,
            ticks: cpuprof_collect::procfs::clock_ticks(),
            ended: false,
            counted_to: 0,
        })
    }

    /// Waits up to `wait` for the collectors, taking in what they sent. True once the watch
    /// is over (the watched process tree ended).
    pub fn tick(&mut self, wait: Duration) -> bool {
        self.ended |= self.session.tick(wait);
        self.ended
    }

    /// The snapshot of the last window.
    pub fn snapshot(&mut self) -> Snapshot {
        let now = monotonic_ns();
        let window_ns = self.opts.window.as_nanos() as u64;
        let window = self.session.window(self.opts.window);
        let pids: Vec<Pid> = window
            .processes
            .iter()
            .filter(|p| p.end_ns.is_none())
            .map(|p| p.pid)
            .collect();
        self.budgets.refresh(&pids, now);
        // One group per cgroup, each analysed against its own budget.
        let mut groups: BTreeMap<String, Vec<Pid>> = BTreeMap::new();
        for &pid in &pids {
            groups
                .entry(self.budgets.group_of(pid).to_string())
                .or_default()
                .push(pid);
        }
        let scope_cgroup = window.machine.cgroup.clone();
        let mut rows = Vec::new();
        for members in groups.values() {
            let mut part = subset(&window, members);
            let group = scope_cgroup
                .clone()
                .or_else(|| self.budgets.cgroup_of(members[0]).cloned());
            part.machine.cgroup = group.map(|g| self.budgets.throttling_over(&g, now, window_ns));
            let analysis = cpuprof_analysis::analyze(&part);
            snapshot::add_rows(&mut rows, &part, &analysis, &self.budgets);
        }
        let names: Vec<String> = groups.keys().cloned().collect();
        self.budgets.keep_groups(&names);
        let figures = snapshot::MachineFigures {
            cores_busy: self.cores_busy(now, window_ns),
            psi_some: pressure::cpu_some_avg10(),
        };
        let mut snap = snapshot::finish(rows, &window, figures);
        for p in &mut snap.processes {
            p.cgroup = self.budgets.group_of(p.pid).to_string();
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            let others = self.budgets.others(uid);
            if others > 0 {
                snap.hidden = Some(format!(
                    "{others} processes of other users show no pools or findings: their \
                     libraries and environment need root or CAP_SYS_PTRACE to read"
                ));
            }
        }
        // Everything a next window can need is at most one window old.
        self.session.forget_older_than(self.opts.window * 2);
        snap
    }

    /// Each process's CPU and run-queue wait since the last call (the first call: since the
    /// watch began). Consecutive calls cut the recording at its polls, so nothing is counted
    /// twice or lost; a window of its own per call, so the figures stay exact when the
    /// window of [`Watch::snapshot`] slides and what ended is forgotten. Call it at least once
    /// per window (what is older than two windows may be forgotten).
    pub fn increments(&mut self) -> Vec<Increment> {
        let to = self.session.last_poll();
        let from = self.counted_to.min(to);
        self.counted_to = to;
        let part = self.session.profile().window(from, to);
        part.processes
            .iter()
            .map(|p| Increment {
                pid: p.pid,
                user_ns: p.cpu.user_ns,
                sys_ns: p.cpu.sys_ns,
                runq_ns: p.runq_ns,
            })
            .filter(|i| i.user_ns + i.sys_ns + i.runq_ns > 0)
            .collect()
    }

    /// The cgroup path of a process as last read (`""` when unknown).
    pub fn cgroup_of(&self, pid: Pid) -> &str {
        self.budgets.group_of(pid)
    }

    /// Cores busy machine-wide from `/proc/stat` over (about) the window.
    fn cores_busy(&mut self, now: u64, window_ns: u64) -> f64 {
        let Some(cur) = system_stat::read() else {
            return 0.0;
        };
        self.cpu_history.push((now, cur));
        while self.cpu_history.len() > 2 && self.cpu_history[1].0 + window_ns <= now {
            self.cpu_history.remove(0);
        }
        let (t0, first) = self.cpu_history[0];
        let secs = (now.saturating_sub(t0)) as f64 / 1e9;
        if secs <= 0.0 {
            return 0.0;
        }
        cur.busy.saturating_sub(first.busy) as f64 / self.ticks as f64 / secs
    }

    /// The profile recorded so far (what the window is cut from).
    pub fn profile(&self) -> &Profile {
        self.session.profile()
    }

    /// Stops the watch.
    pub fn stop(mut self) -> Result<()> {
        self.session.stop();
        self.session.finish().map(|_| ())
    }
}

/// The processes `pids` of `window`, as a profile of their own.
fn subset(window: &Profile, pids: &[Pid]) -> Profile {
    let keep = |pid: Pid| pids.contains(&pid);
    Profile {
        meta: window.meta.clone(),
        machine: window.machine.clone(),
        processes: window
            .processes
            .iter()
            .filter(|p| keep(p.pid))
            .cloned()
            .collect(),
        stacks: window.stacks.clone(),
        samples: window
            .samples
            .iter()
            .filter(|s| keep(s.pid))
            .copied()
            .collect(),
        python_samples: window
            .python_samples
            .iter()
            .filter(|s| keep(s.pid))
            .copied()
            .collect(),
        notices: Vec::new(),
    }
}
