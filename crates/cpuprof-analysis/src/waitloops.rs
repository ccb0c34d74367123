//! The runtimes' busy-wait loops, recognised by a sample's innermost user-space frame.
//!
//! A pool thread between two pieces of work either sleeps (futex, condition variable: no CPU)
//! or spins in one of these functions (CPU burned, no work done). Kernels (`dgemm_kernel_*`,
//! `*copy*`) and OpenMP outlined regions (`._omp_fn.*`) are work and never match.
//!
//! Most loops are known by name. In a stripped library whose work is unnamed as well (BLIS:
//! Debian keeps only its exported functions, and its kernels are internal too), a wait loop
//! is known by its shape instead ([`WaitLoops`]).

use std::collections::{BTreeMap, BTreeSet};

use cpuprof_model::{Frame, FrameId, FrameKind, Profile, StackId, StackTable};

use crate::runtimes::{
    self, Family, Runtime, BLIS, GNU_OPENMP, LLVM_OPENMP, ONNXRUNTIME, OPENBLAS,
};

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
/// BLIS's barrier (`frame/thread/bli_thrcomm.c`: the atomic one spins on a sense flag), named
/// in builds that keep their symbols. Every one of its waits is inside a call: the pthreads
/// build's threads live for one call, the OpenMP build's idle threads wait in the OpenMP
/// runtime.
const BLIS_WAIT: &[&str] = &["bli_thrcomm_barrier_atomic", "bli_thrcomm_barrier"];
/// onnxruntime's spin (`core/common/spin_pause.h`): its workers between two pieces of work
/// and the caller waiting for its workers' share call it in their loops, a `pause` and a
/// return.
const ONNXRUNTIME_WAIT: &[&str] = &["onnxruntime::concurrency::SpinPause"];
/// Runtimes whose stripped builds leave their wait loops and their kernels alike unnamed, so
/// that unnamed code is not the waiting by itself: BLIS (Debian's `libblis4-*` keep only
/// exported functions; its barrier and its assembly kernels are internal) and onnxruntime (its
/// pip wheel exports `PyInit_*` alone; `SpinPause`'s samples fall on the one address after its
/// `pause`, its MLAS kernels' spread over hundreds of bytes).
const UNNAMED_AMONG_WORK: &[&str] = &[BLIS.name, ONNXRUNTIME.name];
/// Of those, the runtimes whose tight loop is a helper that returns at once, called over and
/// over by the function that waits (onnxruntime's `SpinPause`, a `pause` and a `ret`, called
/// by its workers' loop between its looks at the queues and by `run`'s wait for the workers'
/// share): that function's own code is the waiting too. In `examples/onnx_pool.py` the
/// workers' loop's own samples were a third of `SpinPause`'s. BLIS's barrier loops in itself,
/// and its caller's own code is work (packing).
const SPINS_IN_A_HELPER: &[&str] = &[ONNXRUNTIME.name];
/// A spin loop is a load, a compare and a branch back (BLIS 0.9's barrier: 8 bytes), so its
/// samples land on a few addresses within this many bytes...
pub const TIGHT_LOOP_BYTES: u64 = 16;
/// ...that hold nearly all the samples of the library's code within this many bytes around
/// them: a kernel's hot loop is hundreds of bytes of unrolled code, and its samples spread
/// over tens of addresses (BLIS's dgemm kernel: 26-42 addresses over 440 bytes in 37-95
/// samples, none holding more than 7; its barrier: 2 addresses 3 bytes apart holding 60-1410).
pub const LOOP_ISOLATION_BYTES: u64 = 64;
/// ...at least this share of them: the barrier's few bytes held 99.4-100% of its
/// neighbourhood's samples in 14 recordings (the rest: one sample of its entry code, which
/// must not make the loop unknown), the densest 16 bytes of a kernel at most 57%.
pub const TIGHT_LOOP_SHARE: f64 = 0.9;
/// ...and at least this many samples: a cold path sampled a few times is no loop.
pub const TIGHT_LOOP_SAMPLES: usize = 10;

/// `sched_yield` spellings (libc).
const YIELD: &[&str] = &["sched_yield", "__sched_yield", "__GI___sched_yield"];

/// The function name without a `+0x...` offset or a `(...)` argument list.
fn bare(name: &str) -> &str {
    let n = name.split('+').next().unwrap_or(name);
    n.split('(').next().unwrap_or(n).trim()
}

/// The offset in an unnamed frame's name (`libblis.so.4+0xb059e6`).
fn unnamed_offset(name: &str) -> Option<u64> {
    let (_, hex) = name.split_once("+0x")?;
    u64::from_str_radix(hex, 16).ok()
}

/// A sample's wait: the runtime whose loop it is in, and whether it waits inside a call for
/// the partners' share of it rather than for a next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The runtime the loop is of.
    pub runtime: &'static Runtime,
    /// Inside a call ([`OPENBLAS_IN_CALL`], BLIS's barrier).
    pub in_call: bool,
}

/// The wait loops of one profile: the name rules, and the unnamed tight loops of the
/// [`UNNAMED_AMONG_WORK`] runtimes found in its samples.
#[derive(Debug, Clone, Default)]
pub struct WaitLoops {
    /// Leaf frames that are a tight loop of such a runtime.
    tight: BTreeSet<FrameId>,
    /// The stack nodes that called a function which calls a [`SPINS_IN_A_HELPER`] tight
    /// loop: a leaf whose parent is one of them is that function's own code.
    loop_callers: BTreeSet<StackId>,
}

impl WaitLoops {
    /// Finds the tight loops among the profile's sampled leaves, per library
    /// ([`tight_loops`]).
    pub fn new(profile: &Profile) -> Self {
        let mut hits: BTreeMap<FrameId, usize> = BTreeMap::new();
        for stack in profile.samples.iter().filter_map(|s| s.stack) {
            if let Some(leaf) = user_leaf(&profile.stacks, stack) {
                *hits.entry(leaf).or_default() += 1;
            }
        }
        let mut by_module: BTreeMap<&str, Vec<(u64, FrameId, usize)>> = BTreeMap::new();
        for (&id, &n) in &hits {
            let f = profile.stacks.frame(id);
            let Some(module) = f.module.as_deref() else {
                continue;
            };
            let amid_work = runtimes::runtime_of_library(module)
                .is_some_and(|r| UNNAMED_AMONG_WORK.contains(&r.name));
            if let Some(off) = unnamed_offset(&f.name).filter(|_| amid_work) {
                by_module.entry(module).or_default().push((off, id, n));
            }
        }
        let mut tight = BTreeSet::new();
        for addrs in by_module.values_mut() {
            addrs.sort_unstable();
            tight.extend(tight_loops(addrs));
        }
        // [.., G, C, L]: L the helper, C the call in the waiting function F, G the call of F.
        let st = &profile.stacks;
        let mut loop_callers = BTreeSet::new();
        for stack in profile.samples.iter().filter_map(|s| s.stack) {
            let Some(l) = user_leaf_node(st, stack) else {
                continue;
            };
            let leaf = st.nodes[l as usize].1;
            let helper = tight.contains(&leaf)
                && runtime_of_frame(st.frame(leaf))
                    .is_some_and(|r| SPINS_IN_A_HELPER.contains(&r.name));
            let caller_node = st.nodes[l as usize].0;
            if let Some(g) = caller_node
                .filter(|_| helper)
                .and_then(|c| st.nodes[c as usize].0)
            {
                loop_callers.insert(g);
            }
        }
        WaitLoops {
            tight,
            loop_callers,
        }
    }

    /// Whether a stack's innermost user frame is a tight loop, or the own code of the function
    /// that calls a [`SPINS_IN_A_HELPER`] one (unnamed, in the same runtime).
    fn is_tight(&self, stacks: &StackTable, stack: StackId) -> bool {
        let Some(l) = user_leaf_node(stacks, stack) else {
            return false;
        };
        let (parent, leaf) = stacks.nodes[l as usize];
        let f = stacks.frame(leaf);
        self.tight.contains(&leaf)
            || (parent.is_some_and(|p| self.loop_callers.contains(&p))
                && unnamed_offset(&f.name).is_some()
                && runtime_of_frame(f).is_some_and(|r| SPINS_IN_A_HELPER.contains(&r.name)))
    }

    /// The wait a sampled stack is in, if its innermost user frame is a wait loop.
    pub fn wait(&self, stacks: &StackTable, stack: StackId) -> Option<Wait> {
        let ids = stacks.frames_of(stack);
        let frames: Vec<&Frame> = ids.iter().map(|&i| stacks.frame(i)).collect();
        let runtime = classify(&frames, self.is_tight(stacks, stack))?;
        let in_call = runtime.name == BLIS.name || waits_in_call(&frames);
        Some(Wait { runtime, in_call })
    }
}

/// The frames of the tight loops among one library's sampled addresses (`(offset, frame,
/// samples)`, sorted): every [`TIGHT_LOOP_BYTES`] window starting at a sampled address that
/// holds [`TIGHT_LOOP_SAMPLES`] and [`TIGHT_LOOP_SHARE`] of the samples within
/// [`LOOP_ISOLATION_BYTES`] around it.
fn tight_loops(addrs: &[(u64, FrameId, usize)]) -> Vec<FrameId> {
    let within = |lo: u64, hi: u64| {
        &addrs[addrs.partition_point(|a| a.0 < lo)..addrs.partition_point(|a| a.0 <= hi)]
    };
    let samples = |lo: u64, hi: u64| -> usize { within(lo, hi).iter().map(|a| a.2).sum() };
    let mut found = Vec::new();
    for &(start, ..) in addrs {
        let end = start + TIGHT_LOOP_BYTES;
        let n = samples(start, end);
        let around = samples(
            start.saturating_sub(LOOP_ISOLATION_BYTES),
            end + LOOP_ISOLATION_BYTES,
        );
        if n >= TIGHT_LOOP_SAMPLES && n as f64 >= TIGHT_LOOP_SHARE * around as f64 {
            found.extend(within(start, end).iter().map(|a| a.1));
        }
    }
    found
}

/// The runtime whose library a frame is in.
fn runtime_of_frame(f: &Frame) -> Option<&'static Runtime> {
    f.module.as_deref().and_then(runtimes::runtime_of_library)
}

/// The stack node of the innermost user-space frame of a stack.
fn user_leaf_node(stacks: &StackTable, stack: StackId) -> Option<StackId> {
    let mut cur = Some(stack);
    while let Some(id) = cur {
        let (parent, frame) = stacks.nodes[id as usize];
        if stacks.frame(frame).kind != FrameKind::Kernel {
            return Some(id);
        }
        cur = parent;
    }
    None
}

/// The innermost user-space frame of a stack.
fn user_leaf(stacks: &StackTable, stack: StackId) -> Option<FrameId> {
    user_leaf_node(stacks, stack).map(|n| stacks.nodes[n as usize].1)
}

/// If the innermost user frame of this stack (root first) is a runtime's wait loop, that
/// runtime. `tight`: that frame is an unnamed tight loop ([`WaitLoops`]).
fn classify(frames: &[&Frame], tight: bool) -> Option<&'static Runtime> {
    let user: Vec<&&Frame> = frames
        .iter()
        .filter(|f| f.kind != FrameKind::Kernel)
        .collect();
    let leaf = user.last()?;
    let name = bare(&leaf.name);
    if OPENBLAS_WAIT.contains(&name) {
        return Some(&OPENBLAS);
    }
    if BLIS_WAIT.contains(&name) {
        return Some(&BLIS);
    }
    if ONNXRUNTIME_WAIT.contains(&name) {
        return Some(&ONNXRUNTIME);
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
        // pool runtime is therefore the runtime's own waiting; in BLIS and onnxruntime, whose
        // kernels are unnamed too, only a tight loop is.
        let rt = leaf
            .module
            .as_deref()
            .and_then(runtimes::runtime_of_library)?;
        let waits = if UNNAMED_AMONG_WORK.contains(&rt.name) {
            tight
        } else {
            rt.name == OPENBLAS.name || rt.family == Family::OpenMp
        };
        return waits.then_some(rt);
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
fn waits_in_call(frames: &[&Frame]) -> bool {
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

/// The frames that are wait loops in the profile's samples: for every sampled stack in a wait
/// ([`WaitLoops::wait`]), its innermost user frame.
pub fn wait_frames(profile: &Profile, loops: &WaitLoops) -> BTreeSet<FrameId> {
    let stacks: BTreeSet<_> = profile.samples.iter().filter_map(|s| s.stack).collect();
    stacks
        .into_iter()
        .filter(|&stack| loops.wait(&profile.stacks, stack).is_some())
        .filter_map(|stack| user_leaf(&profile.stacks, stack))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::native;

    const OB: &str = "/v/numpy.libs/libscipy_openblas64_-1.so";

    fn w(frames: &[Frame]) -> Option<&'static str> {
        let refs: Vec<&Frame> = frames.iter().collect();
        classify(&refs, false).map(|r| r.name)
    }

    /// The names of the profile's wait frames.
    fn wait_names<'p>(p: &'p Profile, loops: &WaitLoops) -> BTreeSet<&'p str> {
        wait_frames(p, loops)
            .iter()
            .map(|&i| p.stacks.frame(i).name.as_str())
            .collect()
    }

    /// The wait of the first sampled stack that is in one.
    fn first_wait(p: &Profile, loops: &WaitLoops) -> Wait {
        p.samples
            .iter()
            .filter_map(|s| s.stack)
            .find_map(|s| loops.wait(&p.stacks, s))
            .expect("a sample in a wait")
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
        assert_eq!(
            wait_names(&p, &WaitLoops::new(&p)),
            BTreeSet::from(["blas_thread_server"])
        );
    }

    /// A stripped BLIS: the barrier's two sampled addresses 3 bytes apart are its waiting;
    /// a kernel's samples spread over hundreds of bytes, and a cold path sampled a few times,
    /// are not, though unnamed alike. A named barrier is known by its name.
    #[test]
    fn blis_waits_in_its_tight_loop_only() {
        use crate::testutil::{add_samples, busy_thread, profile_with};
        let blis = "/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4";
        let mut p = profile_with(2, vec![(1, vec![busy_thread(2, 1.0, 1.0, 0.0)])]);
        let start = native("start_thread", "/lib/libc.so.6");
        let at = |off: u64| native(&format!("libblis.so.4+0x{off:x}"), blis);
        add_samples(&mut p, 1, 2, &[start.clone(), at(0xb059e6)], 14);
        add_samples(&mut p, 1, 2, &[start.clone(), at(0xb059e3)], 6);
        // The barrier's entry, sampled once, is neither the loop nor what hides it.
        add_samples(&mut p, 1, 2, &[start.clone(), at(0xb059cf)], 1);
        for i in 0..40 {
            // Kernel: 40 addresses 11 bytes apart, 5 samples each.
            add_samples(&mut p, 1, 2, &[start.clone(), at(0x39286 + 11 * i)], 5);
        }
        add_samples(&mut p, 1, 2, &[start.clone(), at(0x36710)], 3);
        let loops = WaitLoops::new(&p);
        assert_eq!(
            wait_names(&p, &loops),
            BTreeSet::from(["libblis.so.4+0xb059e3", "libblis.so.4+0xb059e6"])
        );
        let wait = first_wait(&p, &loops);
        assert_eq!((wait.runtime.name, wait.in_call), ("BLIS", true));
        assert_eq!(
            w(&[start.clone(), native("bli_thrcomm_barrier_atomic", blis)]),
            Some("BLIS")
        );
        // Unnamed BLIS code is work unless it is a tight loop.
        assert_eq!(w(&[start, at(0xb059e6)]), None);
    }

    /// onnxruntime's stripped wheel: `SpinPause`'s samples fall on the one address after its
    /// `pause`, which is a wait loop of onnxruntime's, not inside a call, and so is the own
    /// code of the workers' loop that calls it; its MLAS kernel's spread samples, and what
    /// the loop calls besides, are work.
    #[test]
    fn onnxruntime_spins_in_spin_pause_and_the_loop_that_calls_it() {
        use crate::testutil::{add_samples, busy_thread, profile_with};
        let ort = "/v/onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so";
        let mut p = profile_with(2, vec![(1, vec![busy_thread(2, 1.0, 1.0, 0.0)])]);
        let start = native("start_thread", "/lib/libc.so.6");
        let at = |off: u64| native(&format!("onnxruntime_pybind11_state+0x{off:x}"), ort);
        // start → thread main (calls the loop at 0x15326d3) → loop (calls SpinPause at
        // 0x1531654) → SpinPause.
        let main = at(0x15326d3);
        let spin = [start.clone(), main.clone(), at(0x1531654), at(0x152efb2)];
        add_samples(&mut p, 1, 2, &spin, 30);
        add_samples(
            &mut p,
            1,
            2,
            &[start.clone(), main.clone(), at(0x1531cd1)],
            5,
        );
        for i in 0..30 {
            let kernel = at(0x1925300 + 9 * i);
            add_samples(
                &mut p,
                1,
                2,
                &[start.clone(), main.clone(), at(0x1531b12), kernel],
                3,
            );
        }
        let loops = WaitLoops::new(&p);
        assert_eq!(
            wait_names(&p, &loops),
            BTreeSet::from([
                "onnxruntime_pybind11_state+0x152efb2",
                "onnxruntime_pybind11_state+0x1531cd1"
            ])
        );
        let wait = first_wait(&p, &loops);
        assert_eq!((wait.runtime.name, wait.in_call), ("onnxruntime", false));
        assert_eq!(
            w(&[start, native("onnxruntime::concurrency::SpinPause()", ort)]),
            Some("onnxruntime")
        );
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
