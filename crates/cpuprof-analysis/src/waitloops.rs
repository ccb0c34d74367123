//! The runtimes' busy-wait loops, recognised by a sample's innermost user-space frame.
//!
//! A pool thread between two pieces of work either sleeps (futex, condition variable: no CPU)
//! or spins in one of these functions (CPU burned, no work done). Kernels (`dgemm_kernel_*`,
//! `*copy*`) and OpenMP outlined regions (`._omp_fn.*`) are work and never match.

use std::collections::BTreeSet;

use cpuprof_model::{Frame, FrameId, FrameKind, Profile};

use crate::runtimes::{self, Family, Runtime, GNU_OPENMP, LLVM_OPENMP, OPENBLAS};

/// OpenBLAS functions whose self time is waiting: the worker's poll loop, the caller waiting
/// for its workers, and `inner_thread`'s own synchronisation (its work is in kernels it calls).
const OPENBLAS_WAIT: &[&str] = &["blas_thread_server", "exec_blas_async_wait", "inner_thread"];
/// Of those, the waits inside a call, for the partners' share of it: the caller's for its
/// workers, and `inner_thread`'s for the panels the other threads of the call pack (OpenBLAS
/// `driver/level3/level3_thread.c`). A worker in `blas_thread_server` waits for a next call.
const OPENBLAS_IN_CALL: &[&str] = &["exec_blas_async_wait", "inner_thread"];
/// libgomp's barrier and lock slow paths (the spin of `do_spin` is inlined into them) and
/// the worker's idle loop.
const GOMP_WAIT: &[&str] = &[
    "gomp_barrier_wait_end",
    "gomp_team_barrier_wait_end",
    "gomp_team_barrier_wait_final",
    "gomp_team_barrier_wait_cancel_end",
    "gomp_thread_start",
    "gomp_sem_wait_slow",
    "gomp_mutex_lock_slow",
    "do_spin",
    "do_wait",
];
/// LLVM and Intel OpenMP wait and barrier functions (prefixes).
const KMP_WAIT_PREFIXES: &[&str] = &[
    "__kmp_wait",
    "__kmp_hyper_barrier",
    "__kmp_fork_barrier",
    "__kmp_join_barrier",
    "__kmp_barrier",
    "__kmp_yield",
];
/// `sched_yield` spellings (libc).
const YIELD: &[&str] = &["sched_yield", "__sched_yield", "__GI___sched_yield"];

/// The function name without a `+0x...` offset or a `(...)` argument list.
fn bare(name: &str) -> &str {
    let n = name.split('+').next().unwrap_or(name);
    n.split('(').next().unwrap_or(n).trim()
}

/// If the innermost user frame of this stack (root first) is a runtime's wait loop, that
/// runtime.
pub fn wait_loop(frames: &[&Frame]) -> Option<&'static Runtime> {
    let user: Vec<&&Frame> = frames
        .iter()
        .filter(|f| f.kind != FrameKind::Kernel)
        .collect();
    let leaf = user.last()?;
    let name = bare(&leaf.name);
    if OPENBLAS_WAIT.contains(&name) {
        return Some(&OPENBLAS);
    }
    if GOMP_WAIT.contains(&name) {
        return Some(&GNU_OPENMP);
    }
    if KMP_WAIT_PREFIXES.iter().any(|p| name.starts_with(p))
        || (name.contains("kmp_flag") && name.contains("wait"))
    {
        // One code base: libomp (LLVM) or libiomp5 (Intel), by the library.
        return Some(
            leaf.module
                .as_deref()
                .and_then(runtimes::runtime_of_library)
                .filter(|r| r.family == Family::OpenMp)
                .unwrap_or(&LLVM_OPENMP),
        );
    }
    if leaf.name.contains("+0x") {
        // Stripped builds (Debian's OpenBLAS and libgomp keep only exported symbols): the
        // work (BLAS kernels, OpenMP outlined regions) has exported names, while the thread
        // server, `inner_thread` and the barrier loops are internal. Unnamed code inside a
        // pool runtime is therefore the runtime's own waiting.
        let rt = leaf
            .module
            .as_deref()
            .and_then(runtimes::runtime_of_library)?;
        return (rt.name == OPENBLAS.name || rt.family == Family::OpenMp).then_some(rt);
    }
    if YIELD.contains(&name) && user.len() >= 2 {
        // sched_yield called from a runtime library: the caller's module says which.
        let caller = user[user.len() - 2];
        let rt = caller
            .module
            .as_deref()
            .and_then(runtimes::runtime_of_library)?;
        return Some(rt);
    }
    None
}

/// Whether the innermost user frame of this stack (root first) is a wait inside a call for
/// the partners' share of it ([`OPENBLAS_IN_CALL`]), rather than a worker's wait for work. Only
/// OpenBLAS's are told apart: OpenMP's barriers serve both, and Debian's builds name neither.
pub fn waits_in_call(frames: &[&Frame]) -> bool {
    frames
        .iter()
        .rev()
        .find(|f| f.kind != FrameKind::Kernel)
        .is_some_and(|leaf| OPENBLAS_IN_CALL.contains(&bare(&leaf.name)))
}

/// Whether waiting in `wait`'s loops is `pool`'s waiting: its own loops, or an OpenMP
/// runtime's when the pool runs on OpenMP (a BLAS built with OpenMP threading, such as
/// Debian's `openblas-openmp` or MKL's threading layers, and numba's OpenMP layer, wait in the
/// OpenMP barrier). An
/// OpenBLAS pool idling in a process whose numexpr pool is the one oversubscribed is not it.
pub fn waits_for(pool: &Runtime, wait: &Runtime) -> bool {
    pool.name == wait.name
        || ((pool.family == Family::Blas || pool.on_openmp()) && wait.family == Family::OpenMp)
}

/// The frames that are wait loops in the profile's samples: for every sampled stack that
/// [`wait_loop`] classifies, its innermost user frame.
pub fn wait_frames(profile: &Profile) -> BTreeSet<FrameId> {
    let stacks: BTreeSet<_> = profile.samples.iter().filter_map(|s| s.stack).collect();
    let mut out = BTreeSet::new();
    for stack in stacks {
        let ids = profile.stacks.frames_of(stack);
        let frames: Vec<&Frame> = ids.iter().map(|&i| profile.stacks.frame(i)).collect();
        if wait_loop(&frames).is_some() {
            let leaf = ids
                .iter()
                .rev()
                .find(|&&i| profile.stacks.frame(i).kind != FrameKind::Kernel);
            out.extend(leaf);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::native;

    const OB: &str = "/v/numpy.libs/libscipy_openblas64_-1.so";

    fn w(frames: &[Frame]) -> Option<&'static str> {
        let refs: Vec<&Frame> = frames.iter().collect();
        wait_loop(&refs).map(|r| r.name)
    }

    #[test]
    fn wait_frames_are_the_spinning_leaves_only() {
        use crate::testutil::{add_samples, busy_thread, profile_with};
        let mut p = profile_with(2, vec![(1, vec![busy_thread(2, 1.0, 1.0, 0.0)])]);
        let start = native("start_thread", "/lib/libc.so.6");
        let server = native("blas_thread_server", OB);
        add_samples(&mut p, 1, 2, &[start.clone(), server.clone()], 3);
        add_samples(
            &mut p,
            1,
            2,
            &[start, server, native("dgemm_kernel_HASWELL", OB)],
            3,
        );
        let names: Vec<_> = wait_frames(&p)
            .iter()
            .map(|&i| p.stacks.frame(i).name.as_str())
            .collect();
        assert_eq!(names, vec!["blas_thread_server"]);
    }

    #[test]
    fn classifies_leaves() {
        let start = native("start_thread", "/lib/libc.so.6");
        assert_eq!(
            w(&[start.clone(), native("blas_thread_server", OB)]),
            Some("OpenBLAS")
        );
        // Work: the kernel is the leaf.
        assert_eq!(
            w(&[
                start.clone(),
                native("blas_thread_server", OB),
                native("inner_thread", OB),
                native("dgemm_kernel_HASWELL", OB)
            ]),
            None
        );
        assert_eq!(
            w(&[
                start.clone(),
                native("inner_thread", OB),
                native("sched_yield", "/lib/libc.so.6"),
                Frame {
                    kind: FrameKind::Kernel,
                    name: "do_sched_yield".into(),
                    module: None,
                    line: None,
                    short_file: None,
                }
            ]),
            Some("OpenBLAS")
        );
        // sched_yield from elsewhere is not the runtime's.
        assert_eq!(
            w(&[
                native("main", "/bin/x"),
                native("sched_yield", "/lib/libc.so.6")
            ]),
            None
        );
        assert_eq!(
            w(&[
                start.clone(),
                native("gomp_thread_start", "/l/libgomp.so.1"),
                native("gomp_team_barrier_wait_end", "/l/libgomp.so.1")
            ]),
            Some("GNU OpenMP")
        );
        assert_eq!(
            w(&[start.clone(), native("main._omp_fn.0", "/bin/x")]),
            None
        );
        assert_eq!(
            w(&[native(
                "kmp_flag_64<false, true>::wait(kmp_info*, int)",
                "/l/libomp.so"
            )]),
            Some("LLVM OpenMP")
        );
        // Stripped library: unnamed code in the runtime is its waiting, exported names work.
        let deb = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";
        assert_eq!(
            w(&[start.clone(), native("libopenblas.so.0+0x374c10", deb)]),
            Some("OpenBLAS")
        );
        assert_eq!(
            w(&[
                start.clone(),
                native("libopenblas.so.0+0x374c10", deb),
                native("dgemm_kernel_HASWELL", deb)
            ]),
            None
        );
        assert_eq!(
            w(&[start.clone(), native("libc.so.6+0x1234", "/lib/libc.so.6")]),
            None
        );
        assert_eq!(
            w(&[start, native("__kmp_fork_barrier", "/l/libiomp5.so")]),
            Some("Intel OpenMP")
        );
    }
}
