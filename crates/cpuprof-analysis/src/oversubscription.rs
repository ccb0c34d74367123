//! `oversubscription`: more threads wanted a core than the CPU budget has.
//!
//! Evidence, all measured: the runnable demand timeline ([`crate::demand`]) against
//! `cpu_budget()`, the run-queue wait against CPU time of the processes involved, and
//! preemptions (involuntary context switches; perf's preempted switch-outs when recorded).
//! N always-runnable threads on C cores wait about (N/C - 1) of their run time, so wait and
//! demand confirm each other.

use std::collections::BTreeMap;

use cpuprof_model::{Finding, Pid, Sample, Severity, Tid};

use crate::fixes;
use crate::pools::{Kind, Pool};
use crate::roles::is_python;
use crate::runtimes::{Idle, Runtime};
use crate::spin;
use crate::waitloops;
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
/// Without stacks, the share of the excess demand assumed wasted: synchronous pools
/// (barriers, spinning workers) lose about half the time a preempted partner is off-CPU.
/// Calibrated on the measurement the project started from: 2 processes × 2 OpenBLAS threads
/// on 2 cores used 1.4x the CPU of the fixed run, i.e. 29% waste, against 0.5 x (1 - 2/4) =
/// 25% from this model.
pub const NO_STACKS_WASTE: f64 = 0.5;
/// The same share for a work-stealing pool (Rayon, polars: [`Idle::Steals`]): its idle
/// workers steal queued work or sleep rather than wait at a barrier. Calibrated on the wall
/// saving of polars in a `multiprocessing.Pool(2)` on 2 cores, the measure a user acts on:
/// with 0.3 two runs of `bench/estimates.py polars` (2026-12-03, 80 alternating pairs and
/// 12-20 recordings each) estimated 0.247 ± 0.027 and 0.220 ± 0.014 s for a measured
/// 0.157 ± 0.044 and 0.163 ± 0.046 s (1.57 and 1.36 times), so 0.3 / 1.45 ≈ 0.2; the CPU
/// estimate then is ~0.8 of the CPU the fix saves (0.3 had been 1.1-1.2; 0.5 1.14-1.88 in
/// eleven earlier tables, docs/findings.md).
pub const STEALING_WASTE: f64 = 0.2;

/// CPU seconds an involuntary context switch costs the work of the threads involved, beyond
/// the switch itself (which the samples see): the caches and TLB the other thread evicted.
/// Calibrated on the Rust matmul pool (2 processes × 2 threads of Debian's OpenBLAS, which
/// yields the core while it waits; four runs of `bench/estimates.py`, each against the same
/// with one thread): at 2048×2048 ~17 500 switches and 0.16 s more CPU on average, 0.08 s of
/// it sampled spinning, ~4.5 µs a switch; at 256×256 ~7 400 switches and 0.065 s beyond the
/// spinning, ~9 µs. The other cases of that benchmark are the check (docs/findings.md).
pub const SWITCH_COST_S: f64 = 5e-6;

/// A process counts as a CPU-bound worker for `too-many-processes` when its thread wanted a
/// core at least this share of the oversubscribed time (an always-runnable worker: 1.0; a
/// parent polling for results under load: a third or so).
pub const BUSY_PROCESS: f64 = 0.5;

/// Without a pool to blame, the oversubscription must last at least this share of the busy
/// time: the fix (fewer processes or threads) changes the program's structure, which a phase
/// does not justify.
pub const UNPOOLED_OVER_SHARE: f64 = 0.5;

/// A pool is blamed when its own threads hold at least this share of the runnable demand of
/// the processes involved; below it, the demand is the program's own threads or processes.
pub const BLAME_SHARE: f64 = 0.25;

/// One process's share of the oversubscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The process.
    pub pid: Pid,
    /// The known runtime of the blamed pool, when this process runs it.
    pub runtime: Option<&'static str>,
    /// The blamed pool's label in this process (`OpenBLAS`, "`worker-N` (started in ...)").
    pub pool: Option<String>,
    /// Its threads that were runnable during the oversubscribed time.
    pub active: Vec<Tid>,
    /// How many of them were alive at once ([`Context::at_once`]).
    pub width: usize,
    /// Of them, workers of the blamed pool (at once).
    pub workers: usize,
    /// Of them, threads outside the pool that call into it at once (at least 1 when the
    /// process runs the pool).
    pub callers: usize,
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
    /// The pool blamed, if the demand is a pool's.
    pub blamed: Option<Pool>,
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
    let (mut total_run, mut total_cpu) = (0.0, 0.0);
    // (pid, CPU ns, runnable ns, active threads with their runnable ns)
    type ProcessDemand = (Pid, f64, f64, Vec<(Tid, f64)>);
    let mut per_proc: Vec<ProcessDemand> = Vec::new();
    for p in &cx.profile.processes {
        let (mut c, mut r) = (0.0, 0.0);
        let mut active = Vec::new();
        // A pool's threads too brief to count one by one, with their pool's sum.
        let mut brief: BTreeMap<String, (f64, Vec<(Tid, f64)>)> = BTreeMap::new();
        for th in &p.threads {
            let (tc, tr) = d.thread_in(p.pid, th.tid, &bins);
            c += tc;
            r += tr;
            if tr >= ACTIVE_THREAD * over_s * 1e9 {
                active.push((th.tid, tr));
            } else if let Some(pool) = cx.pool_of(p.pid, th.tid).filter(|_| tr > 0.0) {
                let e = brief.entry(pool.key()).or_default();
                e.0 += tr;
                e.1.push((th.tid, tr));
            }
        }
        // A pool that starts a thread per call and joins it (BLIS's pthreads build) has
        // threads that each live a call: together they hold a slot of the pool.
        for (run, threads) in brief.into_values() {
            if run >= ACTIVE_THREAD * over_s * 1e9 {
                active.extend(threads);
            }
        }
        total_run += r;
        total_cpu += c;
        per_proc.push((p.pid, c, r, active));
    }
    let (mut cpu_ns, mut wait_ns) = (0.0, 0.0);
    let mut involved: Vec<(Pid, Vec<(Tid, f64)>)> = Vec::new();
    for (pid, c, r, active) in per_proc {
        if r < PROCESS_SHARE * total_run || c < PROCESS_SHARE * total_cpu || active.is_empty() {
            continue;
        }
        cpu_ns += c;
        wait_ns += r - c;
        involved.push((pid, active));
    }
    if involved.is_empty() || wait_ns < MIN_WAIT_PER_CPU * cpu_ns {
        return None;
    }

    // Blame by demand: the pool whose own threads wanted the most core time.
    let mut by_pool: BTreeMap<String, (f64, Pool)> = BTreeMap::new();
    let mut member_run = 0.0;
    for (pid, active) in &involved {
        for (tid, run) in active {
            member_run += run;
            if let Some(pool) = cx.pool_of(*pid, *tid) {
                let e = by_pool.entry(pool.key()).or_insert((0.0, pool.clone()));
                e.0 += run;
            }
        }
    }
    let blamed = by_pool
        .into_values()
        .filter(|(run, _)| *run >= BLAME_SHARE * member_run)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, p)| p);
    let blamed_key = blamed.as_ref().map(Pool::key);
    // The oversubscribed time, as windows: the pools' width is what it was then.
    let mut windows: Vec<(u64, u64)> = Vec::new();
    for (i, _) in bins.iter().enumerate().filter(|(_, b)| **b) {
        let (lo, hi) = (i as u64 * d.bin_ns, (i as u64 + 1) * d.bin_ns);
        match windows.last_mut() {
            Some(w) if w.1 == lo => w.1 = hi,
            _ => windows.push((lo, hi)),
        }
    }
    let members: Vec<Member> = involved
        .iter()
        .map(|(pid, active)| {
            let tids: Vec<Tid> = active.iter().map(|(t, _)| *t).collect();
            let pool = cx.pools.get(pid).and_then(|ps| {
                ps.iter()
                    .find(|p| Some(p.key()) == blamed_key)
                    .map(|p| p.label())
            });
            let in_pool = |t: Tid| {
                cx.pool_of(*pid, t)
                    .is_some_and(|p| Some(p.key()) == blamed_key)
            };
            let pool_tids: Vec<Tid> = tids.iter().copied().filter(|t| in_pool(*t)).collect();
            let workers = cx.at_once_during(*pid, &pool_tids, &windows);
            let callers = if workers == 0 {
                0
            } else {
                callers(
                    cx,
                    *pid,
                    &tids,
                    blamed.as_ref().and_then(Pool::runtime),
                    &in_pool,
                )
            };
            Member {
                pid: *pid,
                runtime: blamed
                    .as_ref()
                    .and_then(Pool::runtime)
                    .filter(|_| workers > 0)
                    .map(|r| r.name),
                pool: pool.filter(|_| workers > 0),
                width: cx.at_once_during(*pid, &tids, &windows),
                active: tids,
                workers,
                callers,
            }
        })
        .collect();
    let wait_per_cpu = wait_ns / cpu_ns.max(1.0);
    let pids: Vec<Pid> = members.iter().map(|m| m.pid).collect();
    let tids: Vec<Tid> = members.iter().flat_map(|m| m.active.clone()).collect();

    // Preemptions of the member processes over the whole run.
    let member_threads = || {
        cx.profile
            .processes
            .iter()
            .filter(|p| pids.contains(&p.pid))
            .flat_map(|p| p.threads.iter())
    };
    let ivcsw: u64 = member_threads().map(|t| t.ivcsw).sum();
    let preempted: u64 = member_threads().map(|t| t.preemptions).sum();

    // Waste: measured spinning when there are stacks, else the model. The fix shrinks the
    // pools, so all the spinning of these processes goes (CPU). Wall: a thread that called
    // into the pool and spins there waits for its partners' share of its own call; with the
    // fix it does that work itself, so its spinning turns into progress whether or not another
    // thread wanted the core. A pool worker spinning for its next job waits for work that is
    // not there: it delays the program only by taking a core another thread waited for
    // ([`spin::contended_s`]); a worker waiting inside a call for a partner's share of it (an
    // OpenBLAS worker in `inner_thread`) is a caller's case ([`spin::delaying_s`]).
    // The samples tell the waste of pools that spin in known loops ([`crate::waitloops`]) and
    // of pools that block (they waste none); the others' (Rayon's, an unknown pool's) is
    // modelled.
    let known_loops = blamed
        .as_ref()
        .and_then(Pool::runtime)
        .is_none_or(|r| !matches!(r.idle, Idle::Modelled | Idle::Steals));
    let sampled = known_loops
        && blamed.as_ref().is_none_or(|p| p.runtime().is_some())
        && cx.profile.samples.iter().any(|s| pids.contains(&s.pid));
    // The blamed pool's own waiting only: the fix leaves other pools as they are.
    let blamed_rt = blamed.as_ref().and_then(Pool::runtime);
    let counts = |rt: &Runtime| blamed_rt.is_none_or(|pool| waitloops::waits_for(pool, rt));
    let ours = |s: &Sample| pids.contains(&s.pid);
    // A pool that runs one call at a time holds back the threads that call it meanwhile: they
    // sleep in its lock, so the demand timeline does not count them, yet each wants a core.
    // With the fix every caller runs its own call at once, so in a process with two or more
    // callers a worker's wait for its next job is core time a held-back caller would have
    // computed in: it counts as a caller's (measured: the wall saving of two
    // `ThreadPoolExecutor` threads calling NumPy is the CPU saved ÷ the cores, docs/findings.md).
    let serial = blamed_rt.is_some_and(Runtime::serializes_calls);
    let held_back: Vec<Pid> = members
        .iter()
        .filter(|m| serial && m.callers >= 2)
        .map(|m| m.pid)
        .collect();
    // Without a pool to blame, every spinning thread is taken for a worker.
    let worker = |s: &Sample| {
        !held_back.contains(&s.pid)
            && (blamed_key.is_none()
                || cx
                    .pool_of(s.pid, s.tid)
                    .is_some_and(|p| Some(p.key()) == blamed_key))
    };
    let spin = if sampled {
        let all = spin::spin_s(cx, ours, counts);
        Some((all, spin::delaying_s(cx, ours, worker, counts)))
    } else {
        None
    };
    let share = match blamed_rt.map(|r| r.idle) {
        Some(Idle::Steals) => STEALING_WASTE,
        _ => NO_STACKS_WASTE,
    };
    let model_s = share * (1.0 - cx.budget / mean_demand).max(0.0) * cpu_ns / 1e9;
    // Each involuntary switch also costs the work what the other thread evicted from the
    // caches: with the fix the threads fit the cores and hardly switch. Counted beside the
    // sampled spinning (the model's share already holds it), and switches only happen while
    // another thread wants the core, so all of it delayed the program.
    // Only the switches of the oversubscribed time, in proportion to the CPU then: the
    // processes' threads are also preempted by other programs before and after.
    let member_cpu_ns: u64 = member_threads().map(|t| t.cpu_ns).sum();
    let over_share = (cpu_ns / (member_cpu_ns as f64).max(1.0)).min(1.0);
    let switch_s = if spin.is_some() {
        ivcsw as f64 * over_share * SWITCH_COST_S
    } else {
        0.0
    };
    let (mut waste_cpu_s, waste_over_s) = match spin {
        Some((all, contended)) => (all + switch_s, contended + switch_s),
        None => (model_s, model_s),
    };
    // The wasted CPU would have gone to work at the rate the program actually got cores
    // (the budget on an idle machine, less when other load shared them).
    let rate = (cpu_ns / 1e9 / over_s).clamp(0.05, cx.budget);
    let mut wall_s = (waste_over_s / rate).min(over_s);

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
        Some((all, _)) if all < 0.005 => detail.push_str(&format!(
            " None of their CPU went to the pool's wait loops (sampled); the switches cost the \
             work ~{switch_s:.2} s in caches refilled ({} µs each).",
            SWITCH_COST_S * 1e6
        )),
        Some((all, over)) => {
            detail.push_str(&format!(
                " {all:.2} s of their CPU went to the pool's wait loops (sampled), {over:.2} s \
                 of it delayed the program (callers waiting for their partners' share, and \
                 workers' spinning that took a core another thread waited for); the switches \
                 cost the work ~{switch_s:.2} s more in caches refilled ({} µs each).",
                SWITCH_COST_S * 1e6
            ));
            if let Some(rt) = blamed_rt.filter(|_| !held_back.is_empty()) {
                detail.push_str(&format!(
                    " {} runs one call at a time: the threads calling it meanwhile wait asleep \
                     in its lock, so its workers' waiting for their next call delayed them as \
                     well.",
                    rt.name
                ));
            }
        }
        None => detail.push_str(&format!(
            " Estimated waste {model_s:.2} s of CPU (model, see docs/findings.md: {}).",
            if cx.profile.samples.is_empty() {
                "no stacks"
            } else {
                "this pool's wait loops are not known"
            }
        )),
    }
    if let Some(rt) = blamed
        .as_ref()
        .and_then(Pool::runtime)
        .filter(|r| spin.is_some() && r.idle == Idle::Blocks)
    {
        detail.push_str(&format!(
            " {}'s workers block when idle: waiting costs it no CPU, and taking turns on the \
             cores little else.",
            rt.name
        ));
    }

    let python = members
        .iter()
        .any(|m| cx.profile.process(m.pid).is_some_and(is_python));
    let with_pool: Vec<&Member> = members.iter().filter(|m| m.workers > 0).collect();
    let callers = with_pool
        .iter()
        .map(|m| m.callers)
        .max()
        .unwrap_or(1)
        .max(1);
    let k = fixes::threads_per_caller(cx.budget, with_pool.len(), callers);
    // A pool already at the recommended size cannot be the fix: its threads and their callers
    // take turns (polars at `POLARS_MAX_THREADS=1`: the caller sleeps while its one worker
    // runs), and no setting of it helps.
    if let Some(pool) = &blamed {
        let widest = with_pool
            .iter()
            .map(|m| pool_size(cx, m.pid, pool))
            .max()
            .unwrap_or(0);
        if widest <= k as usize {
            return None;
        }
    }
    let setting = match blamed.as_ref().and_then(Pool::runtime) {
        Some(rt) => fixes::pool_setting(rt, k),
        None => Default::default(),
    };
    let mut id = "oversubscription";
    let mut title = format!("Oversubscribed: {shape}");
    let fix = match &blamed {
        Some(pool) => {
            detail.push_str(&format!(
                " Pool size {k} = {} // ({} process{} × {callers} calling thread{}).",
                cx.budget.floor().max(1.0),
                with_pool.len(),
                if with_pool.len() == 1 { "" } else { "es" },
                if callers == 1 { "" } else { "s" },
            ));
            match &pool.kind {
                Kind::Known(rt) => fixes::limit_pool(rt, k, python),
                Kind::Unknown { candidates, .. } => {
                    fixes::limit_unknown(&pool.label(), candidates, k, python)
                }
            }
        }
        // No pool: the program's own threads or processes. Only the shape of most of the run
        // counts (a start-up where a helper process overlaps the workers is not), and only
        // threads that wanted a core most of that time (helpers that poll — a parent
        // collecting results, a queue thread — wait long on a loaded machine without wanting
        // much).
        None if over_s < UNPOOLED_OVER_SHARE * busy_s
            || (busy_threads(&involved, over_s) as f64) <= cx.budget * OVER_FACTOR =>
        {
            return None;
        }
        None if members.iter().all(|m| m.width == 1)
            && busy_processes(&involved, over_s) as f64 > cx.budget.floor().max(1.0) =>
        {
            // Single-threaded processes taking turns: the same work in fewer processes needs
            // no time-slicing, but runs no faster. Waste is the switching only.
            id = "too-many-processes";
            title = format!(
                "{} single-threaded processes on {}",
                members.len(),
                fixes::cores(cx.budget)
            );
            detail.push_str(
                " Each process runs one thread: they take turns on the cores rather than fight \
                 inside a pool, so the wall time is about what fewer processes would take.",
            );
            waste_cpu_s = 0.0;
            wall_s = 0.0;
            fixes::fewer_processes(cx.budget)
        }
        None => format!(
            "limit the program to {} runnable threads in total ({k} per process)",
            cx.budget.floor().max(1.0)
        ),
    };
    let finding = Finding {
        id: id.into(),
        // Set from the estimated saving by `crate::analyze`.
        severity: Severity::Warning,
        title,
        detail,
        setting: if id == "oversubscription" {
            setting
        } else {
            Default::default()
        },
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
        blamed,
    })
}

/// Processes whose one active thread wanted a core at least [`BUSY_PROCESS`] of the
/// oversubscribed time: CPU-bound workers, not a parent that polls for their results.
fn busy_processes(involved: &[(Pid, Vec<(Tid, f64)>)], over_s: f64) -> usize {
    involved
        .iter()
        .filter(|(_, active)| {
            active
                .iter()
                .any(|(_, run)| *run >= BUSY_PROCESS * over_s * 1e9)
        })
        .count()
}

/// Threads that wanted a core at least [`BUSY_PROCESS`] of the oversubscribed time.
fn busy_threads(involved: &[(Pid, Vec<(Tid, f64)>)], over_s: f64) -> usize {
    involved
        .iter()
        .flat_map(|(_, active)| active.iter())
        .filter(|(_, run)| *run >= BUSY_PROCESS * over_s * 1e9)
        .count()
}

/// The size of a process's pool like the blamed one: what its knob sets, else its threads
/// (and the caller, for runtimes whose caller takes part).
fn pool_size(cx: &Context, pid: Pid, blamed: &Pool) -> usize {
    let Some(p) = cx
        .pools
        .get(&pid)
        .and_then(|ps| ps.iter().find(|p| p.key() == blamed.key()))
    else {
        return 0;
    };
    match p.runtime() {
        Some(rt) => cx
            .loaded
            .get(&pid)
            .and_then(|ls| ls.iter().find(|l| l.runtime.name == rt.name))
            .and_then(|l| crate::runtimes::configured_threads(rt, &l.knobs))
            .map(|n| n as usize)
            .unwrap_or(cx.at_once(pid, &p.threads) + usize::from(rt.caller_works())),
        None => cx.at_once(pid, &p.threads),
    }
}

/// Threads of a process outside the pool that call into it at once: with stacks, the active
/// threads whose samples enter the pool's library; without, every active thread outside it.
fn callers(
    cx: &Context,
    pid: Pid,
    active: &[Tid],
    rt: Option<&'static crate::runtimes::Runtime>,
    in_pool: &dyn Fn(Tid) -> bool,
) -> usize {
    let outside: Vec<Tid> = active.iter().copied().filter(|t| !in_pool(*t)).collect();
    let sampled = cx.entered.keys().any(|(p, _)| *p == pid);
    let n = match rt {
        Some(rt) if sampled => outside
            .iter()
            .filter(|t| calls_into(cx, pid, **t, rt))
            .count(),
        _ => outside.len(),
    };
    n.max(1)
}

/// Does a thread's sampled stack ever enter the runtime's library?
fn calls_into(cx: &Context, pid: Pid, tid: Tid, rt: &crate::runtimes::Runtime) -> bool {
    cx.entered
        .get(&(pid, tid))
        .is_some_and(|rts| rts.contains(&rt.name))
}

/// "2 processes × 2 OpenBLAS threads = 4 threads on 2 cores".
pub fn shape(members: &[Member], budget: f64) -> String {
    type Key<'a> = (Option<&'a str>, usize, usize, usize);
    let mut groups: BTreeMap<Key, usize> = BTreeMap::new();
    for m in members {
        *groups
            .entry((m.pool.as_deref(), m.width, m.workers, m.callers))
            .or_default() += 1;
    }
    let mut parts: Vec<(Key, usize)> = groups.into_iter().collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then(b.0 .1.cmp(&a.0 .1)));
    let total: usize = parts.iter().map(|((_, n, _, _), c)| n * c).sum();
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            one.to_string()
        } else {
            many.to_string()
        }
    };
    let text: Vec<String> = parts
        .iter()
        .map(|((pool, n, w, callers), c)| {
            let procs = format!("{c} process{}", plural(*c, "", "es"));
            let member = members.iter().find(|m| m.pool.as_deref() == *pool);
            let caller_works = member
                .and_then(|m| m.runtime)
                .and_then(crate::runtimes::by_name)
                .is_none_or(|r| r.caller_works());
            let unknown = member.is_some_and(|m| m.runtime.is_none());
            match pool {
                // A pool cpuprof does not know, as what it is.
                Some(pool) if unknown && n == w => format!("{procs} × {n} threads named {pool}"),
                Some(pool) if unknown => {
                    format!("{procs} × {n} threads, {w} of them named {pool}")
                }
                Some(pool) if *callers > 1 => format!(
                    "{procs} × ({callers} threads calling {pool} + {w} {pool} worker{})",
                    plural(*w, "", "s")
                ),
                Some(pool) if *n == w + 1 && caller_works => {
                    format!("{procs} × {n} {pool} threads")
                }
                Some(pool) => format!(
                    "{procs} × {n} thread{} ({w} {pool} worker{})",
                    plural(*n, "", "s"),
                    plural(*w, "", "s")
                ),
                None => format!("{procs} × {n} thread{}", plural(*n, "", "s")),
            }
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
    use cpuprof_model::{Frame, Profile};

    const OB: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";

    fn run(p: &Profile) -> Option<Over> {
        check(&Context::new(p))
    }

    /// The finding blames the runtime named `runtime`, and its fix starts with `fix`.
    fn assert_blames(o: &Over, runtime: &str, fix: &str) {
        assert_eq!(
            o.blamed.as_ref().and_then(Pool::runtime).map(|r| r.name),
            Some(runtime)
        );
        assert!(o.finding.fix.starts_with(fix), "{}", o.finding.fix);
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
        assert_eq!(
            crate::severity_from_cost(&o.finding, 3.0, 6.0),
            Some(Severity::Error)
        );
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
    fn a_work_stealing_pool_is_modelled_to_waste_less() {
        // 2 processes × (a caller + 2 polars workers, named `polars-N`), no stacks.
        let mut p = pools(2, 3);
        for proc in &mut p.processes {
            proc.libraries.clear();
            for (i, t) in proc.threads.iter_mut().enumerate().skip(1) {
                t.name = format!("polars-{}", i - 1);
            }
        }
        for pid in [100, 110] {
            with_library(&mut p, pid, "/v/polars/_polars_runtime.abi3.so");
        }
        let o = run(&p).expect("oversubscribed");
        assert_blames(&o, "polars", "POLARS_MAX_THREADS=1");
        // 0.2 × (1 - 2/6) × 6 CPU s = 0.8 s, where a synchronous pool's 0.5 gives 2 s.
        assert!(
            (o.finding.est_saving_cpu_s - 0.8).abs() < 0.1,
            "{}",
            o.finding.est_saving_cpu_s
        );
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
            .contains("1.00 s of their CPU went to the pool's wait loops"));
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

    /// Python process 100 on 2 cores: main thread 100, threads 101 and 102 calling dgemm
    /// (10 samples each), OpenBLAS worker 103 sampled `worker_samples` times in `worker`;
    /// `threads` are their (CPU, run-queue) shares, sampled at 100 Hz.
    fn dgemm_callers(threads: [(f64, f64); 4], worker: &[Frame], worker_samples: u64) -> Profile {
        use crate::testutil::{add_samples, native, py};
        let mut p = profile_with(
            2,
            vec![(
                100,
                (100..)
                    .zip(threads)
                    .map(|(tid, (cpu, runq))| busy_thread(tid, 3.0, cpu, runq))
                    .collect(),
            )],
        );
        p.meta.sample_rate_hz = Some(100);
        p.processes[0].command = vec!["python3".into(), "x.py".into()];
        with_library(&mut p, 100, OB);
        let call = [
            native("start_thread", "/lib/libc.so.6"),
            native("dgemm_", OB),
        ];
        add_samples(&mut p, 100, 101, &call, 10);
        add_samples(&mut p, 100, 102, &call, 10);
        add_samples(&mut p, 100, 103, worker, worker_samples);
        for tid in [100, 101, 102] {
            let f = p.stacks.intern_frame(py("task", "/app/x.py"));
            let stack = p.stacks.intern_stack(&[f]);
            p.python_samples.push(cpuprof_model::PythonSample {
                t: 0,
                pid: 100,
                tid,
                stack,
                owns_gil: false,
                active: true,
                repeats: 1,
            });
        }
        p
    }

    #[test]
    fn callers_of_the_pool_are_counted_in_the_fix() {
        use crate::testutil::native;
        // Two Python threads each calling dgemm, one OpenBLAS worker: 3 on 2 cores.
        let p = dgemm_callers(
            [(0.05, 0.0), (0.66, 0.34), (0.66, 0.34), (0.66, 0.34)],
            &[native("blas_thread_server", OB), native("dgemm_kernel", OB)],
            10,
        );
        let o = run(&p).expect("oversubscribed");
        assert_eq!(
            o.finding.title,
            "Oversubscribed: 1 process × (2 threads calling OpenBLAS + 1 OpenBLAS worker) = 3 \
             threads on 2 cores"
        );
        assert!(
            o.finding.fix.starts_with("OPENBLAS_NUM_THREADS=1"),
            "{}",
            o.finding.fix
        );
        assert!(o
            .finding
            .detail
            .contains("Pool size 1 = 2 // (1 process × 2 calling threads)"));
    }

    #[test]
    fn a_pool_that_holds_its_callers_back_delays_them_while_its_worker_waits() {
        use crate::testutil::native;
        // Two Python threads calling dgemm and one OpenBLAS worker, 2.55 threads on 2 cores
        // (0.55 beyond the budget); the worker spins 0.9 s of the first second waiting for
        // its next job. Spin for a next job delays the program only up to the demand beyond
        // the budget (0.55 / 1.95 cores = 0.28 s here), but OpenBLAS runs one call at a time:
        // the caller it holds back sleeps in its lock, out of the demand, and with the fix it
        // would compute then, so all 0.9 s count: 0.9 / 1.95 = 0.46 s.
        let p = dgemm_callers(
            [(0.05, 0.0), (0.5, 0.25), (0.5, 0.25), (0.9, 0.1)],
            &[native("blas_thread_server", OB)],
            90,
        );
        let f = run(&p).expect("oversubscribed").finding;
        assert!(
            f.title.contains("2 threads calling OpenBLAS"),
            "{}",
            f.title
        );
        assert!(
            (f.est_saving_cpu_s - 0.9).abs() < 0.01,
            "{}",
            f.est_saving_cpu_s
        );
        assert!(
            (f.est_saving_wall_s - 0.46).abs() < 0.02,
            "{}",
            f.est_saving_wall_s
        );
        assert!(
            f.detail.contains("OpenBLAS runs one call at a time"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn the_pool_with_the_demand_is_blamed_not_an_idle_one() {
        use crate::testutil::{add_samples, native};
        // numexpr's two workers are busy in each of two processes; OpenBLAS's worker sleeps.
        let ne = "/v/numexpr/interpreter.cpython-311-x86_64-linux-gnu.so";
        let mut p = profile_with(
            2,
            [100, 110]
                .into_iter()
                .map(|pid| {
                    (
                        pid,
                        vec![
                            busy_thread(pid, 3.0, 0.02, 0.0),
                            busy_thread(pid + 1, 3.0, 0.5, 0.5),
                            busy_thread(pid + 2, 3.0, 0.5, 0.5),
                            busy_thread(pid + 3, 3.0, 0.005, 0.0),
                        ],
                    )
                })
                .collect(),
        );
        for pid in [100, 110] {
            with_library(&mut p, pid, OB);
            with_library(&mut p, pid, ne);
            let w = [
                native("start_thread", "/lib/libc.so.6"),
                native("th_worker", ne),
            ];
            add_samples(&mut p, pid, pid + 1, &w, 10);
            add_samples(&mut p, pid, pid + 2, &w, 10);
            add_samples(&mut p, pid, pid + 3, &[native("blas_thread_server", OB)], 1);
        }
        let o = run(&p).expect("oversubscribed");
        assert_blames(&o, "numexpr", "NUMEXPR_NUM_THREADS=1");
    }

    #[test]
    fn a_pool_that_starts_a_thread_per_call_is_as_wide_as_its_threads_at_once() {
        use crate::testutil::{add_samples, native, INTERVAL};
        // BLIS's pthreads build at `BLIS_NUM_THREADS=2`: each call starts one thread beside
        // the caller and joins it, 30 calls of 0.1 s in each of two processes on 2 cores. No
        // thread of the pool is runnable for a quarter of the time; together they always are.
        let blis = "/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4";
        let call = |tid: u32, i: u64| {
            let mut t = busy_thread(tid, 0.1, 0.5, 0.5);
            let t0 = i * INTERVAL;
            for pt in &mut t.points {
                pt.t += t0;
            }
            t.start_ns = t0;
            t.end_ns = Some(t0 + INTERVAL);
            t
        };
        let mut p = profile_with(
            2,
            [100, 200]
                .into_iter()
                .map(|pid| {
                    let mut threads = vec![busy_thread(pid, 3.0, 0.5, 0.5)];
                    threads.extend((0..30).map(|i| call(pid + 1 + i as u32, i)));
                    (pid, threads)
                })
                .collect(),
        );
        for pid in [100, 200] {
            with_library(&mut p, pid, blis);
            for i in 0..30 {
                let w = [
                    native("start_thread", "/lib/libc.so.6"),
                    native("bli_gemm_ker_var2", blis),
                ];
                add_samples(&mut p, pid, pid + 1 + i, &w, 3);
            }
        }
        let o = run(&p).expect("oversubscribed");
        assert_blames(&o, "BLIS", "BLIS_NUM_THREADS=1");
        assert_eq!(
            o.finding.title,
            "Oversubscribed: 2 processes × 2 BLIS threads = 4 threads on 2 cores"
        );
    }

    /// A pool that starts late in a long process (numba's, after its compiler ran on the main
    /// thread alone): its width is what it was while the program competed, not its mean over
    /// the run (which once titled such a run "2 processes × 1 thread = 2 threads on 2 cores").
    #[test]
    fn a_pool_started_late_is_as_wide_as_it_was_when_oversubscribed() {
        use crate::testutil::{add_samples, native, INTERVAL};
        let blis = "/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4";
        // The main thread alone for 2.5 s, then beside a worker for 1.5 s.
        let late = |tid: u32| {
            let mut t = busy_thread(tid, 1.5, 0.5, 0.5);
            let t0 = 25 * INTERVAL;
            for pt in &mut t.points {
                pt.t += t0;
            }
            t.start_ns = t0;
            t
        };
        let mut p = profile_with(
            2,
            [100, 200]
                .into_iter()
                .map(|pid| (pid, vec![busy_thread(pid, 4.0, 0.5, 0.5), late(pid + 1)]))
                .collect(),
        );
        for pid in [100, 200] {
            with_library(&mut p, pid, blis);
            let w = [
                native("start_thread", "/lib/libc.so.6"),
                native("bli_gemm_ker_var2", blis),
            ];
            add_samples(&mut p, pid, pid + 1, &w, 20);
        }
        let o = run(&p).expect("oversubscribed");
        assert_eq!(
            o.finding.title,
            "Oversubscribed: 2 processes × 2 BLIS threads = 4 threads on 2 cores"
        );
    }

    #[test]
    fn single_threaded_processes_are_too_many_processes_not_a_pool() {
        let p = profile_with(
            2,
            (0..4)
                .map(|i| (100 + i, vec![busy_thread(100 + i, 3.0, 0.5, 0.5)]))
                .collect(),
        );
        let a = crate::analyze(&p);
        assert_eq!(a.findings.len(), 1, "{:?}", a.findings);
        let f = &a.findings[0];
        assert_eq!(f.id, "too-many-processes");
        assert_eq!(f.severity, Severity::Info);
        assert!(f.fix.starts_with("use 2 processes"), "{}", f.fix);
    }

    #[test]
    fn threads_that_wake_often_but_hardly_run_are_not_demand() {
        // Two busy single-thread workers plus, in each, a helper that wakes often: on CPU 0.2%
        // of the time, waiting 40% (the machine is busy when it wakes).
        let p = profile_with(
            2,
            [100, 110]
                .into_iter()
                .map(|pid| {
                    (
                        pid,
                        vec![
                            busy_thread(pid, 3.0, 0.9, 0.1),
                            busy_thread(pid + 1, 3.0, 0.002, 0.4),
                        ],
                    )
                })
                .collect(),
        );
        assert!(crate::analyze(&p).findings.is_empty());
    }

    #[test]
    fn severity_follows_the_estimated_saving() {
        let f = |wall: f64, cpu: f64| Finding {
            id: "oversubscription".into(),
            severity: Severity::Info,
            title: String::new(),
            detail: String::new(),
            fix: String::new(),
            setting: Default::default(),
            est_saving_cpu_s: cpu,
            est_saving_wall_s: wall,
            pids: vec![],
            tids: vec![],
        };
        let sev = |wall, cpu| crate::severity_from_cost(&f(wall, cpu), 10.0, 20.0);
        assert_eq!(sev(1.0, 0.0), Some(Severity::Error));
        assert_eq!(sev(0.0, 2.0), Some(Severity::Error));
        assert_eq!(sev(0.3, 0.0), Some(Severity::Warning));
        assert_eq!(sev(0.07, 0.0), Some(Severity::Info));
        assert_eq!(sev(0.0, 0.05), None);
    }

    #[test]
    fn shape_text_mixes_groups() {
        let m = |pid, rt: Option<&'static str>, n: usize, callers| Member {
            pid,
            runtime: rt,
            pool: rt.map(str::to_string),
            active: (0..n as u32).collect(),
            width: n,
            workers: if rt.is_some() { n - callers } else { 0 },
            callers,
        };
        assert_eq!(
            shape(&[m(1, Some("GNU OpenMP"), 4, 1), m(2, None, 1, 0)], 2.0),
            "1 process × 4 GNU OpenMP threads + 1 process × 1 thread = 5 threads on 2 cores"
        );
        assert_eq!(
            shape(&[m(1, Some("OpenBLAS"), 3, 2)], 2.0),
            "1 process × (2 threads calling OpenBLAS + 1 OpenBLAS worker) = 3 threads on 2 cores"
        );
    }
}
