//! Diagnosis of a cpuprof profile: which BLAS/OpenMP runtimes each process runs, what every
//! thread is, and whether the program's thread pools fight over the CPU budget.
//!
//! [`analyze`] is pure: it reads only the [`Profile`], so a live recording and
//! `cpuprof report saved.cpuprof` reach the same conclusions. Each rule lives in its own
//! module with its thresholds as named constants and the reason for each value:
//!
//! - [`oversubscription`]: more threads wanted a core than the budget has (measured from
//!   run-queue wait and CPU, not from thread counts);
//! - [`spin`]: CPU burned in the runtimes' wait loops (needs stacks);
//! - [`quota`]: pools sized from the host's cores inside a cgroup CPU quota;
//! - [`nested`]: a process pool whose workers each run a full-width BLAS/OpenMP pool.
//!
//! ```
//! let profile = cpuprof_model::Profile::default();
//! let analysis = cpuprof_analysis::analyze(&profile);
//! assert!(analysis.findings.is_empty());
//! ```
#![deny(missing_docs)]

use std::collections::BTreeMap;

use cpuprof_model::{Analysis, Pid, ProcessRuntime, Profile, Severity, ThreadClass, Tid};

pub mod demand;
pub mod fixes;
pub mod nested;
pub mod oversubscription;
pub mod pools;
pub mod quota;
pub mod roles;
pub mod runtimes;
pub mod spin;
pub mod waitloops;

#[cfg(test)]
mod testutil;

/// What every rule gets: the profile and what was derived from it once.
#[derive(Debug)]
pub struct Context<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// CPU budget in cores.
    pub budget: f64,
    /// Runtimes loaded, per process.
    pub loaded: BTreeMap<Pid, Vec<runtimes::Loaded>>,
    /// Role of every thread.
    pub classes: BTreeMap<Tid, ThreadClass>,
    /// Thread pools of every process.
    pub pools: BTreeMap<Pid, Vec<pools::Pool>>,
    /// The runtimes each sampled thread's stacks enter.
    pub entered: roles::Entered,
    /// Runnable demand over time.
    pub demand: demand::Demand,
    /// The wait loops of the profile's samples.
    pub wait_loops: waitloops::WaitLoops,
}

impl<'a> Context<'a> {
    /// Derives everything the rules share.
    pub fn new(profile: &'a Profile) -> Self {
        let in_stacks = runtimes::from_stacks(profile);
        let loaded: BTreeMap<Pid, Vec<runtimes::Loaded>> = profile
            .processes
            .iter()
            .map(|p| {
                let extra = in_stacks.get(&p.pid).map(Vec::as_slice).unwrap_or(&[]);
                (p.pid, runtimes::loaded(p, extra))
            })
            .collect();
        let (classes, entered) = roles::classify(profile, &loaded);
        let pools = pools::find(profile, &loaded, &classes);
        Context {
            profile,
            budget: profile.machine.cpu_budget(),
            loaded,
            classes,
            pools,
            entered,
            demand: demand::Demand::of(profile),
            wait_loops: waitloops::WaitLoops::new(profile),
        }
    }

    /// The known runtime whose pool in a process has the most threads, if any.
    pub fn pool_runtime(&self, pid: Pid) -> Option<&'static runtimes::Runtime> {
        self.pools
            .get(&pid)?
            .iter()
            .filter_map(|p| Some((p.runtime()?, p.threads.len())))
            .max_by_key(|(_, n)| *n)
            .map(|(r, _)| r)
    }

    /// How many of these threads of a process were alive at once: the mean over the time any
    /// of them was, rounded. A pool that starts a thread for each call and joins it at the end
    /// (BLIS's pthreads build: a hundred calls, a hundred threads, and now and then a
    /// helper for a few milliseconds) is as wide as its threads at once, not as their number.
    pub fn at_once(&self, pid: Pid, tids: &[Tid]) -> usize {
        let lives = self.lives(pid, tids);
        if lives.is_empty() {
            return 0;
        }
        // Threads that lived no measurable time: count them as they are.
        mean_alive(&lives, &[(0, u64::MAX)]).unwrap_or(lives.len())
    }

    /// [`Context::at_once`] within the time windows `[start, end)` only (the oversubscribed
    /// time): a pool that starts late in a long process (numba's, after its compiler ran on
    /// the main thread alone) is as wide as it is while the program competes, not as its
    /// mean over the whole run. Falls back to the whole run when none of the threads was
    /// alive in the windows.
    pub fn at_once_during(&self, pid: Pid, tids: &[Tid], windows: &[(u64, u64)]) -> usize {
        let lives = self.lives(pid, tids);
        if lives.is_empty() {
            return 0;
        }
        mean_alive(&lives, windows).unwrap_or_else(|| self.at_once(pid, tids))
    }

    /// The `[start, end)` lifetimes of these threads of a process (the end of the run for
    /// threads still alive).
    fn lives(&self, pid: Pid, tids: &[Tid]) -> Vec<(u64, u64)> {
        let end = self.profile.meta.wall_ns;
        self.profile.process(pid).map_or_else(Vec::new, |p| {
            p.threads
                .iter()
                .filter(|t| tids.contains(&t.tid))
                .map(|t| (t.start_ns, t.end_ns.unwrap_or(end).max(t.start_ns)))
                .collect()
        })
    }

    /// The pool a thread belongs to.
    pub fn pool_of(&self, pid: Pid, tid: Tid) -> Option<&pools::Pool> {
        self.pools
            .get(&pid)?
            .iter()
            .find(|p| p.threads.contains(&tid))
    }

    /// Worker threads of a process's known pool of this runtime.
    pub fn workers_of(&self, pid: Pid, rt: &runtimes::Runtime) -> Vec<Tid> {
        self.pools
            .get(&pid)
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p.runtime().is_some_and(|r| r.name == rt.name))
            })
            .map(|p| p.threads.clone())
            .unwrap_or_default()
    }
}

/// Threads alive at once, within `windows`: thread-nanoseconds alive over the nanoseconds any
/// was, rounded (at least 1); `None` when none was alive there for a measurable time.
fn mean_alive(lives: &[(u64, u64)], windows: &[(u64, u64)]) -> Option<usize> {
    let (mut sum, mut any) = (0.0, 0.0);
    for &(lo, hi) in windows {
        let mut events: Vec<(u64, i64)> = lives
            .iter()
            .map(|&(a, b)| (a.max(lo), b.min(hi)))
            .filter(|(a, b)| a < b)
            .flat_map(|(a, b)| [(a, 1), (b, -1)])
            .collect();
        events.sort_unstable();
        let (mut alive, mut last) = (0i64, events.first().map_or(0, |e| e.0));
        for &(t, d) in &events {
            if alive > 0 {
                sum += (alive * (t - last) as i64) as f64;
                any += (t - last) as f64;
            }
            alive += d;
            last = t;
        }
    }
    (any > 0.0).then(|| ((sum / any).round() as usize).max(1))
}

/// A finding is an error when its fix is estimated to save at least this share of the wall
/// time or of the CPU: a tenth is what a user notices without measuring.
pub const ERROR_SAVING_SHARE: f64 = 0.10;
/// ...a warning from this share: 2% is about the run-to-run noise of a quiet machine, so less
/// is not worth a setting.
pub const WARNING_SAVING_SHARE: f64 = 0.02;
/// ...information from this share; below it the finding is dropped (spinning or a quota that
/// costs nothing measurable is not worth a line).
pub const INFO_SAVING_SHARE: f64 = 0.005;

/// Severity from what the fix saves; `None` drops the finding. `too-many-processes` saves no
/// time by construction and stays as information, and so does a pool measured wider than the
/// budget whatever its fix saves: numexpr's 4 workers on 2 cores block rather than spin and
/// lose almost nothing taking turns, which is worth knowing before tuning it.
pub fn severity_from_cost(f: &cpuprof_model::Finding, wall_s: f64, cpu_s: f64) -> Option<Severity> {
    let share = (f.est_saving_wall_s / wall_s.max(1e-9)).max(f.est_saving_cpu_s / cpu_s.max(1e-9));
    let measured_pool =
        matches!(f.id.as_str(), "oversubscription" | "nested-pools") && !f.setting.is_empty();
    if share >= ERROR_SAVING_SHARE {
        Some(Severity::Error)
    } else if share >= WARNING_SAVING_SHARE {
        Some(Severity::Warning)
    } else if share >= INFO_SAVING_SHARE || f.id == "too-many-processes" || measured_pool {
        Some(Severity::Info)
    } else {
        None
    }
}

/// Analyses a profile: runtimes, thread roles, and findings sorted most costly first.
pub fn analyze(profile: &Profile) -> Analysis {
    let cx = Context::new(profile);
    let mut findings = Vec::new();
    let over = oversubscription::check(&cx);
    findings.extend(nested::check(&cx, over.as_ref()));
    findings.extend(quota::check(&cx, over.as_ref()));
    findings.extend(spin::check(&cx, over.as_ref()));
    findings.extend(over.map(|o| o.finding));
    let wall_s = profile.meta.wall_ns as f64 / 1e9;
    let cpu_s = profile.cpu().total_ns() as f64 / 1e9;
    findings.retain_mut(|f| match severity_from_cost(f, wall_s, cpu_s) {
        Some(s) => {
            f.severity = s;
            true
        }
        None => false,
    });
    findings.sort_by(|a, b| {
        let cost = |f: &cpuprof_model::Finding| f.est_saving_wall_s + 0.1 * f.est_saving_cpu_s;
        cost(b)
            .total_cmp(&cost(a))
            .then(b.severity.cmp(&a.severity))
    });
    let runtimes = cx
        .loaded
        .iter()
        .flat_map(|(pid, ls)| {
            let cx = &cx;
            ls.iter().map(move |l| ProcessRuntime {
                pid: *pid,
                name: l.runtime.name.to_string(),
                library: l.library.clone(),
                knobs: l.knobs.clone(),
                threads: cx
                    .profile
                    .process(*pid)
                    .map(|p| {
                        p.threads
                            .iter()
                            .filter(|t| {
                                cx.classes.get(&t.tid).and_then(|c| c.runtime.as_deref())
                                    == Some(l.runtime.name)
                            })
                            .map(|t| t.tid)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect();
    Analysis {
        findings,
        threads: cx.classes.clone(),
        runtimes,
        wait_frames: waitloops::wait_frames(profile, &cx.wait_loops),
    }
}
