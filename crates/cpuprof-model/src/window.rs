//! A time window of a profile: what a live view (`cpuprof top`, `cpuprof agent`) analyses.
//!
//! [`Profile::window`] cuts the last seconds out of a recording in progress as a profile of
//! their own: times start at the window's start, every thread's counters count from its last
//! poll before it (the baseline), processes and threads are those alive in it. So the same
//! analysis, with the same rules and constants, reads a window as it reads a whole recording.
//! [`ProfileBuilder::forget_before`](crate::ProfileBuilder::forget_before) drops what no
//! window will need again, so a recording that never ends stays bounded.

use crate::profile::{CpuTimes, Process, Profile, Thread, ThreadPoint};
use crate::Ns;

impl Profile {
    /// The part of the profile in `(from, to]` (recording times), as a profile whose times
    /// are relative to `from` and whose wall time is `to - from`.
    pub fn window(&self, from: Ns, to: Ns) -> Profile {
        let to = to.max(from);
        let mut meta = self.meta.clone();
        meta.wall_ns = to - from;
        meta.clock_origin_ns = meta.clock_origin_ns.saturating_add(from);
        meta.start_unix_ms = meta.start_unix_ms.saturating_add(from / 1_000_000);
        meta.tree_rusage = None;
        meta.exit_teardown_ns = None;
        meta.exit_code = None;
        meta.signal = None;
        let bin_ns = meta.sched_bin_ns;
        let processes = self
            .processes
            .iter()
            .filter(|p| alive(p.start_ns, p.end_ns, from, to))
            .map(|p| window_process(p, from, to, bin_ns))
            .collect();
        let samples = in_window(&self.samples, from, to, |s| &mut s.t);
        let python_samples = in_window(&self.python_samples, from, to, |s| &mut s.t);
        Profile {
            meta,
            machine: self.machine.clone(),
            processes,
            stacks: self.stacks.clone(),
            samples,
            python_samples,
            notices: self.notices.clone(),
        }
    }
}

/// The samples at times in `(from, to]`, their times made relative to `from`.
fn in_window<S: Copy>(samples: &[S], from: Ns, to: Ns, t: impl Fn(&mut S) -> &mut Ns) -> Vec<S> {
    samples
        .iter()
        .filter_map(|s| {
            let mut s = *s;
            let at = t(&mut s);
            if *at <= from || *at > to {
                return None;
            }
            *at -= from;
            Some(s)
        })
        .collect()
}

fn alive(start: Ns, end: Option<Ns>, from: Ns, to: Ns) -> bool {
    start <= to && end.is_none_or(|e| e > from)
}

fn window_process(p: &Process, from: Ns, to: Ns, bin_ns: u64) -> Process {
    let threads: Vec<Thread> = p
        .threads
        .iter()
        .filter(|t| alive(t.start_ns, t.end_ns, from, to))
        .map(|t| window_thread(t, from, to, bin_ns))
        .collect();
    let cpu_ns: u64 = threads.iter().map(|t| t.cpu_ns).sum();
    let ticks = CpuTimes {
        user_ns: threads.iter().map(|t| t.user_ns).sum(),
        sys_ns: threads.iter().map(|t| t.sys_ns).sum(),
    };
    Process {
        pid: p.pid,
        ppid: p.ppid,
        command: p.command.clone(),
        exe: p.exe.clone(),
        start_ns: p.start_ns.saturating_sub(from),
        end_ns: p.end_ns.map(|e| e.min(to) - from.min(e)),
        max_rss_kb: p.max_rss_kb,
        libraries: p.libraries.clone(),
        env: p.env.clone(),
        cpu: crate::builder::split_like(cpu_ns, ticks),
        runq_ns: threads.iter().map(|t| t.runq_ns).sum(),
        threads,
    }
}

fn window_thread(t: &Thread, from: Ns, to: Ns, bin_ns: u64) -> Thread {
    // The baseline: the counters at the window's start, between the last poll at or before
    // it and the first after it in proportion of time (polls do not keep step with windows:
    // the last poll before a window that starts 1 ms before a poll is a whole interval
    // early, and its interval's CPU would count in a window that is an interval shorter).
    // None for a thread that started in the window: it counts from zero, its start.
    let split = t.points.partition_point(|p| p.t <= from);
    let base = split.checked_sub(1).map(|i| match t.points.get(split) {
        Some(next) => between(&t.points[i], next, from),
        None => t.points[i],
    });
    let rebase = |p: &ThreadPoint| {
        let b = base.unwrap_or_default();
        ThreadPoint {
            t: p.t - from,
            cpu_ns: p.cpu_ns.saturating_sub(b.cpu_ns),
            runq_ns: p.runq_ns.saturating_sub(b.runq_ns),
            user_ns: p.user_ns.saturating_sub(b.user_ns),
            sys_ns: p.sys_ns.saturating_sub(b.sys_ns),
            state: p.state,
            vcsw: p.vcsw.saturating_sub(b.vcsw),
            ivcsw: p.ivcsw.saturating_sub(b.ivcsw),
        }
    };
    let mut points: Vec<ThreadPoint> = Vec::new();
    if let Some(b) = base {
        points.push(ThreadPoint {
            t: 0,
            state: b.state,
            ..Default::default()
        });
    }
    points.extend(t.points[split..].iter().filter(|p| p.t <= to).map(rebase));
    let last = points.last().copied().unwrap_or_default();
    let first_bin = match bin_ns {
        0 => 0,
        w => (from / w) as u32,
    };
    let sched = t
        .sched
        .iter()
        .filter(|b| b.bin >= first_bin && u64::from(b.bin).saturating_mul(bin_ns) < to)
        .map(|b| {
            let mut b = *b;
            b.bin -= first_bin;
            b
        })
        .collect::<Vec<_>>();
    Thread {
        tid: t.tid,
        name: t.name.clone(),
        start_ns: t.start_ns.saturating_sub(from),
        end_ns: t.end_ns.map(|e| e.min(to) - from.min(e)),
        cpu_ns: last.cpu_ns,
        runq_ns: last.runq_ns,
        user_ns: last.user_ns,
        sys_ns: last.sys_ns,
        vcsw: last.vcsw,
        ivcsw: last.ivcsw,
        preemptions: sched.iter().map(|b| u64::from(b.preemptions)).sum(),
        blocks: sched.iter().map(|b| u64::from(b.blocks)).sum(),
        points,
        sched,
    }
}

/// The counters at time `at` (`a.t <= at < b.t`), `a`'s plus `b`'s progress in proportion.
fn between(a: &ThreadPoint, b: &ThreadPoint, at: Ns) -> ThreadPoint {
    let span = b.t.saturating_sub(a.t);
    if span == 0 {
        return *a;
    }
    let part = |x: u64, y: u64| {
        let d = u128::from(y.saturating_sub(x));
        x + (d * u128::from(at.saturating_sub(a.t)) / u128::from(span)) as u64
    };
    ThreadPoint {
        t: at,
        cpu_ns: part(a.cpu_ns, b.cpu_ns),
        runq_ns: part(a.runq_ns, b.runq_ns),
        user_ns: part(a.user_ns, b.user_ns),
        sys_ns: part(a.sys_ns, b.sys_ns),
        state: a.state,
        vcsw: part(a.vcsw, b.vcsw),
        ivcsw: part(a.ivcsw, b.ivcsw),
    }
}

#[cfg(test)]
mod tests {
    use crate::profile::{Process, Profile, Thread, ThreadPoint};

    fn pt(t: u64, cpu: u64, runq: u64) -> ThreadPoint {
        ThreadPoint {
            t,
            cpu_ns: cpu,
            runq_ns: runq,
            user_ns: cpu,
            ..Default::default()
        }
    }

    fn profile() -> Profile {
        let mut p = Profile::default();
        p.meta.wall_ns = 10_000;
        let old = Thread {
            tid: 1,
            points: vec![pt(1000, 100, 10), pt(5000, 600, 50), pt(9000, 900, 90)],
            ..Default::default()
        };
        let young = Thread {
            tid: 2,
            start_ns: 6000,
            points: vec![pt(7000, 300, 0), pt(9000, 700, 0)],
            ..Default::default()
        };
        let gone = Thread {
            tid: 3,
            end_ns: Some(2000),
            points: vec![pt(1000, 50, 0)],
            ..Default::default()
        };
        p.processes.push(Process {
            pid: 1,
            threads: vec![old, young, gone],
            ..Default::default()
        });
        p.processes.push(Process {
            pid: 9,
            end_ns: Some(3000),
            ..Default::default()
        });
        p
    }

    #[test]
    fn counters_count_from_the_last_poll_before_the_window() {
        let w = profile().window(5000, 10_000);
        assert_eq!(w.meta.wall_ns, 5000);
        assert_eq!(w.processes.len(), 1, "the process that ended before is out");
        let p = &w.processes[0];
        let tids: Vec<u32> = p.threads.iter().map(|t| t.tid).collect();
        assert_eq!(tids, [1, 2], "the thread that ended before is out");
        // 900 - 600 of the old thread; the young one counts from its start.
        assert_eq!(p.threads[0].cpu_ns, 300);
        assert_eq!(p.threads[0].runq_ns, 40);
        assert_eq!(p.threads[0].points[0].t, 0);
        assert_eq!(p.threads[0].points[1].t, 4000);
        assert_eq!(p.threads[1].cpu_ns, 700);
        assert_eq!(p.threads[1].start_ns, 1000);
        assert_eq!(p.cpu_ns(), 1000);
        assert_eq!(p.runq_ns, 40);
    }

    #[test]
    fn a_window_between_polls_counts_its_share_of_their_interval() {
        // Polls at 1000, 5000, 9000; the window starts at 4000, a quarter of the interval
        // before the 5000 poll: 475 (100 + 3/4 of 500) at its start.
        let w = profile().window(4000, 10_000);
        let t = &w.processes[0].threads[0];
        assert_eq!(t.cpu_ns, 900 - 475);
        assert_eq!(t.points[1].t, 1000);
        assert_eq!(t.points[1].cpu_ns, 600 - 475);
    }

    #[test]
    fn an_empty_window_has_no_cpu() {
        let w = profile().window(9000, 9000);
        assert_eq!(w.cpu().total_ns(), 0);
    }
}
