//! The exact change each finding recommends.
//!
//! Pools must be sized before the runtime starts them: OpenBLAS and libgomp read their
//! variables once, when the library loads (for Python: at `import numpy`). So the fix is a
//! variable in the environment of the launch, or in code before the import, or threadpoolctl
//! at run time, which resizes pools that already exist.

use std::collections::BTreeMap;

use crate::runtimes::{Family, Runtime};

/// Threads per process that fit the budget: `max(1, floor(budget) / processes)`.
pub fn threads_per_process(budget: f64, processes: usize) -> u32 {
    threads_per_caller(budget, processes, 1)
}

/// Pool size that fits the budget when `processes` processes each have `callers` threads
/// calling into the pool at once: `max(1, floor(budget) / (processes × callers))`.
pub fn threads_per_caller(budget: f64, processes: usize, callers: usize) -> u32 {
    let cores = budget.floor().max(1.0) as u32;
    (cores / (processes.max(1) * callers.max(1)) as u32).max(1)
}

/// The threadpoolctl `user_api` for a runtime.
pub fn user_api(rt: &Runtime) -> &'static str {
    match rt.family {
        Family::OpenMp => "openmp",
        _ => "blas",
    }
}

/// Human-readable core count: `2 cores`, `0.5 CPUs`.
pub fn cores(budget: f64) -> String {
    if (budget - budget.round()).abs() < 1e-9 {
        let n = budget.round() as u64;
        format!("{n} core{}", if n == 1 { "" } else { "s" })
    } else {
        format!("{budget:.2} CPUs")
    }
}

/// Limit a runtime's pool to `k` threads, worded for a Python or a native program.
///
/// The variable is read once, when the pool starts (for Python: at the import that loads the
/// library), so it goes into the environment of the launch, or into the script before that
/// import. Worker processes inherit the environment of the parent at the time they start,
/// which is why the environment works where a pool initializer may not (a task that imports
/// NumPy after the initializer ran starts a full-width pool).
pub fn limit_pool(rt: &Runtime, k: u32, python: bool) -> String {
    if rt.limit_var.is_empty() {
        return match rt.call(k) {
            Some(call) => format!(
                "{} reads no environment variable for its pool: size it in the code that \
                 creates it{}: `{call}`",
                rt.name,
                if python {
                    " (in each worker process)"
                } else {
                    ""
                }
            ),
            None => format!("limit {}'s pool to {k} threads", rt.name),
        };
    }
    let var = rt.limit_var;
    if !python {
        return format!("{var}={k} in the program's environment (`export {var}={k}`)");
    }
    let mut s = limit_pool_env(rt, k, python);
    if let Some(call) = rt.call(k) {
        s.push_str(&format!(
            "; at run time, in the code that calls it (in each worker, not a pool initializer): `{call}`"
        ));
    }
    s
}

/// [`limit_pool`] without the run-time call: the environment only.
pub fn limit_pool_env(rt: &Runtime, k: u32, python: bool) -> String {
    if rt.limit_var.is_empty() || !python {
        return limit_pool(rt, k, python);
    }
    let var = rt.limit_var;
    let import = if rt.import.is_empty() {
        "the library that starts the pool".to_string()
    } else {
        format!("`import {}`", rt.import)
    };
    format!(
        "{var}={k} in the environment before the interpreter starts (shell: `export {var}={k}`), \
         or first thing in the script, before {import} and before any worker starts: \
         `os.environ[\"{var}\"] = \"{k}\"`"
    )
}

/// Limit a pool cpuprof does not know: name it, and the knobs of the loaded runtimes that
/// might own it, each where it goes (a variable in the environment, a call in the code).
pub fn limit_unknown(label: &str, candidates: &[&'static Runtime], k: u32, python: bool) -> String {
    let mut s = format!(
        "limit the pool of threads named {label} to {k}: cpuprof does not know its setting"
    );
    let knobs: Vec<String> = candidates
        .iter()
        .map(|r| {
            let how = if !r.limit_var.is_empty() {
                let var = r.limit_var;
                if python {
                    format!("{var}={k} in the environment before the interpreter starts")
                } else {
                    format!("{var}={k}")
                }
            } else if let Some(call) = r.call(k) {
                format!("`{call}` in the code that starts it")
            } else {
                "no known setting".to_string()
            };
            format!("{} ({how})", r.name)
        })
        .collect();
    if !knobs.is_empty() {
        s.push_str(&format!(
            "; the runtimes loaded that start such threads: {}",
            knobs.join(", ")
        ));
    }
    s
}

/// Fewer single-threaded processes.
pub fn fewer_processes(budget: f64) -> String {
    let n = budget.floor().max(1.0);
    format!(
        "use {n} processes (`multiprocessing.Pool({n})`, `n_jobs={n}`, `make -j{n}`): the same \
         throughput with less memory and no time-slicing"
    )
}

/// The environment a pool limit sets: `{VAR: k}`, empty for runtimes with no variable.
pub fn pool_setting(rt: &Runtime, k: u32) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if !rt.limit_var.is_empty() {
        m.insert(rt.limit_var.to_string(), k.to_string());
    }
    m
}

/// The environment [`stop_spinning`] sets: none for onnxruntime, whose spinning is a session
/// option.
pub fn spin_setting(rt: &Runtime) -> BTreeMap<String, String> {
    let (k, v) = match rt.name {
        "onnxruntime" => return BTreeMap::new(),
        "OpenBLAS" => ("OPENBLAS_NUM_THREADS", "1"),
        "LLVM OpenMP" | "Intel OpenMP" | "MKL" => ("KMP_BLOCKTIME", "0"),
        "BLIS" => ("BLIS_NUM_THREADS", "1"),
        _ => ("OMP_WAIT_POLICY", "passive"),
    };
    BTreeMap::from([(k.to_string(), v.to_string())])
}

/// Stop a runtime's workers from spinning.
pub fn stop_spinning(rt: &Runtime) -> String {
    match rt.name {
        // Measured (`cpuprof sweep` on examples/threads_blas.py): with many short calls,
        // workers that fall asleep at once make every call wait for them to wake — the
        // timeout made the program 2.6x slower, one thread 22% faster.
        "OpenBLAS" => "OPENBLAS_NUM_THREADS=1 when the products are small or frequent (sleeping \
                       workers would make every call wait for them to wake); for large \
                       products run rarely, OPENBLAS_THREAD_TIMEOUT=4 (workers sleep after 2^4 \
                       cycles instead of 2^28, ~0.1 s) — `cpuprof sweep` measures both"
            .to_string(),
        "GNU OpenMP" => "OMP_WAIT_POLICY=passive (or GOMP_SPINCOUNT=0)".to_string(),
        "LLVM OpenMP" | "Intel OpenMP" | "MKL" => {
            "KMP_BLOCKTIME=0 (or OMP_WAIT_POLICY=passive)".to_string()
        }
        "OpenBLAS (OpenMP build)" => "OMP_WAIT_POLICY=passive (or GOMP_SPINCOUNT=0)".to_string(),
        // onnxruntime docs, "Thread management": `session.intra_op.allow_spinning`.
        "onnxruntime" => "`options.add_session_config_entry(\"session.intra_op.allow_spinning\", \
                          \"0\")` on the SessionOptions of every InferenceSession (its workers \
                          then sleep between operators; no environment variable does it)"
            .to_string(),
        // BLIS's own barrier (its pthreads build; the OpenMP build waits in the OpenMP
        // runtime's) spins until its partners arrive, and no setting makes it sleep
        // (`frame/thread/bli_thrcomm.c`): only fewer threads per call spin less.
        "BLIS" => "BLIS_NUM_THREADS=1 (BLIS's barrier spins until every thread of the call \
                   arrives, and no setting makes it sleep: one thread per call has no barrier \
                   to wait at)"
            .to_string(),
        _ => "OMP_WAIT_POLICY=passive".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::{BLIS, GNU_OPENMP, ONNXRUNTIME, OPENBLAS, POLARS};

    #[test]
    fn per_process_threads() {
        assert_eq!(threads_per_process(2.0, 2), 1);
        assert_eq!(threads_per_process(8.0, 2), 4);
        assert_eq!(threads_per_process(0.5, 1), 1);
        assert_eq!(threads_per_process(2.0, 5), 1);
    }

    #[test]
    fn wording() {
        assert_eq!(cores(2.0), "2 cores");
        assert_eq!(cores(0.5), "0.50 CPUs");
        assert!(limit_pool(&OPENBLAS, 1, true).starts_with("OPENBLAS_NUM_THREADS=1"));
        assert!(limit_pool(&OPENBLAS, 1, true).contains("before `import numpy`"));
        assert!(limit_pool(&GNU_OPENMP, 1, true).contains("user_api=\"openmp\""));
        assert!(limit_pool(&POLARS, 1, true).starts_with("POLARS_MAX_THREADS=1"));
        assert!(!limit_pool(&POLARS, 1, true).contains("at run time"));
        assert!(limit_pool(&ONNXRUNTIME, 1, true).contains("intra_op_num_threads = 1"));
        assert_eq!(threads_per_caller(2.0, 1, 2), 1);
        assert_eq!(threads_per_caller(8.0, 2, 2), 2);
        assert!(stop_spinning(&GNU_OPENMP).contains("OMP_WAIT_POLICY=passive"));
        let unknown = limit_unknown("`python`", &[&OPENBLAS, &ONNXRUNTIME], 1, true);
        assert!(unknown.contains(
            "OpenBLAS (OPENBLAS_NUM_THREADS=1 in the environment before the interpreter starts)"
        ));
        assert!(unknown.contains("intra_op_num_threads = 1; "));
        assert!(
            unknown.ends_with("in the code that starts it)"),
            "{unknown}"
        );
        assert!(stop_spinning(&BLIS).starts_with("BLIS_NUM_THREADS=1"));
        assert!(stop_spinning(&ONNXRUNTIME).contains("allow_spinning"));
        assert!(spin_setting(&ONNXRUNTIME).is_empty());
        assert_eq!(spin_setting(&BLIS)["BLIS_NUM_THREADS"], "1");
    }
}
