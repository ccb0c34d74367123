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

use cpuprof_model::{Analysis, Pid, ProcessRuntime, Profile, ThreadClass, Tid};

pub mod demand;
pub mod fixes;
pub mod nested;
pub mod oversubscription;
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
    /// Runnable demand over time.
    pub demand: demand::Demand,
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
        let classes = roles::classify(profile, &loaded);
        Context {
            profile,
            budget: profile.machine.cpu_budget(),
            loaded,
            classes,
            demand: demand::Demand::of(profile),
        }
    }

    /// The pool runtime (BLAS or OpenMP) that a process's workers belong to, if any: the one
    /// most of its classified workers name, else the first loaded.
    pub fn pool_runtime(&self, pid: Pid) -> Option<&'static runtimes::Runtime> {
        let loaded = self.loaded.get(&pid)?;
        let p = self.profile.process(pid)?;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for th in &p.threads {
            if let Some(rt) = self.classes.get(&th.tid).and_then(|c| c.runtime.as_deref()) {
                *counts.entry(rt).or_default() += 1;
            }
        }
        let best = counts.iter().max_by_key(|(_, n)| **n).map(|(n, _)| *n);
        loaded
            .iter()
            .map(|l| l.runtime)
            .find(|r| Some(r.name) == best)
            .or_else(|| {
                loaded
                    .iter()
                    .map(|l| l.runtime)
                    .find(|r| matches!(r.family, runtimes::Family::Blas | runtimes::Family::OpenMp))
            })
    }

    /// Worker threads of a process's pools.
    pub fn workers(&self, pid: Pid) -> Vec<Tid> {
        self.profile
            .process(pid)
            .map(|p| {
                p.threads
                    .iter()
                    .filter(|t| {
                        self.classes
                            .get(&t.tid)
                            .is_some_and(|c| c.runtime.is_some())
                    })
                    .map(|t| t.tid)
                    .collect()
            })
            .unwrap_or_default()
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
        wait_frames: waitloops::wait_frames(profile),
    }
}
