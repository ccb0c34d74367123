//! Names of the runtimes' busy-wait functions (DESIGN.md), so the flamegraph can colour CPU
//! burned waiting apart from CPU spent working.
//!
//! The analysis crate decides what a spin *finding* is; this list only colours frames. The
//! page paints the *self time* of these functions (the part of the frame with no callee above
//! it) in the spin colour: `inner_thread` time spent in `dgemm_kernel` stays a work colour.

/// Exact function names of wait loops.
const WAIT_NAMES: &[&str] = &[
    // OpenBLAS
    "blas_thread_server",
    "exec_blas_async_wait",
    "inner_thread",
    // GNU OpenMP
    "gomp_barrier_wait_end",
    "gomp_team_barrier_wait_end",
    "gomp_team_barrier_wait_final",
    "gomp_team_barrier_wait_cancel_end",
    "gomp_thread_start",
    "gomp_sem_wait_slow",
    "gomp_mutex_lock_slow",
    "do_spin",
    "do_wait",
    // libc
    "sched_yield",
    "__sched_yield",
    "__GI___sched_yield",
];

/// Prefixes of Intel/LLVM OpenMP wait and barrier functions.
const WAIT_PREFIXES: &[&str] = &[
    "__kmp_wait",
    "__kmp_hyper_barrier",
    "__kmp_fork_barrier",
    "__kmp_join_barrier",
    "__kmp_barrier",
    "__kmp_yield",
];

/// Whether `name` (a frame's function name) is a runtime's busy-wait function.
pub fn is_wait_loop(name: &str) -> bool {
    let n = name.split('+').next().unwrap_or(name);
    let n = n.split('(').next().unwrap_or(n).trim();
    WAIT_NAMES.contains(&n)
        || WAIT_PREFIXES.iter().any(|p| n.starts_with(p))
        || (n.contains("kmp_flag") && n.contains("wait"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_loops_and_work() {
        assert!(is_wait_loop("blas_thread_server"));
        assert!(is_wait_loop("gomp_team_barrier_wait_end"));
        assert!(is_wait_loop("__kmp_wait_template<kmp_flag_64>"));
        assert!(is_wait_loop("kmp_flag_64::wait(kmp_info*)"));
        assert!(!is_wait_loop("dgemm_kernel_HASWELL"));
        assert!(!is_wait_loop("main._omp_fn.0"));
        assert!(!is_wait_loop("futex_wait"));
    }
}
