//! `nested-pools`: a process pool whose workers each run a BLAS/OpenMP pool wider than
//! budget ÷ workers.
//!
//! The usual cause of oversubscription in Python: multiprocessing, joblib, Dask or a PyTorch
//! DataLoader start one worker per core, and NumPy in each worker starts one BLAS thread per
//! core. The framework matters for the fix, so it is recognised from the workers' and the
//! parent's command lines and Python frames.

use std::collections::{BTreeMap, BTreeSet};

use cpuprof_model::{Finding, Pid, Profile};

use crate::fixes;
use crate::oversubscription::Over;
use crate::roles::is_python;
use crate::runtimes::{self, Runtime};
use crate::Context;

/// A process-pool framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// `multiprocessing.Pool` / `Process`.
    Multiprocessing,
    /// `concurrent.futures.ProcessPoolExecutor`.
    ConcurrentFutures,
    /// joblib (loky backend or multiprocessing backend).
    Joblib,
    /// Dask distributed workers.
    Dask,
    /// PyTorch `DataLoader` workers.
    DataLoader,
}

impl Framework {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Multiprocessing => "multiprocessing",
            Framework::ConcurrentFutures => "concurrent.futures",
            Framework::Joblib => "joblib",
            Framework::Dask => "Dask",
            Framework::DataLoader => "PyTorch DataLoader",
        }
    }
}

/// Markers in Python file paths and command lines, most specific first.
const MARKERS: &[(&str, Framework)] = &[
    ("torch/utils/data", Framework::DataLoader),
    ("distributed/", Framework::Dask),
    ("dask", Framework::Dask),
    ("joblib", Framework::Joblib),
    ("loky", Framework::Joblib),
    ("concurrent/futures/process", Framework::ConcurrentFutures),
    ("multiprocessing", Framework::Multiprocessing),
];

/// Recognises the framework from the processes' command lines and Python frames.
pub fn framework(profile: &Profile, pids: &BTreeSet<Pid>) -> Option<Framework> {
    let mut texts: Vec<String> = profile
        .processes
        .iter()
        .filter(|p| pids.contains(&p.pid))
        .map(|p| p.command.join(" "))
        .collect();
    let mut seen = BTreeSet::new();
    for s in profile
        .python_samples
        .iter()
        .filter(|s| pids.contains(&s.pid))
    {
        let Some(stack) = s.stack else { continue };
        if !seen.insert(stack) {
            continue;
        }
        for id in profile.stacks.frames_of(stack) {
            if let Some(m) = &profile.stacks.frame(id).module {
                texts.push(m.clone());
            }
        }
    }
    MARKERS
        .iter()
        .find(|(m, _)| texts.iter().any(|t| t.contains(m)))
        .map(|(_, f)| *f)
}

/// The framework-specific fix.
pub fn fix_for(fw: Option<Framework>, rt: &Runtime, k: u32, python: bool) -> String {
    let api = fixes::user_api(rt);
    let env = fixes::limit_pool(rt, k, python);
    match fw {
        Some(Framework::Multiprocessing) => format!(
            "multiprocessing.Pool(n, initializer=threadpoolctl.threadpool_limits, \
             initargs=({k}, \"{api}\")), or {env}"
        ),
        Some(Framework::ConcurrentFutures) => format!(
            "ProcessPoolExecutor(n, initializer=threadpoolctl.threadpool_limits, \
             initargs=({k}, \"{api}\")), or {env}"
        ),
        Some(Framework::Joblib) => format!(
            "use joblib's loky backend (the default; it limits inner threads to cpu_count // n_jobs) \
             or `with joblib.parallel_config(inner_max_num_threads={k}):` around the Parallel call"
        ),
        Some(Framework::Dask) => format!(
            "start workers under the nanny (the default; it sets the thread variables to 1), or \
             `dask.config.set({{\"distributed.nanny.pre-spawn-environ.{}\": {k}}})`",
            rt.limit_var
        ),
        Some(Framework::DataLoader) => format!(
            "DataLoader(..., worker_init_fn=lambda _: threadpoolctl.threadpool_limits({k}, \
             user_api=\"{api}\")) — torch.set_num_threads does not limit NumPy's {}",
            rt.name
        ),
        None => env,
    }
}

/// Checks whether the oversubscription comes from a process pool of wide pools.
pub fn check(cx: &Context, over: Option<&Over>) -> Option<Finding> {
    let over = over?;
    // Members that share a parent: the pool's workers.
    let mut by_parent: BTreeMap<Pid, Vec<&crate::oversubscription::Member>> = BTreeMap::new();
    for m in &over.members {
        if let Some(p) = cx.profile.process(m.pid) {
            by_parent.entry(p.ppid).or_default().push(m);
        }
    }
    let (parent, workers) = by_parent.into_iter().max_by_key(|(_, v)| v.len())?;
    let n = workers.len();
    if n < 2 {
        return None;
    }
    let per_worker = cx.budget / n as f64;
    // Each worker's own pool: its workers plus the calling thread.
    let wide: Vec<_> = workers
        .iter()
        .filter(|m| m.runtime.is_some() && (cx.workers(m.pid).len() + 1) as f64 > per_worker)
        .collect();
    if wide.len() < 2 {
        return None;
    }
    let rt = runtimes::ALL
        .iter()
        .find(|r| Some(r.name) == wide[0].runtime)?;
    let pool = cx.workers(wide[0].pid).len() + 1;
    let mut pids: BTreeSet<Pid> = workers.iter().map(|m| m.pid).collect();
    pids.insert(parent);
    let fw = framework(cx.profile, &pids);
    let python = workers
        .iter()
        .any(|m| cx.profile.process(m.pid).is_some_and(is_python));
    // A native program's own worker processes: the oversubscription finding already says
    // all there is (same fix); the framework-specific advice is what this rule adds.
    if fw.is_none() && !python {
        return None;
    }
    let k = fixes::threads_per_process(cx.budget, n);
    let share = wide.iter().map(|m| m.active.len()).sum::<usize>() as f64
        / over
            .members
            .iter()
            .map(|m| m.active.len())
            .sum::<usize>()
            .max(1) as f64;
    let fw_name = fw.map(Framework::name).unwrap_or("process");
    Some(Finding {
        id: "nested-pools".into(),
        severity: over.finding.severity,
        title: format!(
            "{fw_name} pool of {n} workers, each with {pool} {} threads",
            rt.name
        ),
        detail: format!(
            "{n} worker processes of pid {parent} ({fw_name}) each run a pool of {pool} {} \
             threads, wider than the budget per worker ({} / {n} = {per_worker:.2}); \
             {} threads in all. Limit each worker to {k}.",
            rt.name,
            fixes::cores(cx.budget),
            n * pool
        ),
        fix: fix_for(fw, rt, k, python),
        est_saving_cpu_s: over.waste_cpu_s * share,
        est_saving_wall_s: over.finding.est_saving_wall_s * share,
        pids: wide.iter().map(|m| m.pid).collect(),
        tids: wide.iter().flat_map(|m| m.active.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{busy_thread, profile_with, py, with_library};

    const OB: &str = "/v/numpy.libs/libscipy_openblas64_-1.so";

    fn pool(threads: u32) -> Profile {
        let cpu = (2.0 / (2 * threads) as f64).min(1.0);
        let mk = |pid: u32| {
            let mut th: Vec<_> = (0..threads)
                .map(|t| busy_thread(pid + t, 3.0, cpu, 1.0 - cpu))
                .collect();
            for t in &mut th {
                t.name = "python3".into();
            }
            (pid, th)
        };
        let mut p = profile_with(
            2,
            vec![(5, vec![busy_thread(5, 3.0, 0.0, 0.0)]), mk(100), mk(110)],
        );
        for pr in &mut p.processes {
            pr.command = vec!["python3".into(), "job.py".into()];
            if pr.pid != 5 {
                pr.ppid = 5;
            }
        }
        with_library(&mut p, 100, OB);
        with_library(&mut p, 110, OB);
        let ids: Vec<_> = [py("worker", "/usr/lib/python3.12/multiprocessing/pool.py")]
            .into_iter()
            .map(|f| p.stacks.intern_frame(f))
            .collect();
        let stack = p.stacks.intern_stack(&ids);
        p.python_samples.push(cpuprof_model::PythonSample {
            t: 0,
            pid: 100,
            tid: 100,
            stack,
            owns_gil: true,
            active: true,
            repeats: 1,
        });
        p
    }

    #[test]
    fn multiprocessing_pool_of_wide_blas_pools() {
        let p = pool(2);
        let a = crate::analyze(&p);
        let f = a
            .findings
            .iter()
            .find(|f| f.id == "nested-pools")
            .expect("nested");
        assert_eq!(
            f.title,
            "multiprocessing pool of 2 workers, each with 2 OpenBLAS threads"
        );
        assert!(f.fix.contains("initargs=(1, \"blas\")"), "{}", f.fix);
        assert!(a.findings.iter().any(|f| f.id == "oversubscription"));
    }

    #[test]
    fn workers_limited_to_one_thread_are_fine() {
        let a = crate::analyze(&pool(1));
        assert!(a.findings.is_empty(), "{:?}", a.findings);
    }

    #[test]
    fn frameworks_from_command_lines() {
        let mut p = pool(1);
        p.python_samples.clear();
        p.processes[1].command = vec![
            "python3".into(),
            "-c".into(),
            "from joblib.externals.loky.backend.popen_loky_posix import main".into(),
        ];
        let pids: BTreeSet<Pid> = [100].into();
        assert_eq!(framework(&p, &pids), Some(Framework::Joblib));
        let pids: BTreeSet<Pid> = [110].into();
        assert_eq!(framework(&p, &pids), None);
    }
}
