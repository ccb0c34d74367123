//! The exact change each finding recommends.
//!
//! Pools must be sized before the runtime starts them: OpenBLAS and libgomp read their
//! variables once, when the library loads (for Python: at `import numpy`). So the fix is a
//! variable in the environment of the launch, or in code before the import, or threadpoolctl
//! at run time, which resizes pools that already exist.

use crate::runtimes::{Family, Runtime};

/// Threads per process that fit the budget: `max(1, floor(budget) / processes)`.
pub fn threads_per_process(budget: f64, processes: usize) -> u32 {
    let cores = budget.floor().max(1.0) as u32;
    (cores / processes.max(1) as u32).max(1)
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
pub fn limit_pool(rt: &Runtime, k: u32, python: bool) -> String {
    let var = if rt.limit_var.is_empty() {
        "OMP_NUM_THREADS"
    } else {
        rt.limit_var
    };
    if python {
        format!(
            "{var}={k} in the environment before NumPy is imported (shell: `export {var}={k}`; \
             or first thing in the script: `os.environ[\"{var}\"] = \"{k}\"` before `import numpy`); \
             at run time: `threadpoolctl.threadpool_limits({k}, user_api=\"{}\")`",
            user_api(rt)
        )
    } else {
        format!("{var}={k} in the program's environment (`export {var}={k}`)")
    }
}

/// Stop a runtime's workers from spinning.
pub fn stop_spinning(rt: &Runtime) -> String {
    match rt.name {
        "OpenBLAS" => "OPENBLAS_THREAD_TIMEOUT=4 (workers go to sleep after 2^4 cycles instead \
                       of 2^28, ~0.1 s); if the matrices are small, OPENBLAS_NUM_THREADS=1"
            .to_string(),
        "GNU OpenMP" => "OMP_WAIT_POLICY=passive (or GOMP_SPINCOUNT=0)".to_string(),
        "Intel/LLVM OpenMP" | "MKL" => "KMP_BLOCKTIME=0 (or OMP_WAIT_POLICY=passive)".to_string(),
        _ => "OMP_WAIT_POLICY=passive".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::{GNU_OPENMP, OPENBLAS};

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
        assert!(limit_pool(&GNU_OPENMP, 1, true).contains("user_api=\"openmp\""));
        assert!(stop_spinning(&GNU_OPENMP).contains("OMP_WAIT_POLICY=passive"));
    }
}
