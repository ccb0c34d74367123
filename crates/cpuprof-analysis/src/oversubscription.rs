//! `oversubscription`: more threads wanted a core than the CPU budget has.
//!
//! Evidence, all measured: the runnable demand timeline ([`crate::demand`]) against
//! `cpu_budget()`, the run-queue wait against CPU time of the processes involved, and
//! preemptions (involuntary context switches; perf's preempted switch-outs when recorded).
//! N always-runnable threads on C cores wait about (N/C - 1) of their run time, so wait and
//! demand confirm each other.

use std::collections::BTreeMap;

use cpuprof_model::{Finding, Pid, Severity, Tid};

use crate::fixes;
use crate::roles::is_python;
use crate::spin;
use crate::Context;

/// Demand above this multiple of the budget is oversubscribed: Intel VTune calls thread
/// concurrency above 115% of the cores "Over"; below it, poll jitter and short bursts
/// (a thread waking while another finishes) are normal.
pub const OVER_FACTOR: f64 = 1.15;
/// Oversubscribed time must reach this share of the time the program was busy: a brief
/// overlap (start-up, one phase) is not the program's shape.
pub const MIN_OVER_SHARE: f64 = 0.10;
/// ...and at least this long, seconds: three 100 ms polls, below which the estimate is noise.
pub const MIN_OVER_S: f64 = 0.3;
/// Run-queue wait during the oversubscribed time must be at least this share of the CPU time:
/// at 115% demand the expected wait is 0.15 of CPU; 0.10 leaves room for rounding of polls.
pub const MIN_WAIT_PER_CPU: f64 = 0.10;
/// Demand below this (threads) is idle time, not counted as "busy".
pub const BUSY_DEMAND: f64 = 0.5;
/// A process takes part when it holds at least this share of the oversubscribed demand, and
/// of the CPU used then. A launcher whose idle pool thread yields in a loop while its
/// children compute is runnable for a while but runs next to nothing (0.001 s of CPU against
/// 0.1 s of run-queue wait, beside two workers of 0.4 s each): it is not one of the pools.
pub const PROCESS_SHARE: f64 = 0.05;
/// A thread counts in the shape when it was runnable at least this share of the
/// oversubscribed time (a pool worker spins or works; an idle helper thread does not).
pub const ACTIVE_THREAD: f64 = 0.25;
/// Error rather than warning when the wait reaches this per CPU second (1.5x the cores).
pub const ERROR_WAIT_PER_CPU: f64 = 0.5;
/// Without stacks, the share of the excess demand assumed wasted: synchronous pools
/// (barriers, spinning workers) lose about half the time a preempted partner is off-CPU.
/// Calibrated on DESIGN.md's measurement: 4 OpenBLAS threads on 2 cores used 1.4x the CPU,
/// i.e. 29% waste, against 0.5 x (1 - 2/4) = 25% from this model.
pub const NO_STACKS_WASTE: f64 = 0.5;

/// One process's share of the oversubscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The process.
    pub pid: Pid,
    /// Its pool runtime, if one is loaded.
    pub runtime: Option<&'static str>,
    /// Its threads that were runnable during the oversubscribed time.
    pub active: Vec<Tid>,
}

/// The oversubscription finding and what the other rules reuse of it.
#[derive(Debug, Clone)]
pub struct Over {
    /// The finding.
    pub finding: Finding,
    /// Oversubscribed bins of the demand timeline.
    pub bins: Vec<bool>,
    /// Processes involved.
    pub members: Vec<Member>,
    /// Estimated CPU wasted, seconds.
    pub waste_cpu_s: f64,
    /// Mean demand (threads) during the oversubscribed time.
    pub mean_demand: f64,
}

/// Checks the profile for oversubscription.
pub fn check(cx: &Context) -> Option<Over> {
    let d = &cx.demand;
    let bin_s = d.bin_ns as f64 / 1e9;
    let limit = cx.budget * OVER_FACTOR;
    let bins = d.over(limit);
    let n_over = bins.iter().filter(|b| **b).count();
    let over_s = n_over as f64 * bin_s;
    let busy_s = d.total.iter().filter(|x| **x >= BUSY_DEMAND).count() as f64 * bin_s;
    if over_s < MIN_OVER_S || over_s < MIN_OVER_SHARE * busy_s {
        return None;
    }
    let mean_demand = d
        .total
        .iter()
        .zip(&bins)
        .filter(|(_, b)| **b)
        .map(|(x, _)| x)
        .sum::<f64>()
        / n_over as f64;

    // Per process, per thread: CPU and runnable time in the oversubscribed bins.
    let mut members = Vec::new();
    let (mut total_run, mut total_cpu) = (0.0, 0.0);
    let mut per_proc: Vec<(Pid, f64, f64, Vec<Tid>)> = Vec::new();
    for p in &cx.profile.processes {
        let (mut c, mut r) = (0.0, 0.0);
        let mut active = Vec::new();
        for th in &p.threads {
            let (tc, tr) = d.thread_in(p.pid, th.tid, &bins);
            c += tc;
            r += tr;
            if tr >= ACTIVE_THREAD * over_s * 1e9 {
                active.push(th.tid);
            }
        }
        total_run += r;
        total_cpu += c;
        per_proc.push((p.pid, c, r, active));
    }
    let (mut cpu_ns, mut wait_ns) = (0.0, 0.0);
    for (pid, c, r, active) in per_proc {
        if r < PROCESS_SHARE * total_run || c < PROCESS_SHARE * total_cpu || active.is_empty() {
            continue;
        }
        cpu_ns += c;
        wait_ns += r - c;
        members.push(Member {
            pid,
            runtime: cx.pool_runtime(pid).map(|r| r.name),
            active,
        });
    }
    if members.is_empty() || wait_ns < MIN_WAIT_PER_CPU * cpu_ns {
        return None;
    }
    let wait_per_cpu = wait_ns / cpu_ns.max(1.0);
    let pids: Vec<Pid> = members.iter().map(|m| m.pid).collect();
    let tids: Vec<Tid> = members.iter().flat_map(|m| m.active.clone()).collect();

    // Preemptions of the member processes over the whole run.
    let ivcsw: u64 = cx
        .profile
        .processes
        .iter()
        .filter(|p| pids.contains(&p.pid))
        .flat_map(|p| p.threads.iter())
        .map(|t| t.ivcsw)
        .sum();
    let preempted: u64 = cx
        .profile
        .processes
        .iter()
        .filter(|p| pids.contains(&p.pid))
        .flat_map(|p| p.threads.iter())
        .map(|t| t.preemptions)
        .sum();

    // Waste: measured spinning when there are stacks, else the model. The fix shrinks the
    // pools, so all the spinning of these processes goes (CPU); only the spinning done while
    // cores were oversubscribed delayed other threads (wall).
    let sampled = cx.profile.samples.iter().any(|s| pids.contains(&s.pid));
    let bin_ns = d.bin_ns;
    let in_over = |t: u64| bins.get((t / bin_ns) as usize).copied().unwrap_or(false);
    let spin = if sampled {
        let all = spin::stats(cx, |s| pids.contains(&s.pid)).spin_s;
        let over = spin::stats(cx, |s| pids.contains(&s.pid) && in_over(s.t)).spin_s;
        Some((all, over))
    } else {
        None
    };
    let model_s = NO_STACKS_WASTE * (1.0 - cx.budget / mean_demand).max(0.0) * cpu_ns / 1e9;
    let (waste_cpu_s, waste_over_s) = spin.unwrap_or((model_s, model_s));
    // The wasted CPU would have gone to work at the rate the program actually got cores
    // (the budget on an idle machine, less when other load shared them).
    let rate = (cpu_ns / 1e9 / over_s).clamp(0.05, cx.budget);
    let wall_s = (waste_over_s / rate).min(over_s);

    let shape = shape(&members, cx.budget);
    let wall = cx.profile.meta.wall_ns as f64 / 1e9;
    let mut detail = format!(
        "{shape}. For {over_s:.1} s ({:.0}% of the run) {mean_demand:.1} threads on average \
         wanted a core on a budget of {}; they waited {:.2} s for a core against {:.2} s on CPU \
         ({wait_per_cpu:.2} s per CPU second; their own demand explains {mean_demand:.1}/{:.1} \
         - 1 = {:.2}{}). {ivcsw} involuntary context switches",
        100.0 * over_s / wall.max(over_s),
        fixes::cores(cx.budget),
        wait_ns / 1e9,
        cpu_ns / 1e9,
        cx.budget,
        mean_demand / cx.budget - 1.0,
        if wait_per_cpu > 1.5 * (mean_demand / cx.budget - 1.0) + 0.1 {
            ", the rest is other load on the machine"
        } else {
            ""
        },
    );
    if preempted > 0 {
        detail.push_str(&format!(
            ", {preempted} preempted switch-outs recorded by perf"
        ));
    }
    detail.push('.');
    match spin {
        Some((all, over)) => detail.push_str(&format!(
            " {all:.2} s of their CPU went to the runtimes' wait loops (sampled), {over:.2} s \
             of it while oversubscribed."
        )),
        None => detail.push_str(&format!(
            " No stacks: estimated waste {model_s:.2} s of CPU (model, see docs/findings.md)."
        )),
    }

    let k = fixes::threads_per_process(cx.budget, members.len());
    let python = members
        .iter()
        .any(|m| cx.profile.process(m.pid).is_some_and(is_python));
    let rt = members
        .iter()
        .filter_map(|m| m.runtime)
        .next()
        .and_then(|n| crate::runtimes::ALL.iter().find(|r| r.name == n));
    let fix = match rt {
        Some(rt) => fixes::limit_pool(rt, k, python),
        None => format!(
            "limit the program to {} runnable threads in total ({k} per process)",
            cx.budget.floor().max(1.0)
        ),
    };
    let severity = if wait_per_cpu >= ERROR_WAIT_PER_CPU && over_s >= 0.5 * busy_s {
        Severity::Error
    } else {
        Severity::Warning
    };
    let finding = Finding {
        id: "oversubscription".into(),
        severity,
        title: format!("Oversubscribed: {shape}"),
        detail,
        fix,
        est_saving_cpu_s: waste_cpu_s,
        est_saving_wall_s: wall_s,
        pids,
        tids,
    };
    Some(Over {
        finding,
        bins,
        members,
        waste_cpu_s,
        mean_demand,
    })
}

/// "2 processes × 2 OpenBLAS threads = 4 threads on 2 cores".
pub fn shape(members: &[Member], budget: f64) -> String {
    let mut groups: BTreeMap<(Option<&str>, usize), usize> = BTreeMap::new();
    for m in members {
        *groups.entry((m.runtime, m.active.len())).or_default() += 1;
    }
    let mut parts: Vec<((Option<&str>, usize), usize)> = groups.into_iter().collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then(b.0 .1.cmp(&a.0 .1)));
    let total: usize = parts.iter().map(|((_, n), c)| n * c).sum();
    let text: Vec<String> = parts
        .iter()
        .map(|((rt, n), c)| {
            format!(
                "{c} process{} × {n} {}thread{}",
                if *c == 1 { "" } else { "es" },
                rt.map(|r| format!("{r} ")).unwrap_or_default(),
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect();
    format!(
        "{} = {total} threads on {}",
        text.join(" + "),
        fixes::cores(budget)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{busy_thread, profile_with, with_library};
    use cpuprof_model::Profile;

    const OB: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";

    fn run(p: &Profile) -> Option<Over> {
        check(&Context::new(p))
    }

    /// `procs` processes × `threads` threads, each always runnable, on 2 cores for 3 s.
    fn pools(procs: u32, threads: u32) -> Profile {
        let n = procs * threads;
        let cpu = (2.0 / n as f64).min(1.0);
        let mut p = profile_with(
            2,
            (0..procs)
                .map(|i| {
                    let pid = 100 + 10 * i;
                    (
                        pid,
                        (0..threads)
                            .map(|t| busy_thread(pid + t, 3.0, cpu, 1.0 - cpu))
                            .collect(),
                    )
                })
                .collect(),
        );
        for i in 0..procs {
            with_library(&mut p, 100 + 10 * i, OB);
        }
        p
    }

    #[test]
    fn two_by_two_on_two_cores_is_named() {
        let p = pools(2, 2);
        let o = run(&p).expect("oversubscribed");
        assert_eq!(
            o.finding.title,
            "Oversubscribed: 2 processes × 2 OpenBLAS threads = 4 threads on 2 cores"
        );
        assert!(
            o.finding.fix.starts_with("OPENBLAS_NUM_THREADS=1"),
            "{}",
            o.finding.fix
        );
        assert!((o.mean_demand - 4.0).abs() < 0.1);
        assert_eq!(o.finding.severity, Severity::Error);
        // Model: 0.5 × (1 - 2/4) × 6 CPU s = 1.5 s.
        assert!(
            (o.finding.est_saving_cpu_s - 1.5).abs() < 0.1,
            "{}",
            o.finding.est_saving_cpu_s
        );
        assert!((o.finding.est_saving_wall_s - 0.75).abs() < 0.05);
        assert_eq!(o.finding.pids, vec![100, 110]);
    }

    #[test]
    fn a_process_that_waits_but_hardly_runs_is_not_a_pool() {
        // The launcher of two 2-thread workers: its pool thread yields in a loop, runnable
        // a third of the time, and runs 0.2% of it.
        let mut p = pools(2, 2);
        let launcher = profile_with(2, vec![(90, vec![busy_thread(90, 3.0, 0.002, 0.33)])]);
        p.processes.extend(launcher.processes);
        with_library(&mut p, 90, OB);
        let o = run(&p).expect("oversubscribed");
        assert_eq!(
            o.finding.title,
            "Oversubscribed: 2 processes × 2 OpenBLAS threads = 4 threads on 2 cores"
        );
        assert_eq!(o.finding.pids, vec![100, 110]);
    }

    #[test]
    fn with_stacks_the_waste_is_the_sampled_spinning() {
        use crate::testutil::{add_samples, native};
        let mut p = pools(2, 2);
        p.meta.sample_rate_hz = Some(100);
        // 1 s of CPU sampled in OpenBLAS's worker loop, 1 s in a kernel.
        add_samples(&mut p, 100, 101, &[native("blas_thread_server", OB)], 100);
        add_samples(&mut p, 110, 110, &[native("dgemm_kernel", OB)], 100);
        let o = run(&p).expect("oversubscribed");
        assert!((o.finding.est_saving_cpu_s - 1.0).abs() < 1e-6);
        // Spun while 2 cores were oversubscribed: 1 s of CPU at 2 cores = 0.5 s of wall.
        assert!((o.finding.est_saving_wall_s - 0.5).abs() < 0.01);
        assert!(o
            .finding
            .detail
            .contains("1.00 s of their CPU went to the runtimes' wait loops"));
    }

    #[test]
    fn threads_that_fit_are_not_oversubscribed() {
        // One process with 2 BLAS threads on 2 cores, on an idle machine.
        assert!(run(&pools(1, 2)).is_none());
        // Two workers limited to one BLAS thread each.
        assert!(run(&pools(2, 1)).is_none());
        // Same, with outside load making them wait (demand stays 2).
        let mut p = profile_with(
            2,
            vec![
                (100, vec![busy_thread(100, 3.0, 0.6, 0.4)]),
                (110, vec![busy_thread(110, 3.0, 0.6, 0.4)]),
            ],
        );
        with_library(&mut p, 100, OB);
        assert!(run(&p).is_none());
    }

    #[test]
    fn many_sleeping_threads_are_not_oversubscribed() {
        // 64 threads that mostly sleep (5% busy each = 3.2 threads' worth is not it: 1% each).
        let p = profile_with(
            2,
            vec![(
                100,
                (0..64)
                    .map(|t| busy_thread(100 + t, 3.0, 0.01, 0.0))
                    .collect(),
            )],
        );
        assert!(run(&p).is_none());
        // A pure-Python CPU-bound program: one thread always on CPU.
        let p = profile_with(2, vec![(100, vec![busy_thread(100, 3.0, 1.0, 0.0)])]);
        assert!(run(&p).is_none());
    }

    #[test]
    fn brief_overlap_is_not_oversubscription() {
        // 4 runnable threads for 0.2 s only.
        let p = pools(2, 2);
        let mut short = p.clone();
        for pr in &mut short.processes {
            for th in &mut pr.threads {
                th.points.truncate(3);
            }
        }
        assert!(run(&short).is_none());
    }

    #[test]
    fn shape_text_mixes_groups() {
        let m = |pid, rt, n: usize| Member {
            pid,
            runtime: rt,
            active: (0..n as u32).collect(),
        };
        assert_eq!(
            shape(&[m(1, Some("GNU OpenMP"), 4), m(2, None, 1)], 2.0),
            "1 process × 4 GNU OpenMP threads + 1 process × 1 thread = 5 threads on 2 cores"
        );
    }
}
