//! Turns collector [`Event`]s into a [`Profile`].
//!
//! The one place that mutates a profile while recording. It keeps the invariants the
//! analysis and the report rely on: times relative to the start, counters never going
//! backwards, every sample and point attached to a known process and thread, process CPU
//! at least the sum of its threads, everything sorted by time.

use std::collections::{HashMap, HashSet};

use crate::event::Event;
use crate::profile::{
    CpuTimes, ExitAccounting, Machine, Meta, Process, Profile, PythonSample, Sample, Thread,
    ThreadPoint,
};
use crate::sched::SwitchBinner;
use crate::{Ns, Pid, Tid};

/// Builds a profile from events.
#[derive(Debug)]
pub struct ProfileBuilder {
    profile: Profile,
    origin: u64,
    process_index: HashMap<Pid, usize>,
    /// Per process: CPU reported by the process's own counters or rusage.
    own_cpu: HashMap<Pid, CpuTimes>,
    /// Threads named by the Python sampler (`threading.Thread(name=...)`): that name wins over
    /// `comm`, which Python does not set.
    python_named: HashSet<(Pid, Tid)>,
    /// Context switches, aggregated into per-thread bins as they come.
    switches: SwitchBinner,
    /// Processes the procfs poller reported (others were seen only in perf records).
    polled: HashSet<Pid>,
    /// Perf's fork records: a process's parent and the parent thread that forked.
    forks: HashMap<Pid, (Pid, Tid)>,
    /// Exec records: a process's program name, command line and executable after its last
    /// `exec`.
    exec_names: HashMap<Pid, (String, Vec<String>, Option<String>)>,
    /// When a process's last `exec` record came (with a command line read then, from the
    /// exit accounting; with the program's name only, from perf).
    exec_command_at: HashMap<Pid, Ns>,
    /// When a poll last read a process's command line.
    command_read_at: HashMap<Pid, Ns>,
    /// The latest poll seen.
    last_poll_t: Ns,
    /// Baselines of threads that existed before an attached recording began.
    baselines: HashMap<(Pid, Tid), ThreadPoint>,
    /// Threads whose final figures came from the kernel's exit accounting.
    exited: HashSet<(Pid, Tid)>,
    /// Points kept over all threads, and the least time between two kept points of a
    /// thread (0: every poll).
    total_points: usize,
    point_spacing: Ns,
    /// Per thread, its last kept Python sample.
    last_python: HashMap<(Pid, Tid), LastPython>,
}

/// A thread's last kept Python sample: (time, stack, active, index in `python_samples`).
type LastPython = (Ns, Option<crate::StackId>, bool, usize);

/// How often a Python thread that waits with an unchanged stack keeps a sample.
pub const IDLE_SAMPLE_NS: Ns = 1_000_000_000;

/// Most thread points kept in memory (about 64 bytes each): past it, every thread's series
/// halves its resolution, so a recording's memory grows with its threads, not with time
/// (docs/profile-format.md, "Memory").
pub const POINT_BUDGET: usize = 1_000_000;

/// Notices a recording that forgets its past keeps (see [`ProfileBuilder::forget_before`]).
const MAX_NOTICES: usize = 100;

impl ProfileBuilder {
    /// A builder for a recording that started at monotonic time `origin_ns`.
    pub fn new(mut meta: Meta, machine: Machine, origin_ns: u64) -> Self {
        meta.clock_origin_ns = origin_ns;
        ProfileBuilder {
            profile: Profile {
                meta,
                machine,
                ..Default::default()
            },
            origin: origin_ns,
            process_index: HashMap::new(),
            own_cpu: HashMap::new(),
            python_named: HashSet::new(),
            switches: SwitchBinner::default(),
            polled: HashSet::new(),
            forks: HashMap::new(),
            exec_names: HashMap::new(),
            exec_command_at: HashMap::new(),
            command_read_at: HashMap::new(),
            last_poll_t: 0,
            baselines: HashMap::new(),
            exited: HashSet::new(),
            total_points: 0,
            point_spacing: 0,
            last_python: HashMap::new(),
        }
    }

    /// Converts a monotonic time to recording time.
    pub fn rel(&self, t: u64) -> Ns {
        t.saturating_sub(self.origin)
    }

    /// Recording time of the latest poll.
    pub fn last_poll(&self) -> Ns {
        self.last_poll_t
    }

    /// The profile so far (e.g. for a live status line).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Takes one event into the profile.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::ProcessStart {
                t,
                pid,
                ppid,
                command,
                exe,
            } => {
                let t = self.rel(t);
                self.polled.insert(pid);
                if !command.is_empty() {
                    self.command_read_at.insert(pid, t);
                }
                let p = self.process_mut(pid, t);
                p.ppid = ppid;
                if !command.is_empty() {
                    p.command = command;
                }
                if exe.is_some() {
                    p.exe = exe;
                }
            }
            Event::ProcessInfo {
                pid,
                command,
                exe,
                libraries,
                env,
                rss_kb,
                cpu,
            } => {
                // Sent after the poll's thread points: read at the latest poll.
                let command = command.filter(|c| !c.is_empty());
                if command.is_some() {
                    self.command_read_at.insert(pid, self.last_poll_t);
                }
                let p = self.process_mut(pid, 0);
                if let Some(c) = command {
                    p.command = c;
                }
                if exe.is_some() {
                    p.exe = exe;
                }
                if !libraries.is_empty() {
                    p.libraries = libraries;
                }
                if !env.is_empty() {
                    p.env = env;
                }
                p.max_rss_kb = p.max_rss_kb.max(rss_kb);
                if let Some(c) = cpu {
                    self.raise_own_cpu(pid, c);
                }
            }
            Event::ProcessEnd { t, pid, cpu } => {
                let t = self.rel(t);
                let p = self.process_mut(pid, t);
                p.end_ns.get_or_insert(t);
                for th in &mut p.threads {
                    th.end_ns.get_or_insert(t);
                }
                if let Some(c) = cpu {
                    self.raise_own_cpu(pid, c);
                }
            }
            Event::ThreadPoint {
                pid,
                tid,
                name,
                mut point,
            } => {
                point.t = self.rel(point.t);
                self.last_poll_t = self.last_poll_t.max(point.t);
                self.polled.insert(pid);
                let python_named = self.python_named.contains(&(pid, tid));
                let spacing = self.point_spacing;
                let th = self.thread_mut(pid, tid, point.t);
                if !name.is_empty() && !python_named {
                    th.name = name;
                }
                // Counters never go backwards (a torn read must not undo CPU).
                if let Some(last) = th.points.last() {
                    point.cpu_ns = point.cpu_ns.max(last.cpu_ns);
                    point.runq_ns = point.runq_ns.max(last.runq_ns);
                    point.user_ns = point.user_ns.max(last.user_ns);
                    point.sys_ns = point.sys_ns.max(last.sys_ns);
                    point.vcsw = point.vcsw.max(last.vcsw);
                    point.ivcsw = point.ivcsw.max(last.ivcsw);
                    point.t = point.t.max(last.t);
                }
                th.cpu_ns = point.cpu_ns;
                th.runq_ns = point.runq_ns;
                th.user_ns = point.user_ns;
                th.sys_ns = point.sys_ns;
                th.vcsw = point.vcsw;
                th.ivcsw = point.ivcsw;
                let n = th.points.len();
                // Coarser than the polls once the budget was reached: the last point moves
                // forward (the counters are cumulative, so nothing is lost but resolution).
                let pushed = if n >= 2 && point.t.saturating_sub(th.points[n - 2].t) < spacing {
                    th.points[n - 1] = point;
                    false
                } else {
                    th.points.push(point);
                    true
                };
                if pushed {
                    self.total_points += 1;
                    if self.total_points > POINT_BUDGET {
                        self.coarsen_points();
                    }
                }
            }
            Event::ThreadEnd { t, pid, tid } => {
                let t = self.rel(t);
                let th = self.thread_mut(pid, tid, t);
                th.end_ns.get_or_insert(t);
            }
            Event::Sample {
                t,
                pid,
                tid,
                frames,
            } => {
                let t = self.rel(t);
                self.thread_mut(pid, tid, t);
                let ids: Vec<_> = frames
                    .into_iter()
                    .map(|f| self.profile.stacks.intern_frame_ref(&f))
                    .collect();
                let stack = self.profile.stacks.intern_stack(&ids);
                self.profile.samples.push(Sample { t, pid, tid, stack });
            }
            Event::PythonSample {
                t,
                pid,
                tid,
                thread_name,
                frames,
                owns_gil,
                active,
            } => {
                let t = self.rel(t);
                let th = self.thread_mut(pid, tid, t);
                if let Some(n) = thread_name.filter(|n| !n.is_empty()) {
                    th.name = n;
                    self.python_named.insert((pid, tid));
                }
                let ids: Vec<_> = frames
                    .into_iter()
                    .map(|f| self.profile.stacks.intern_frame_ref(&f))
                    .collect();
                let stack = self.profile.stacks.intern_stack(&ids);
                // A thread that waits with the same stack says nothing new 100 times a
                // second: one sample per IDLE_SAMPLE_NS is kept (a server's thousand idle
                // threads would otherwise grow the profile without bound).
                let last = self.last_python.get(&(pid, tid)).copied();
                let repeat = last.filter(|&(lt, ls, la, _)| {
                    !active && !la && ls == stack && t.saturating_sub(lt) < IDLE_SAMPLE_NS
                });
                match repeat {
                    Some((_, _, _, i)) => {
                        let kept = &mut self.profile.python_samples[i];
                        kept.repeats = kept.repeats.saturating_add(1);
                    }
                    None => {
                        let i = self.profile.python_samples.len();
                        self.last_python.insert((pid, tid), (t, stack, active, i));
                        self.profile.python_samples.push(PythonSample {
                            t,
                            pid,
                            tid,
                            stack,
                            owns_gil,
                            active,
                            repeats: 1,
                        });
                    }
                }
            }
            Event::Switches(batch) => {
                for mut s in batch {
                    s.t = self.rel(s.t);
                    self.switches.push(s);
                }
            }
            Event::Batch(events) => {
                for e in events {
                    self.handle(e);
                }
            }
            // Kept aside: they only name the processes no poll saw, when the recording ends.
            Event::Forked {
                pid,
                ppid,
                parent_tid,
                ..
            } => {
                self.forks.insert(pid, (ppid, parent_tid));
            }
            Event::Exec {
                t,
                pid,
                comm,
                command,
                exe,
            } => {
                let t = self.rel(t);
                // A perf record names the program only; the exit accounting's record has its
                // command line (and comes first): merge the two.
                let e = self.exec_names.entry(pid).or_default();
                if !comm.is_empty() {
                    e.0 = comm;
                }
                if !command.is_empty() {
                    e.1 = command;
                }
                self.exec_command_at.insert(pid, t);
                if exe.is_some() {
                    e.2 = exe;
                }
            }
            Event::TaskExit {
                pid,
                tid,
                ppid,
                name,
                start_t,
                point,
            } => self.task_exit(pid, tid, ppid, name, start_t, point),
            Event::ThreadBaseline { pid, tid, base } => {
                self.baselines.insert((pid, tid), base);
            }
            Event::ThreadExited { t, pid, tid } => {
                // The kernel's exit notification, when it serves, knows better.
                if self.profile.meta.exit_accounting == ExitAccounting::PerfSwitches {
                    let t = self.rel(t);
                    self.exited.insert((pid, tid));
                    self.thread_mut(pid, tid, t).end_ns = Some(t);
                }
            }
            Event::ExitAccounting(source) => self.profile.meta.exit_accounting = source,
            Event::Lost(n) => self.profile.meta.lost_samples += n,
            Event::Notice(n) => {
                if !self.profile.notices.contains(&n) {
                    self.profile.notices.push(n);
                }
            }
            Event::Machine(m) => self.profile.machine = m,
            Event::TreeRusage(r) => self.profile.meta.tree_rusage = Some(r),
            Event::Exit { code, signal } => {
                self.profile.meta.exit_code = code;
                self.profile.meta.signal = signal;
            }
        }
    }

    /// Drops what happened before recording time `t` that no [`Profile::window`] starting at
    /// or after `t` needs: processes and threads that ended before it, their bookkeeping, every
    /// thread's polls before it but the last one (the next window's baseline), and samples
    /// before it. A recording that never ends (`cpuprof top`, `cpuprof agent`) calls it as its
    /// window slides, so its memory follows what is alive, not how long it ran.
    pub fn forget_before(&mut self, t: Ns) {
        let ended = |end: Option<Ns>| end.is_some_and(|e| e < t);
        let mut dropped: HashSet<Pid> = HashSet::new();
        let mut dropped_threads: HashSet<(Pid, Tid)> = HashSet::new();
        self.profile.processes.retain_mut(|p| {
            if ended(p.end_ns) {
                dropped.insert(p.pid);
                return false;
            }
            let pid = p.pid;
            p.threads.retain(|th| {
                let keep = !ended(th.end_ns);
                if !keep {
                    dropped_threads.insert((pid, th.tid));
                }
                keep
            });
            for th in &mut p.threads {
                let keep_from = th.points.partition_point(|pt| pt.t < t).saturating_sub(1);
                th.points.drain(..keep_from);
            }
            true
        });
        self.process_index = self
            .profile
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pid, i))
            .collect();
        let gone = |pid: &Pid| dropped.contains(pid);
        let gone_thread = |k: &(Pid, Tid)| dropped.contains(&k.0) || dropped_threads.contains(k);
        self.own_cpu.retain(|k, _| !gone(k));
        self.polled.retain(|k| !gone(k));
        self.forks.retain(|k, _| !gone(k));
        self.exec_names.retain(|k, _| !gone(k));
        self.exec_command_at.retain(|k, _| !gone(k));
        self.command_read_at.retain(|k, _| !gone(k));
        self.python_named.retain(|k| !gone_thread(k));
        self.baselines.retain(|k, _| !gone_thread(k));
        self.exited.retain(|k| !gone_thread(k));
        self.profile.samples.retain(|s| s.t >= t);
        self.profile.python_samples.retain(|s| s.t >= t);
        // Its indices point into the samples just moved: the next sample of each thread
        // starts afresh.
        self.last_python.clear();
        self.total_points = self
            .profile
            .processes
            .iter()
            .map(|p| p.threads.iter().map(|th| th.points.len()).sum::<usize>())
            .sum();
        // Notices are one line per cause; a watch that runs for days keeps the latest.
        let n = self.profile.notices.len();
        if n > MAX_NOTICES {
            self.profile.notices.drain(..n - MAX_NOTICES);
        }
    }

    /// Ends the recording at monotonic time `end` and returns the profile.
    pub fn finish(mut self, end: u64) -> Profile {
        let wall = self.rel(end);
        let p = &mut self.profile;
        p.meta.wall_ns = wall;
        p.samples.sort_by_key(|s| s.t);
        p.python_samples.sort_by_key(|s| s.t);
        self.name_unpolled();
        self.close_unpolled();
        self.close_switches(wall);
        self.keep_forking_parents();
        let exact = self.profile.meta.exit_accounting.is_exact();
        let p = &mut self.profile;
        for proc in &mut p.processes {
            // With exact exits a process's row is its own threads, every one of them known:
            // the child counters (CPU of children it reaped) never move into it.
            let own = match exact {
                true => CpuTimes::default(),
                false => self.own_cpu.get(&proc.pid).copied().unwrap_or_default(),
            };
            proc.cpu = process_cpu(&proc.threads, own);
            proc.runq_ns = proc.threads.iter().map(|t| t.runq_ns).sum();
            // It started no later than any of its threads.
            if let Some(first) = proc.threads.iter().map(|t| t.start_ns).min() {
                proc.start_ns = proc.start_ns.min(first);
            }
            // A process ends when its last thread exits, not when a poll found it gone.
            let all_exited = !proc.threads.is_empty()
                && proc
                    .threads
                    .iter()
                    .all(|t| self.exited.contains(&(proc.pid, t.tid)));
            if all_exited {
                proc.end_ns = proc.threads.iter().filter_map(|t| t.end_ns).max();
            }
        }
        if exact {
            if let Some(r) = p.meta.tree_rusage {
                let rows: u64 = p.processes.iter().map(|p| p.cpu_ns()).sum();
                p.meta.exit_teardown_ns = Some(r.total_ns().saturating_sub(rows));
            }
        }
        self.profile
    }

    /// A task's final figures from the kernel's exit accounting: they set its counters (less
    /// its baseline in attach mode), its start and end, and end its series with a point at
    /// its exit; a task no poll saw is added with them.
    fn task_exit(
        &mut self,
        pid: Pid,
        tid: Tid,
        ppid: Pid,
        name: String,
        start_t: u64,
        mut point: ThreadPoint,
    ) {
        let start = self.rel(start_t);
        point.t = self.rel(point.t).max(start);
        if let Some(base) = self.baselines.get(&(pid, tid)) {
            point.cpu_ns = point.cpu_ns.saturating_sub(base.cpu_ns);
            point.runq_ns = point.runq_ns.saturating_sub(base.runq_ns);
            point.user_ns = point.user_ns.saturating_sub(base.user_ns);
            point.sys_ns = point.sys_ns.saturating_sub(base.sys_ns);
            point.vcsw = point.vcsw.saturating_sub(base.vcsw);
            point.ivcsw = point.ivcsw.saturating_sub(base.ivcsw);
        }
        self.exited.insert((pid, tid));
        let python_named = self.python_named.contains(&(pid, tid));
        let p = self.process_mut(pid, start);
        if p.ppid == 0 {
            p.ppid = ppid;
        }
        if tid == pid {
            p.start_ns = p.start_ns.min(start);
        }
        let th = self.thread_mut(pid, tid, start);
        th.start_ns = th.start_ns.min(start);
        if th.name.is_empty() && !python_named {
            th.name = name;
        }
        match th.points.last_mut() {
            // A zombie's last poll may come after its exit, with the same final counters.
            Some(last) if last.t >= point.t => {
                last.cpu_ns = last.cpu_ns.max(point.cpu_ns);
                last.runq_ns = last.runq_ns.max(point.runq_ns);
            }
            Some(last) => {
                point.cpu_ns = point.cpu_ns.max(last.cpu_ns);
                point.runq_ns = point.runq_ns.max(last.runq_ns);
                // The exit's user/system split is sampled from fewer ticks than the polls'
                // (which the kernel adjusts to the exact total): keep the polls' proportion.
                let ticks = last.user_ns + last.sys_ns;
                if ticks > 0 {
                    let split = split_like(
                        ticks.max(point.user_ns + point.sys_ns),
                        CpuTimes {
                            user_ns: last.user_ns,
                            sys_ns: last.sys_ns,
                        },
                    );
                    point.user_ns = split.user_ns.max(last.user_ns);
                    point.sys_ns = split.sys_ns.max(last.sys_ns);
                }
                th.points.push(point);
            }
            None => {
                // Its whole life in one step: from nothing at its start to all at its exit.
                th.points.push(ThreadPoint {
                    t: th.start_ns,
                    state: point.state,
                    ..Default::default()
                });
                th.points.push(point);
            }
        }
        let last = *th.points.last().unwrap_or(&point);
        th.cpu_ns = last.cpu_ns;
        th.runq_ns = last.runq_ns;
        th.user_ns = last.user_ns;
        th.sys_ns = last.sys_ns;
        th.vcsw = th.vcsw.max(point.vcsw);
        th.ivcsw = th.ivcsw.max(point.ivcsw);
        th.end_ns = Some(point.t);
    }

    /// Halves the resolution of every thread's series: the spacing doubles (from the poll
    /// interval at first) and each series keeps its first and last point and those at least
    /// that far apart.
    fn coarsen_points(&mut self) {
        let interval = self.profile.meta.interval_ns.max(1_000_000);
        self.point_spacing = (self.point_spacing * 2).max(interval * 2);
        let spacing = self.point_spacing;
        let mut total = 0;
        for p in &mut self.profile.processes {
            for th in &mut p.threads {
                let n = th.points.len();
                if n > 2 {
                    let last = th.points[n - 1];
                    let mut kept: Vec<ThreadPoint> = Vec::with_capacity(n / 2 + 2);
                    for &pt in &th.points[..n - 1] {
                        match kept.last() {
                            Some(k) if pt.t.saturating_sub(k.t) < spacing => {}
                            _ => kept.push(pt),
                        }
                    }
                    kept.push(last);
                    th.points = kept;
                }
                total += th.points.len();
            }
        }
        self.total_points = total;
    }

    /// Names the processes seen only in perf records (they lived shorter than one poll): the
    /// program they exec'd, else their parent's program, which a forked child runs until it
    /// execs; their threads take the name of the parent thread that forked.
    fn name_unpolled(&mut self) {
        for i in 0..self.profile.processes.len() {
            let p = &self.profile.processes[i];
            let pid = p.pid;
            // A command line read at an exec after the last poll that read one is newer: the
            // poll caught a forked child before its exec (it then ran its parent's program),
            // or mid-exec (an empty command line).
            let exec_at = self.exec_command_at.get(&pid);
            let newer = exec_at.is_some_and(|&e| {
                p.command.is_empty() || self.command_read_at.get(&pid).is_none_or(|&r| e >= r)
            });
            if !p.command.is_empty() && !newer {
                continue;
            }
            let polled = self.polled.contains(&pid);
            if let Some((comm, command, exe)) =
                self.exec_names.get(&pid).filter(|_| newer && polled)
            {
                // Without a command line read at the exec, the program's name is still
                // truer than the parent's command a poll read before it.
                let command = match command.is_empty() {
                    true if !comm.is_empty() => vec![comm.clone()],
                    true => continue,
                    false => command.clone(),
                };
                let p = &mut self.profile.processes[i];
                p.command = command;
                p.exe = p.exe.take().or_else(|| exe.clone());
                continue;
            }
            if self.polled.contains(&pid) || p.exe.is_some() {
                continue;
            }
            let named = match self.exec_names.get(&pid) {
                Some((comm, command, exe)) if !command.is_empty() => {
                    Some((command.clone(), exe.clone(), comm.clone()))
                }
                Some((comm, _, exe)) => Some((vec![comm.clone()], exe.clone(), comm.clone())),
                None => self.named_ancestor(pid),
            };
            let Some((command, exe, thread_name)) = named else {
                continue;
            };
            let parent = self.forks.get(&pid).map(|&(ppid, _)| ppid);
            let p = &mut self.profile.processes[i];
            if p.ppid == 0 {
                p.ppid = parent.unwrap_or(0);
            }
            p.command = command;
            p.exe = exe;
            for th in p.threads.iter_mut().filter(|t| t.name.is_empty()) {
                th.name = thread_name.clone();
            }
        }
    }

    /// An orphan's parent is the process of the tree that forked it, not the init process
    /// or subreaper it was handed to when that parent exited.
    fn keep_forking_parents(&mut self) {
        for i in 0..self.profile.processes.len() {
            let p = &self.profile.processes[i];
            let Some(&(forker, _)) = self.forks.get(&p.pid) else {
                continue;
            };
            if p.ppid != forker && !self.process_index.contains_key(&p.ppid) {
                self.profile.processes[i].ppid = forker;
            }
        }
    }

    /// The command, executable and forking thread's name of `pid`'s nearest ancestor that has
    /// a name, through the fork records (a chain of short-lived forks).
    fn named_ancestor(&self, pid: Pid) -> Option<(Vec<String>, Option<String>, String)> {
        let mut at = pid;
        // Bounded: fork records of reused pids could form a cycle.
        for _ in 0..64 {
            let &(ppid, ptid) = self.forks.get(&at)?;
            let parent = self
                .process_index
                .get(&ppid)
                .map(|&j| &self.profile.processes[j]);
            if let Some(pp) = parent.filter(|pp| !pp.command.is_empty() || pp.exe.is_some()) {
                let thread = pp.thread(ptid).map(|t| t.name.clone()).unwrap_or_default();
                return Some((pp.command.clone(), pp.exe.clone(), thread));
            }
            at = ppid;
        }
        None
    }

    /// A process seen only in perf records (it lived shorter than one poll; its CPU is in its
    /// parent's child counters) ends with its last sample, not with the recording.
    fn close_unpolled(&mut self) {
        let mut last: HashMap<Pid, Ns> = HashMap::new();
        for s in &self.profile.samples {
            let t = last.entry(s.pid).or_default();
            *t = (*t).max(s.t);
        }
        for p in &mut self.profile.processes {
            if self.polled.contains(&p.pid) || p.end_ns.is_some() {
                continue;
            }
            let end = last
                .get(&p.pid)
                .copied()
                .unwrap_or(p.start_ns)
                .max(p.start_ns);
            p.end_ns = Some(end);
            for th in &mut p.threads {
                th.end_ns.get_or_insert(end.max(th.start_ns));
            }
        }
    }

    /// Stores the context-switch bins in the threads.
    fn close_switches(&mut self, wall: Ns) {
        let binner = std::mem::take(&mut self.switches);
        let profile = &self.profile;
        let index = &self.process_index;
        let (bin_ns, closed) = binner.finish(wall, |pid, tid| {
            let th = profile.processes.get(*index.get(&pid)?)?.thread(tid)?;
            let cpu = (!th.points.is_empty()).then_some(th.cpu_ns);
            Some((th.start_ns, th.end_ns, cpu))
        });
        self.profile.meta.sched_bin_ns = bin_ns;
        let from_switches = self.profile.meta.exit_accounting == ExitAccounting::PerfSwitches;
        for c in closed {
            let exited = self.exited.contains(&(c.pid, c.tid));
            let th = self.thread_mut(c.pid, c.tid, c.first_t);
            th.preemptions = c.bins.iter().map(|b| u64::from(b.preemptions)).sum();
            th.blocks = c.bins.iter().map(|b| u64::from(b.blocks)).sum();
            if from_switches && exited {
                // Its first switch-in is its start (a sample names it only 4 ms later).
                th.start_ns = th.start_ns.min(c.first_t);
                close_from_switches(th, &c.bins, bin_ns, c.recorded_running_ns);
            }
            th.sched = c.bins;
        }
    }

    fn raise_own_cpu(&mut self, pid: Pid, c: CpuTimes) {
        let own = self.own_cpu.entry(pid).or_default();
        if c.total_ns() >= own.total_ns() {
            *own = c;
        }
    }

    fn process_mut(&mut self, pid: Pid, t: Ns) -> &mut Process {
        let idx = match self.process_index.get(&pid) {
            Some(&i) => i,
            None => {
                let i = self.profile.processes.len();
                self.profile.processes.push(Process {
                    pid,
                    start_ns: t,
                    ..Default::default()
                });
                self.process_index.insert(pid, i);
                i
            }
        };
        &mut self.profile.processes[idx]
    }

    fn thread_mut(&mut self, pid: Pid, tid: Tid, t: Ns) -> &mut Thread {
        let p = self.process_mut(pid, t);
        let idx = match p.threads.iter().position(|th| th.tid == tid) {
            Some(i) => i,
            None => {
                p.threads.push(Thread {
                    tid,
                    start_ns: t,
                    ..Default::default()
                });
                p.threads.len() - 1
            }
        };
        &mut p.threads[idx]
    }
}

/// An ended thread's final figures from its on-CPU intervals (perf's switch records, its
/// last switch-out included): its last poll's counters plus what the records show after that
/// poll, or all of it if no poll saw it. Only the tail comes from the records: on a virtual
/// machine an on-CPU interval also holds time the host took (steal) and interrupts, which the
/// kernel's CPU counters leave out (measured here: 1 ms per second of CPU on a quiet machine,
/// 50 ms under load).
///
/// A thread no poll saw takes only its recorded intervals (`recorded`): its first switch-in
/// can be missed (a fork record read one drain after its child's first switch), and the bins'
/// estimate for the time before a first switch-out would then count from too early.
fn close_from_switches(
    th: &mut Thread,
    bins: &[crate::sched::SchedBin],
    bin_ns: u64,
    recorded: u64,
) {
    let last = th.points.last().copied();
    let since = last.map_or(0, |p| p.t);
    // The share of each bin after `since` (a bin's time is taken as spread evenly over it).
    let after = |us: u32, bin: u32| -> u64 {
        let (b0, b1) = (u64::from(bin) * bin_ns, (u64::from(bin) + 1) * bin_ns);
        let ns = u64::from(us) * 1000;
        if b0 >= since || last.is_none() {
            ns
        } else if b1 <= since {
            0
        } else {
            (u128::from(ns) * u128::from(b1 - since) / u128::from(bin_ns.max(1))) as u64
        }
    };
    let running: u64 = match last {
        None => recorded,
        Some(_) => bins.iter().map(|b| after(b.running_us, b.bin)).sum(),
    };
    let waiting: u64 = bins.iter().map(|b| after(b.waiting_us, b.bin)).sum();
    let end = th.end_ns.unwrap_or(th.start_ns);
    if running == 0 && waiting == 0 {
        return;
    }
    if last.is_none() {
        th.points.push(ThreadPoint {
            t: th.start_ns,
            ..Default::default()
        });
    }
    let last = last.unwrap_or_default();
    let cpu = last.cpu_ns + running;
    let ticks = last.user_ns + last.sys_ns;
    let split = match ticks {
        0 => CpuTimes {
            user_ns: cpu,
            sys_ns: 0,
        },
        _ => split_like(
            cpu,
            CpuTimes {
                user_ns: last.user_ns,
                sys_ns: last.sys_ns,
            },
        ),
    };
    let point = ThreadPoint {
        t: end.max(last.t),
        cpu_ns: cpu,
        runq_ns: last.runq_ns + waiting,
        user_ns: split.user_ns.max(last.user_ns),
        sys_ns: split.sys_ns.max(last.sys_ns),
        state: crate::profile::RunState::Dead,
        vcsw: last.vcsw,
        ivcsw: last.ivcsw,
    };
    th.cpu_ns = point.cpu_ns;
    th.runq_ns = point.runq_ns;
    th.user_ns = point.user_ns;
    th.sys_ns = point.sys_ns;
    th.points.push(point);
}

/// A process's CPU: the larger of the sum of its threads (precise, `schedstat`) and its own
/// counters (which include threads that ended between two polls), split into user and system
/// in the proportion the tick counters give.
fn process_cpu(threads: &[Thread], own: CpuTimes) -> CpuTimes {
    let sum_cpu: u64 = threads.iter().map(|t| t.cpu_ns).sum();
    let ticks = CpuTimes {
        user_ns: threads.iter().map(|t| t.user_ns).sum(),
        sys_ns: threads.iter().map(|t| t.sys_ns).sum(),
    };
    let (total, split) = if own.total_ns() > sum_cpu {
        (own.total_ns(), own)
    } else {
        (sum_cpu, ticks)
    };
    split_like(total, split)
}

/// `total` split into user and system in the proportion of `split`.
pub(crate) fn split_like(total: u64, split: CpuTimes) -> CpuTimes {
    let parts = split.total_ns();
    if parts == 0 {
        return CpuTimes {
            user_ns: total,
            sys_ns: 0,
        };
    }
    let user = (u128::from(total) * u128::from(split.user_ns) / u128::from(parts)) as u64;
    CpuTimes {
        user_ns: user,
        sys_ns: total - user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ThreadPoint;
    use crate::stacks::{Frame, FrameKind};
    use std::sync::Arc;

    fn point(t: u64, cpu: u64, user: u64, sys: u64) -> ThreadPoint {
        ThreadPoint {
            t,
            cpu_ns: cpu,
            user_ns: user,
            sys_ns: sys,
            ..Default::default()
        }
    }

    fn builder() -> ProfileBuilder {
        ProfileBuilder::new(Meta::new(vec!["x".into()]), Machine::default(), 1000)
    }

    #[test]
    fn counters_never_go_backwards_and_times_are_relative() {
        let mut b = builder();
        b.handle(Event::ThreadPoint {
            pid: 1,
            tid: 1,
            name: "a".into(),
            point: point(2000, 500, 0, 0),
        });
        b.handle(Event::ThreadPoint {
            pid: 1,
            tid: 1,
            name: "a".into(),
            point: point(3000, 400, 0, 0),
        });
        let p = b.finish(5000);
        let th = &p.processes[0].threads[0];
        assert_eq!(
            th.points
                .iter()
                .map(|p| (p.t, p.cpu_ns))
                .collect::<Vec<_>>(),
            vec![(1000, 500), (2000, 500)]
        );
        assert_eq!(p.meta.wall_ns, 4000);
        assert_eq!(th.start_ns, 1000);
    }

    #[test]
    fn process_cpu_includes_threads_that_ended_unseen() {
        let mut b = builder();
        b.handle(Event::ThreadPoint {
            pid: 1,
            tid: 1,
            name: "a".into(),
            point: point(2000, 100, 80, 20),
        });
        // The process's own counters saw 300 ns (a thread came and went between polls).
        b.handle(Event::ProcessEnd {
            t: 4000,
            pid: 1,
            cpu: Some(CpuTimes {
                user_ns: 150,
                sys_ns: 150,
            }),
        });
        let p = b.finish(5000);
        assert_eq!(
            p.processes[0].cpu,
            CpuTimes {
                user_ns: 150,
                sys_ns: 150
            }
        );
        assert_eq!(p.processes[0].threads[0].end_ns, Some(3000));
    }

    #[test]
    fn process_cpu_is_the_precise_thread_sum_when_larger() {
        let mut b = builder();
        b.handle(Event::ThreadPoint {
            pid: 1,
            tid: 1,
            name: "a".into(),
            point: point(2000, 1000, 30, 10),
        });
        b.handle(Event::ProcessInfo {
            pid: 1,
            command: None,
            exe: None,
            libraries: vec![],
            env: Default::default(),
            rss_kb: 5,
            cpu: Some(CpuTimes {
                user_ns: 40,
                sys_ns: 0,
            }),
        });
        let p = b.finish(5000);
        assert_eq!(
            p.processes[0].cpu,
            CpuTimes {
                user_ns: 750,
                sys_ns: 250
            }
        );
        assert_eq!(p.cpu().total_ns(), 1000);
    }

    #[test]
    fn python_thread_names_win_over_comm() {
        let mut b = builder();
        let poll = |b: &mut ProfileBuilder, t| {
            b.handle(Event::ThreadPoint {
                pid: 1,
                tid: 2,
                name: "python".into(),
                point: point(t, 0, 0, 0),
            })
        };
        poll(&mut b, 2000);
        b.handle(Event::PythonSample {
            t: 2500,
            pid: 1,
            tid: 2,
            thread_name: Some("loader".into()),
            frames: vec![],
            owns_gil: false,
            active: false,
        });
        poll(&mut b, 3000);
        assert_eq!(b.finish(4000).processes[0].threads[0].name, "loader");
    }

    #[test]
    fn samples_are_interned_sorted_and_attached_to_threads() {
        let mut b = builder();
        let f = |n: &str| {
            Arc::new(Frame {
                kind: FrameKind::Native,
                name: n.into(),
                module: None,
                line: None,
                short_file: None,
            })
        };
        b.handle(Event::Sample {
            t: 3000,
            pid: 2,
            tid: 3,
            frames: vec![f("main"), f("work")],
        });
        b.handle(Event::Sample {
            t: 2000,
            pid: 2,
            tid: 3,
            frames: vec![f("main"), f("idle")],
        });
        let p = b.finish(5000);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.samples[0].t, 1000);
        assert_eq!(
            p.stacks.leaf(p.samples[0].stack.unwrap()).unwrap().name,
            "idle"
        );
        assert_eq!(p.stacks.frames.len(), 3);
        assert_eq!(p.processes[0].threads[0].tid, 3);
    }

    #[test]
    fn processes_no_poll_saw_are_named_from_fork_and_exec_records() {
        let mut b = builder();
        b.handle(Event::ProcessStart {
            t: 1500,
            pid: 10,
            ppid: 1,
            command: vec!["/usr/bin/make".into(), "-j2".into()],
            exe: Some("/usr/bin/make".into()),
        });
        b.handle(Event::ThreadPoint {
            pid: 10,
            tid: 10,
            name: "make".into(),
            point: point(1500, 0, 0, 0),
        });
        // 11 forked from make and exited; 12 forked from 11 (unseen too); 13 exec'd cc1.
        for (pid, ppid) in [(11, 10), (12, 11), (13, 10)] {
            b.handle(Event::Forked {
                t: 2000,
                pid,
                ppid,
                parent_tid: ppid,
            });
        }
        b.handle(Event::Exec {
            t: 2000,
            pid: 13,
            comm: "cc1".into(),
            command: vec![],
            exe: None,
        });
        for pid in [11, 12, 13] {
            b.handle(Event::Sample {
                t: 2500,
                pid,
                tid: pid,
                frames: vec![],
            });
        }
        // Forks of processes that were never sampled add no process.
        b.handle(Event::Forked {
            t: 2000,
            pid: 14,
            ppid: 10,
            parent_tid: 10,
        });
        let p = b.finish(4000);
        let named = |pid| {
            let proc_ = p.process(pid).expect("process kept");
            (
                proc_.command.clone(),
                proc_.ppid,
                proc_.threads[0].name.clone(),
            )
        };
        let make = vec!["/usr/bin/make".to_string(), "-j2".into()];
        assert_eq!(named(11), (make.clone(), 10, "make".into()));
        assert_eq!(named(12), (make, 11, "make".into()));
        assert_eq!(named(13), (vec!["cc1".to_string()], 10, "cc1".into()));
        assert_eq!(p.process(11).unwrap().exe.as_deref(), Some("/usr/bin/make"));
        assert!(p.process(14).is_none());
    }

    fn exit(pid: Pid, tid: Tid, start: u64, end: u64, cpu: u64) -> Event {
        Event::TaskExit {
            pid,
            tid,
            ppid: 1,
            name: "burn".into(),
            start_t: start,
            point: ThreadPoint {
                t: end,
                cpu_ns: cpu,
                runq_ns: 7,
                user_ns: cpu,
                ..Default::default()
            },
        }
    }

    #[test]
    fn exits_give_unseen_tasks_their_own_row_and_polled_ones_their_last_interval() {
        let mut b = builder();
        b.handle(Event::ExitAccounting(ExitAccounting::Taskstats));
        // 10 was polled once at 2000 with 100 ns; it then ran to 400 ns and exited at 2600.
        b.handle(Event::ThreadPoint {
            pid: 10,
            tid: 10,
            name: "sh".into(),
            point: point(2000, 100, 80, 20),
        });
        // 10 reaped 20 (which no poll saw): its children counters must not reach 10's row.
        b.handle(Event::ProcessInfo {
            pid: 10,
            command: None,
            exe: None,
            libraries: vec![],
            env: Default::default(),
            rss_kb: 0,
            cpu: Some(CpuTimes {
                user_ns: 900,
                sys_ns: 0,
            }),
        });
        b.handle(exit(20, 20, 2100, 2300, 500));
        b.handle(exit(10, 10, 1000, 2600, 400));
        // The poll that finds 10 gone comes later.
        b.handle(Event::ThreadEnd {
            t: 3000,
            pid: 10,
            tid: 10,
        });
        b.handle(Event::TreeRusage(CpuTimes {
            user_ns: 950,
            sys_ns: 0,
        }));
        let p = b.finish(4000);
        let sh = p.process(10).unwrap();
        assert_eq!(sh.cpu_ns(), 400);
        assert_eq!(sh.threads[0].end_ns, Some(1600));
        assert_eq!(sh.end_ns, Some(1600));
        assert_eq!(sh.threads[0].points.last().unwrap().cpu_ns, 400);
        let child = p.process(20).unwrap();
        assert_eq!((child.start_ns, child.end_ns), (1100, Some(1300)));
        assert_eq!((child.cpu_ns(), child.runq_ns), (500, 7));
        assert_eq!(child.threads[0].name, "burn");
        // Its series goes from nothing at its start to all at its exit.
        let pts: Vec<_> = child.threads[0]
            .points
            .iter()
            .map(|p| (p.t, p.cpu_ns))
            .collect();
        assert_eq!(pts, vec![(1100, 0), (1300, 500)]);
        // The tree's total is the kernel's: rows 900, 50 ns of exit teardown.
        assert_eq!(p.meta.exit_teardown_ns, Some(50));
        assert_eq!(p.cpu().total_ns(), 950);
    }

    #[test]
    fn an_attached_threads_exit_counts_from_its_baseline() {
        let mut b = builder();
        b.handle(Event::ExitAccounting(ExitAccounting::Taskstats));
        b.handle(Event::ThreadBaseline {
            pid: 5,
            tid: 6,
            base: point(1000, 10_000, 0, 0),
        });
        b.handle(Event::ThreadPoint {
            pid: 5,
            tid: 6,
            name: "w".into(),
            point: point(1000, 0, 0, 0),
        });
        b.handle(exit(5, 6, 0, 2000, 10_300));
        let p = b.finish(3000);
        let th = &p.process(5).unwrap().threads[0];
        assert_eq!(th.cpu_ns, 300);
        // Started before the recording: the start stays at the first poll's 0.
        assert_eq!((th.start_ns, th.end_ns), (0, Some(1000)));
    }

    #[test]
    fn an_orphan_keeps_the_parent_that_forked_it() {
        let mut b = builder();
        b.handle(Event::Forked {
            t: 1500,
            pid: 30,
            ppid: 20,
            parent_tid: 20,
        });
        b.handle(Event::ThreadPoint {
            pid: 20,
            tid: 20,
            name: "p".into(),
            point: point(1500, 0, 0, 0),
        });
        b.handle(Event::ProcessStart {
            t: 2000,
            pid: 30,
            ppid: 1,
            command: vec!["orphan".into()],
            exe: None,
        });
        assert_eq!(b.finish(3000).process(30).unwrap().ppid, 20);
    }

    #[test]
    fn an_exec_after_the_poll_that_read_a_command_line_gives_the_newer_one() {
        let mut b = builder();
        let sh = vec!["sh".to_string(), "-c".into(), "loop".into()];
        // A poll at 2000 caught 20 just forked, still running its parent's program.
        b.handle(Event::ProcessStart {
            t: 2000,
            pid: 20,
            ppid: 10,
            command: sh.clone(),
            exe: None,
        });
        b.handle(Event::Exec {
            t: 2100,
            pid: 20,
            comm: String::new(),
            command: vec!["./burn".into(), "1".into()],
            exe: None,
        });
        // 30 exec'd at 1500, and a poll at 2000 read what it runs now (it set its title).
        b.handle(Event::Exec {
            t: 1500,
            pid: 30,
            comm: String::new(),
            command: vec!["worker".into()],
            exe: None,
        });
        b.handle(Event::ProcessStart {
            t: 2000,
            pid: 30,
            ppid: 10,
            command: vec!["worker: idle".into()],
            exe: None,
        });
        let p = b.finish(3000);
        assert_eq!(p.process(20).unwrap().command, vec!["./burn", "1"]);
        assert_eq!(p.process(30).unwrap().command, vec!["worker: idle"]);
    }

    #[test]
    fn thread_series_coarsen_within_the_point_budget_and_keep_their_totals() {
        let mut meta = Meta::new(vec!["x".into()]);
        meta.interval_ns = 50_000_000;
        let mut b = ProfileBuilder::new(meta, Machine::default(), 0);
        let threads = 400u32;
        let polls = (POINT_BUDGET as u64 / u64::from(threads)) * 3;
        for i in 1..=polls {
            let t = i * 50_000_000;
            for tid in 1..=threads {
                b.handle(Event::ThreadPoint {
                    pid: 1,
                    tid,
                    name: "w".into(),
                    point: point(t, i * 1000 + u64::from(tid), 0, 0),
                });
            }
        }
        let p = b.finish(polls * 50_000_000 + 1);
        let total: usize = p.processes[0].threads.iter().map(|t| t.points.len()).sum();
        assert!(total <= POINT_BUDGET, "{total} points kept");
        assert!(total >= POINT_BUDGET / 4, "only {total} points kept");
        for th in &p.processes[0].threads {
            // The first poll and the last counters stay exact.
            assert_eq!(th.points[0].t, 50_000_000);
            let last = th.points.last().unwrap();
            assert_eq!(last.cpu_ns, polls * 1000 + u64::from(th.tid));
            assert_eq!(th.cpu_ns, last.cpu_ns);
            assert!(th.points.windows(2).all(|w| w[0].t < w[1].t));
        }
    }

    #[test]
    fn a_waiting_python_thread_keeps_one_sample_a_second_that_counts_its_reads() {
        let mut b = builder();
        let f = |n: &str| {
            Arc::new(Frame {
                kind: FrameKind::Python,
                name: n.into(),
                module: Some("/x.py".into()),
                line: Some(1),
                short_file: None,
            })
        };
        let sample = |t: u64, name: &str, active: bool| Event::PythonSample {
            t,
            pid: 1,
            tid: 2,
            thread_name: None,
            frames: vec![f(name)],
            owns_gil: false,
            active,
        };
        // 2.5 s of reads at 100 Hz waiting in `wait`, then one running `work`.
        for i in 0..250u64 {
            b.handle(sample(1000 + i * 10_000_000, "wait", false));
        }
        b.handle(sample(2_600_000_000, "work", true));
        b.handle(sample(2_610_000_000, "work", true));
        let p = b.finish(3_000_000_000);
        let kept: Vec<(bool, u32)> = p
            .python_samples
            .iter()
            .map(|s| (s.active, s.repeats))
            .collect();
        assert_eq!(
            kept,
            vec![
                (false, 100),
                (false, 100),
                (false, 50),
                (true, 1),
                (true, 1)
            ]
        );
        assert_eq!(p.python_samples.iter().map(|s| s.repeats).sum::<u32>(), 252);
    }
}
