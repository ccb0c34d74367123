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
use crate::runtimes::Runtime;
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

/// The framework-specific fix. Order matters: a pool is sized when its library loads, so the
/// setting must be in place before the worker imports it. The environment of the parent, set
/// before the workers start, always is (they inherit it); a pool `initializer=` that calls
/// threadpoolctl only limits pools that already exist when it runs.
///
/// A runtime that reads no variable (onnxruntime, TBB) is sized in the code that makes its
/// pool, which runs in the worker whatever the framework: no framework's environment reaches
/// it (loky's and Dask's nanny's thread variables included).
pub fn fix_for(fw: Option<Framework>, rt: &Runtime, k: u32, python: bool) -> String {
    let env = fixes::limit_pool(rt, k, python);
    if rt.limit_var.is_empty() {
        return env;
    }
    let var = rt.limit_var;
    let in_task = rt
        .call(k)
        .map(|c| format!("; or `{c}` at the start of the task function itself"))
        .unwrap_or_default();
    match fw {
        Some(Framework::Multiprocessing) | Some(Framework::ConcurrentFutures) => format!(
            "{}. The workers inherit the parent's environment when they start, so set it \
             before the pool is created{in_task} — not in an `initializer=`: a task that \
             imports {} after the initializer ran still starts a full-width pool",
            fixes::limit_pool_env(rt, k, python),
            if rt.import.is_empty() {
                "the library"
            } else {
                rt.import
            }
        ),
        Some(Framework::Joblib) => format!(
            "use joblib's loky backend (the default; it sets {var} and friends to \
             cpu_count // n_jobs in each worker), with `with joblib.parallel_config(\
             inner_max_num_threads={k}):` around the Parallel call; for other backends: {env}"
        ),
        Some(Framework::Dask) => format!(
            "start workers under the nanny (the default; it sets the thread variables to 1), or \
             `dask.config.set({{\"distributed.nanny.pre-spawn-environ.{var}\": {k}}})` before \
             the cluster starts"
        ),
        Some(Framework::DataLoader) => format!(
            "DataLoader(..., worker_init_fn=lambda _: (torch.set_num_threads({k}), \
             threadpoolctl.threadpool_limits({k}))) — the workers are forked after NumPy and \
             torch are imported, so the run-time calls reach their pools; or {env}"
        ),
        None => env,
    }
}

/// Checks whether the oversubscription comes from a process pool of wide pools.
pub fn check(cx: &Context, over: Option<&Over>) -> Option<Finding> {
    let over = over?;
    let rt = over.blamed.as_ref()?.runtime()?;
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
    // Each worker's own pool: its workers plus the calling thread when it takes part.
    let size = |pid: Pid| cx.at_once(pid, &cx.workers_of(pid, rt)) + usize::from(rt.caller_works());
    let wide: Vec<_> = workers
        .iter()
        .filter(|m| m.workers > 0 && size(m.pid) as f64 > per_worker)
        .collect();
    if wide.len() < 2 {
        return None;
    }
    let pool = size(wide[0].pid);
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
    let callers = wide.iter().map(|m| m.callers).max().unwrap_or(1);
    let k = fixes::threads_per_caller(cx.budget, n, callers);
    let share = wide.iter().map(|m| m.width).sum::<usize>() as f64
        / over.members.iter().map(|m| m.width).sum::<usize>().max(1) as f64;
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
        setting: fixes::pool_setting(rt, k),
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
        assert!(f.fix.starts_with("OPENBLAS_NUM_THREADS=1"), "{}", f.fix);
        assert!(f.fix.contains("not in an `initializer=`"), "{}", f.fix);
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
