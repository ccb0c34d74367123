//! Which BLAS and OpenMP runtimes a process loaded, and the knobs that size their pools.
//!
//! Recognition is by library base name (what `/proc/PID/maps` lists, the same file threadpoolctl
//! reads), so it works on a saved profile without the target. The knob lists are the only
//! environment variables the analysis looks at: everything else in an environment may be a
//! secret, and the collector never records it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cpuprof_model::{FrameId, Pid, Process, Profile, StackId};

/// What kind of pool a runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// A BLAS library with its own thread pool (OpenBLAS, MKL, BLIS, FlexiBLAS).
    Blas,
    /// An OpenMP runtime (libgomp, libomp, libiomp).
    OpenMp,
    /// Another library with its own worker pool (Rayon, numexpr, numba, TBB, torch, ...).
    Pool,
}

/// How a runtime's idle workers wait, which decides how the CPU they waste is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// In busy-wait loops recognised in its stacks ([`crate::waitloops`]): the waste is the
    /// spinning sampled.
    Spins,
    /// Blocked in the kernel (condition variables, futexes): an idle worker burns nothing, so
    /// the waste is what the samples show spinning, none of it the pool's own.
    Blocks,
    /// Not readable from its stacks (numba's, PyTorch's, TBB's workers): the
    /// no-stacks model ([`crate::oversubscription::NO_STACKS_WASTE`]).
    Modelled,
    /// A work-stealing pool not readable from its stacks (Rayon, polars): a worker out of work
    /// steals a preempted partner's queued work rather than waiting at a barrier, and sleeps
    /// after a few rounds of yielding, so it wastes less than a synchronous pool
    /// ([`crate::oversubscription::STEALING_WASTE`]).
    Steals,
}

/// A runtime the analysis knows: how to recognise it, its workers, and how to size its pool.
/// docs/findings.md has the same table with the source of each fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// Display name, as used in findings and the summary JSON.
    pub name: &'static str,
    /// Kind of pool.
    pub family: Family,
    /// How its idle workers wait.
    pub idle: Idle,
    /// Library base-name prefixes.
    pub prefixes: &'static [&'static str],
    /// Substrings of a library's full path (Python extension modules have generic names).
    pub paths: &'static [&'static str],
    /// Name prefixes its workers give themselves (`polars-0`); most runtimes' workers keep
    /// the process's name.
    pub thread_names: &'static [&'static str],
    /// Substrings of the functions its workers start in (the thread's start routine or the
    /// worker loop), seen in a worker's stack.
    pub worker_frames: &'static [&'static str],
    /// Environment variables that size or tune its pool.
    pub knobs: &'static [&'static str],
    /// The variable to set to limit its pool, read when the pool starts; empty when the
    /// runtime has none (TBB, onnxruntime: sized in code).
    pub limit_var: &'static str,
    /// The call that limits the pool at run time, with `{k}` for the size; empty if none.
    pub runtime_call: &'static str,
    /// The Python module whose import starts the pool (for "before `import numpy`").
    pub import: &'static str,
}

impl Runtime {
    /// Does a library path belong to this runtime?
    pub fn owns_library(&self, path: &str) -> bool {
        let base = base_name(path);
        self.prefixes.iter().any(|p| base.starts_with(p))
            || self.paths.iter().any(|p| path.contains(p))
    }

    /// The run-time call for `k` threads, if there is one.
    pub fn call(&self, k: u32) -> Option<String> {
        (!self.runtime_call.is_empty()).then(|| self.runtime_call.replace("{k}", &k.to_string()))
    }

    /// Does the calling thread take part in the pool's work (BLAS, OpenMP and the pools that
    /// are OpenMP teams: the caller is thread 0 of the team, so a pool of n has n - 1
    /// workers; onnxruntime's `run` likewise), or wait for it (Rayon, numexpr, TBB, numba's
    /// workqueue: `install`/`evaluate` blocks while the pool's own n threads work)?
    pub fn caller_works(&self) -> bool {
        matches!(self.family, Family::Blas) || self.on_openmp() || *self == ONNXRUNTIME
    }

    /// Does its pool run as an OpenMP team (an OpenMP runtime itself, or a library whose
    /// parallel regions are OpenMP's: [`OPENMP_OWNERS`])? Its idle workers then wait in the
    /// OpenMP runtime's loops.
    pub fn on_openmp(&self) -> bool {
        self.family == Family::OpenMp || OPENMP_OWNERS.contains(&self)
    }

    /// Does it run one call at a time, holding back the other threads that call it
    /// meanwhile? OpenBLAS's pthreads build takes one lock around every threaded level-3 call
    /// (`level3_lock` in its `driver/level3/level3_thread.c`; its OpenMP build does not): two
    /// application threads in `dgemm` take turns with the pool's workers, the one held back
    /// asleep in the lock (seen here: perf's `sched_switch` stacks of
    /// `examples/threads_blas.py executor` sleep in `dgemm_thread_nn`).
    pub fn serializes_calls(&self) -> bool {
        *self == OPENBLAS
    }
}

const NO: &[&str] = &[];

/// OpenBLAS, pthreads build (the pip wheels of NumPy and SciPy; Debian's `openblas-pthread`):
/// its own pool of `blas_thread_server` workers, sized by `OPENBLAS_NUM_THREADS`.
pub const OPENBLAS: Runtime = Runtime {
    name: "OpenBLAS",
    family: Family::Blas,
    idle: Idle::Spins,
    prefixes: &["libopenblas", "libscipy_openblas"],
    paths: NO,
    thread_names: NO,
    worker_frames: &["blas_thread_server"],
    knobs: &[
        "OPENBLAS_NUM_THREADS",
        "GOTO_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_THREAD_TIMEOUT",
    ],
    limit_var: "OPENBLAS_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"blas\")",
    import: "numpy",
};

/// OpenBLAS built on OpenMP (Debian's `libopenblas0-openmp`, conda's `openblas-openmp`): its
/// pool is libgomp's team and it reads `OMP_NUM_THREADS` only — `OPENBLAS_NUM_THREADS` does
/// nothing (measured: 2 threads with it set to 1), and neither does `openblas_set_num_threads`
/// (what threadpoolctl's `user_api="blas"` calls; OpenBLAS issue 5806): at run time it is
/// the OpenMP limit.
pub const OPENBLAS_OPENMP: Runtime = Runtime {
    name: "OpenBLAS (OpenMP build)",
    family: Family::Blas,
    idle: Idle::Spins,
    prefixes: NO,
    paths: &["openblas-openmp/", "openblas_openmp", "openblas-openmp."],
    thread_names: NO,
    worker_frames: NO,
    knobs: &["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY"],
    limit_var: "OMP_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"openmp\")",
    import: "numpy",
};

/// Intel MKL, whatever its threading layer (Intel OpenMP, GNU OpenMP or TBB workers):
/// `MKL_NUM_THREADS` limits it in every layer.
pub const MKL: Runtime = Runtime {
    name: "MKL",
    family: Family::Blas,
    idle: Idle::Spins,
    prefixes: &[
        "libmkl_rt",
        "libmkl_intel_thread",
        "libmkl_gnu_thread",
        "libmkl_tbb_thread",
        "libmkl_core",
    ],
    paths: NO,
    thread_names: NO,
    worker_frames: NO,
    knobs: &[
        "MKL_NUM_THREADS",
        "MKL_DYNAMIC",
        "MKL_THREADING_LAYER",
        "OMP_NUM_THREADS",
    ],
    limit_var: "MKL_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"blas\")",
    import: "numpy",
};

/// BLIS: single-threaded unless `BLIS_NUM_THREADS` (or, in both of Debian's builds,
/// `OMP_NUM_THREADS`) says otherwise. Its pthreads build starts the threads of every call and
/// joins them at its end. Its threads spin at its own barrier (`bli_thrcomm_barrier_atomic`,
/// an internal function Debian's stripped builds do not name, among kernels they do not name
/// either: it is known by its shape, [`crate::waitloops::WaitLoops`]).
pub const BLIS: Runtime = Runtime {
    name: "BLIS",
    family: Family::Blas,
    idle: Idle::Spins,
    prefixes: &["libblis"],
    paths: NO,
    thread_names: NO,
    worker_frames: NO,
    knobs: &["BLIS_NUM_THREADS", "OMP_NUM_THREADS"],
    limit_var: "BLIS_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"blas\")",
    import: "numpy",
};

/// FlexiBLAS (a switch in front of another BLAS).
pub const FLEXIBLAS: Runtime = Runtime {
    name: "FlexiBLAS",
    family: Family::Blas,
    idle: Idle::Spins,
    prefixes: &["libflexiblas"],
    paths: NO,
    thread_names: NO,
    worker_frames: NO,
    knobs: &["FLEXIBLAS_NUM_THREADS", "OMP_NUM_THREADS"],
    limit_var: "FLEXIBLAS_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"blas\")",
    import: "numpy",
};

/// GNU OpenMP (libgomp; also the `libgomp-*.so` PyTorch and scikit-learn wheels bundle).
pub const GNU_OPENMP: Runtime = Runtime {
    name: "GNU OpenMP",
    family: Family::OpenMp,
    idle: Idle::Spins,
    prefixes: &["libgomp"],
    paths: NO,
    thread_names: NO,
    worker_frames: &["gomp_thread_start"],
    knobs: &["OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"],
    limit_var: "OMP_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"openmp\")",
    import: "",
};

/// LLVM OpenMP (libomp: `clang -fopenmp`).
pub const LLVM_OPENMP: Runtime = Runtime {
    name: "LLVM OpenMP",
    family: Family::OpenMp,
    idle: Idle::Spins,
    prefixes: &["libomp"],
    paths: NO,
    thread_names: NO,
    worker_frames: &["__kmp_launch_worker", "__kmp_launch_thread"],
    knobs: &["OMP_NUM_THREADS", "KMP_BLOCKTIME", "OMP_WAIT_POLICY"],
    limit_var: "OMP_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"openmp\")",
    import: "",
};

/// Intel OpenMP (libiomp5: MKL's default layer, Intel compilers). Same code base as LLVM's.
pub const INTEL_OPENMP: Runtime = Runtime {
    name: "Intel OpenMP",
    family: Family::OpenMp,
    idle: Idle::Spins,
    prefixes: &["libiomp"],
    paths: NO,
    thread_names: NO,
    worker_frames: &["__kmp_launch_worker", "__kmp_launch_thread"],
    knobs: &["OMP_NUM_THREADS", "KMP_BLOCKTIME", "OMP_WAIT_POLICY"],
    limit_var: "OMP_NUM_THREADS",
    runtime_call: "threadpoolctl.threadpool_limits({k}, user_api=\"openmp\")",
    import: "",
};

/// polars: a Rayon pool (`polars-N`) and its async executor (`async-executor-N`), both sized
/// by `POLARS_MAX_THREADS` when polars is imported; there is no call to resize them later.
pub const POLARS: Runtime = Runtime {
    name: "polars",
    family: Family::Pool,
    idle: Idle::Steals,
    prefixes: NO,
    paths: &["_polars_runtime", "/polars/polars", "polars.abi3"],
    thread_names: &["polars-", "async-executor-"],
    worker_frames: &["polars_async::executor", "polars_core::POOL"],
    knobs: &["POLARS_MAX_THREADS"],
    limit_var: "POLARS_MAX_THREADS",
    runtime_call: "",
    import: "polars",
};

/// Rayon's global pool in any Rust program or extension (after polars, which is one).
pub const RAYON: Runtime = Runtime {
    name: "Rayon",
    family: Family::Pool,
    idle: Idle::Steals,
    prefixes: NO,
    paths: NO,
    thread_names: &["rayon-"],
    worker_frames: &["rayon_core::registry"],
    knobs: &["RAYON_NUM_THREADS"],
    limit_var: "RAYON_NUM_THREADS",
    runtime_call: "rayon::ThreadPoolBuilder::new().num_threads({k}).build_global()",
    import: "",
};

/// numexpr's own pthreads pool (`th_worker`): its workers meet at a barrier of
/// `pthread_cond_wait` calls (numexpr's `module.cpp`, shipped in the wheel) and never spin.
pub const NUMEXPR: Runtime = Runtime {
    name: "numexpr",
    family: Family::Pool,
    idle: Idle::Blocks,
    prefixes: NO,
    paths: &["numexpr/interpreter"],
    thread_names: NO,
    worker_frames: &["th_worker"],
    knobs: &[
        "NUMEXPR_NUM_THREADS",
        "NUMEXPR_MAX_THREADS",
        "OMP_NUM_THREADS",
    ],
    limit_var: "NUMEXPR_NUM_THREADS",
    runtime_call: "numexpr.set_num_threads({k})",
    import: "numexpr",
};

/// numba's OpenMP layer (`omppool`, the default of a pip install, where numba finds no
/// `tbb`): its `parallel=True` loops run as a GNU OpenMP team, so the calling thread is
/// thread 0 of it and idle workers spin in libgomp's wait loops. Measured here: two processes
/// of `examples/numba_pool.py` on 2 cores took 7.6-13 s, and 3.0 s with
/// `NUMBA_NUM_THREADS=1` (docs/findings.md).
pub const NUMBA_OPENMP: Runtime = Runtime {
    name: "numba (OpenMP layer)",
    family: Family::Pool,
    idle: Idle::Spins,
    prefixes: NO,
    paths: &["numba/np/ufunc/omppool"],
    thread_names: NO,
    worker_frames: NO,
    knobs: &[
        "NUMBA_NUM_THREADS",
        "NUMBA_THREADING_LAYER",
        "OMP_NUM_THREADS",
        "OMP_WAIT_POLICY",
    ],
    limit_var: "NUMBA_NUM_THREADS",
    runtime_call: "numba.set_num_threads({k})",
    import: "numba",
};

/// numba's other layers: `workqueue` (its own pthreads workers, which block on a condition
/// variable while the caller waits for them) and `tbb` (a TBB arena).
pub const NUMBA: Runtime = Runtime {
    name: "numba",
    family: Family::Pool,
    idle: Idle::Modelled,
    prefixes: NO,
    paths: &["numba/np/ufunc/workqueue", "numba/np/ufunc/tbbpool"],
    thread_names: NO,
    worker_frames: NO,
    knobs: &["NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER"],
    limit_var: "NUMBA_NUM_THREADS",
    runtime_call: "numba.set_num_threads({k})",
    import: "numba",
};

/// PyTorch's intra-op pool: OpenMP threads (the libgomp its wheels bundle) running libtorch's
/// kernels, so like any OpenMP team its caller is thread 0 and its idle workers spin.
pub const TORCH: Runtime = Runtime {
    name: "PyTorch",
    family: Family::Pool,
    idle: Idle::Spins,
    prefixes: &["libtorch_cpu"],
    paths: NO,
    thread_names: NO,
    worker_frames: NO,
    knobs: &["OMP_NUM_THREADS", "MKL_NUM_THREADS"],
    limit_var: "OMP_NUM_THREADS",
    runtime_call: "torch.set_num_threads({k})",
    import: "torch",
};

/// oneTBB's workers (`rml::private_worker`); no variable sizes them.
pub const TBB: Runtime = Runtime {
    name: "TBB",
    family: Family::Pool,
    idle: Idle::Modelled,
    prefixes: &["libtbb"],
    paths: NO,
    thread_names: NO,
    worker_frames: &["rml::private_worker", "tbb::detail::r1::rml"],
    knobs: NO,
    limit_var: "",
    runtime_call: "tbb::global_control(tbb::global_control::max_allowed_parallelism, {k})",
    import: "",
};

/// onnxruntime's intra-op pool (onnxruntime docs, "Thread management"): one per
/// `InferenceSession`, as many threads as physical cores by default counting the thread that
/// calls `run` (it runs a share of every parallel operator: a pool of 2 starts one thread,
/// measured), whose idle workers spin (`session.intra_op.allow_spinning`, on by default) in
/// `onnxruntime::concurrency::SpinPause` before they sleep. Sized per session in code: its pip
/// builds are not OpenMP, and no environment variable sizes it.
pub const ONNXRUNTIME: Runtime = Runtime {
    name: "onnxruntime",
    family: Family::Pool,
    idle: Idle::Spins,
    prefixes: &["libonnxruntime", "onnxruntime_pybind11_state"],
    paths: NO,
    thread_names: NO,
    worker_frames: &["onnxruntime::concurrency::ThreadPool"],
    knobs: NO,
    limit_var: "",
    runtime_call: "options = onnxruntime.SessionOptions(); options.intra_op_num_threads = {k}; \
                   onnxruntime.InferenceSession(model, options)",
    import: "onnxruntime",
};

/// Every runtime the analysis recognises. Order matters where two could match: the OpenMP
/// build of OpenBLAS before OpenBLAS, polars before Rayon.
pub const ALL: &[Runtime] = &[
    OPENBLAS_OPENMP,
    OPENBLAS,
    MKL,
    BLIS,
    FLEXIBLAS,
    GNU_OPENMP,
    LLVM_OPENMP,
    INTEL_OPENMP,
    POLARS,
    RAYON,
    NUMEXPR,
    NUMBA_OPENMP,
    NUMBA,
    TORCH,
    TBB,
    ONNXRUNTIME,
];

/// Variables of other threaded libraries, reported with any runtime when set.
pub const OTHER_KNOBS: &[&str] = &["VECLIB_MAXIMUM_THREADS"];

/// The runtime of this display name.
pub fn by_name(name: &str) -> Option<&'static Runtime> {
    ALL.iter().find(|r| r.name == name)
}

/// When OpenMP threads run a library's code, that library sized the team: the OpenMP build
/// of OpenBLAS, MKL's OpenMP layers, BLIS's OpenMP build, PyTorch's intra-op pool, numba's
/// omp layer. The knob is
/// the owner's.
pub fn openmp_owner(inside: &[&'static str]) -> Option<&'static Runtime> {
    OPENMP_OWNERS
        .iter()
        .copied()
        .chain([&OPENBLAS])
        .find(|r| inside.contains(&r.name))
        .map(|r| {
            if r.name == OPENBLAS.name {
                &OPENBLAS_OPENMP
            } else {
                r
            }
        })
}

/// Libraries that run their pool on an OpenMP runtime's threads.
pub const OPENMP_OWNERS: &[&Runtime] = &[&OPENBLAS_OPENMP, &MKL, &BLIS, &TORCH, &NUMBA_OPENMP];

/// Base name of a path.
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// [`runtime_of_library`] of each frame's module, worked out once per frame of a profile (a
/// recording's stacks share most of their frames; matching every frame of every stack against
/// every runtime's markers was most of the analysis's time).
pub struct FrameRuntimes<'a> {
    profile: &'a Profile,
    memo: HashMap<FrameId, Option<&'static Runtime>>,
    entries: HashMap<FrameId, Option<&'static Runtime>>,
}

impl<'a> FrameRuntimes<'a> {
    /// An empty memo over `profile`'s frames.
    pub fn new(profile: &'a Profile) -> Self {
        FrameRuntimes {
            profile,
            memo: HashMap::new(),
            entries: HashMap::new(),
        }
    }

    /// The runtime whose worker start routine frame `id` is (`blas_thread_server`...).
    pub fn worker_entry(&mut self, id: FrameId) -> Option<&'static Runtime> {
        let profile = self.profile;
        *self.entries.entry(id).or_insert_with(|| {
            let name = &profile.stacks.frame(id).name;
            let name = name.split('+').next().unwrap_or(name);
            ALL.iter()
                .find(|r| r.worker_frames.iter().any(|w| name.contains(w)))
        })
    }

    /// The runtime whose library frame `id` is in.
    pub fn of(&mut self, id: FrameId) -> Option<&'static Runtime> {
        let profile = self.profile;
        *self.memo.entry(id).or_insert_with(|| {
            profile
                .stacks
                .frame(id)
                .module
                .as_deref()
                .and_then(runtime_of_library)
        })
    }
}

/// The runtime a library path belongs to, if any.
pub fn runtime_of_library(path: &str) -> Option<&'static Runtime> {
    let base = base_name(path);
    ALL.iter()
        .find(|r| r.owns_library(path))
        .or_else(|| {
            // Debian's alternatives: `openblas-pthread/libblas.so.3` is OpenBLAS itself.
            let generic = ["libblas", "libcblas"].iter().any(|p| base.starts_with(p));
            (generic && path.contains("openblas")).then_some(&OPENBLAS)
        })
        .map(|r| {
            // A library built on OpenMP (`libopenblasp-r0.3.21-openmp.so`).
            if r.name == OPENBLAS.name && path.contains("openmp") {
                &OPENBLAS_OPENMP
            } else {
                r
            }
        })
}

/// A runtime loaded in one process.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Which runtime.
    pub runtime: &'static Runtime,
    /// Path of its library.
    pub library: String,
    /// Its knobs that are set in the process's environment.
    pub knobs: BTreeMap<String, String>,
}

/// Runtimes loaded in a process, in [`ALL`] order, one entry per runtime.
pub fn loaded(process: &Process, in_stacks: &[String]) -> Vec<Loaded> {
    let mut out: Vec<Loaded> = Vec::new();
    for rt in ALL {
        let Some(lib) = process
            .libraries
            .iter()
            .chain(in_stacks)
            .find(|l| runtime_of_library(l).is_some_and(|r| r.name == rt.name))
        else {
            continue;
        };
        let knobs = rt
            .knobs
            .iter()
            .chain(OTHER_KNOBS)
            .filter_map(|k| process.env.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        out.push(Loaded {
            runtime: rt,
            library: lib.clone(),
            knobs,
        });
    }
    out
}

/// Runtime libraries seen in a process's sampled stacks, by pid: fills in what the library
/// list missed (a library loaded after the collector last read the process's maps).
pub fn from_stacks(profile: &Profile) -> BTreeMap<Pid, Vec<String>> {
    let mut seen: BTreeSet<(Pid, StackId)> = BTreeSet::new();
    let mut out: BTreeMap<Pid, Vec<String>> = BTreeMap::new();
    let mut runtimes = FrameRuntimes::new(profile);
    for s in &profile.samples {
        let Some(stack) = s.stack else { continue };
        if !seen.insert((s.pid, stack)) {
            continue;
        }
        for id in profile.stacks.frames_of(stack) {
            if runtimes.of(id).is_none() {
                continue;
            }
            if let Some(m) = profile.stacks.frame(id).module.as_deref() {
                let libs = out.entry(s.pid).or_default();
                if !libs.iter().any(|l| l == m) {
                    libs.push(m.to_string());
                }
            }
        }
    }
    out
}

/// The thread count a knob map sets for a runtime, if one is set (first variable in the
/// runtime's precedence order that parses; OpenMP lists like `4,2` count their first level).
pub fn configured_threads(rt: &Runtime, knobs: &BTreeMap<String, String>) -> Option<u32> {
    rt.knobs
        .iter()
        .filter(|k| k.ends_with("_NUM_THREADS") || **k == "POLARS_MAX_THREADS")
        .find_map(|k| {
            knobs
                .get(*k)
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| *n > 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_libraries_by_base_name() {
        let rt = |p: &str| runtime_of_library(p).map(|r| r.name);
        assert_eq!(
            rt("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"),
            Some("OpenBLAS")
        );
        assert_eq!(
            rt("/v/numpy.libs/libscipy_openblas64_-56d6093b.so"),
            Some("OpenBLAS")
        );
        assert_eq!(
            rt("/usr/lib/x86_64-linux-gnu/libgomp.so.1"),
            Some("GNU OpenMP")
        );
        assert_eq!(rt("/opt/intel/libiomp5.so"), Some("Intel OpenMP"));
        assert_eq!(rt("/usr/lib/llvm-14/lib/libomp.so.5"), Some("LLVM OpenMP"));
        assert_eq!(
            rt("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblasp-r0.3.21.so"),
            Some("OpenBLAS (OpenMP build)")
        );
        assert_eq!(
            rt("/v/site-packages/numexpr/interpreter.cpython-311-x86_64-linux-gnu.so"),
            Some("numexpr")
        );
        assert_eq!(
            rt("/v/site-packages/_polars_runtime_32/_polars_runtime.abi3.so"),
            Some("polars")
        );
        assert_eq!(rt("/usr/lib/libmkl_rt.so.2"), Some("MKL"));
        assert_eq!(rt("/usr/lib/libc.so.6"), None);
        assert_eq!(
            rt("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"),
            Some("OpenBLAS")
        );
        assert_eq!(rt("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"), None);
        // The directory name does not count.
        assert_eq!(rt("/opt/libopenblas/libc.so.6"), None);
    }

    #[test]
    fn numbas_layers_are_told_apart_and_openmp_teams_count_their_caller() {
        let rt = |p: &str| runtime_of_library(p).expect(p);
        let sp = "/v/site-packages/numba/np/ufunc/";
        let omp = rt(&format!("{sp}omppool.cpython-311-x86_64-linux-gnu.so"));
        assert_eq!(omp.name, "numba (OpenMP layer)");
        assert!(omp.caller_works() && omp.idle == Idle::Spins);
        assert!(crate::waitloops::waits_for(omp, &GNU_OPENMP));
        let wq = rt(&format!("{sp}workqueue.cpython-311-x86_64-linux-gnu.so"));
        assert_eq!(wq.name, "numba");
        assert!(!wq.caller_works());
        assert!(!crate::waitloops::waits_for(wq, &GNU_OPENMP));
        assert!(TORCH.caller_works() && OPENBLAS_OPENMP.caller_works());
        assert!(!RAYON.caller_works() && !NUMEXPR.caller_works());
    }

    #[test]
    fn libraries_missing_from_maps_are_found_in_stacks() {
        use crate::testutil::{add_samples, busy_thread, native, profile_with};
        let mut p = profile_with(2, vec![(10, vec![busy_thread(10, 1.0, 1.0, 0.0)])]);
        let ob = "/v/numpy.libs/libscipy_openblas64_-1.so";
        add_samples(
            &mut p,
            10,
            10,
            &[native("main", "/bin/python3"), native("dgemm_", ob)],
            3,
        );
        let a = crate::analyze(&p);
        assert_eq!(a.runtimes.len(), 1);
        assert_eq!(a.runtimes[0].library, ob);
        assert_eq!(a.runtimes[0].name, "OpenBLAS");
    }

    #[test]
    fn knobs_are_whitelisted_and_parsed() {
        let mut p = Process {
            libraries: vec!["/usr/lib/libopenblas.so.0".into()],
            ..Default::default()
        };
        p.env.insert("OPENBLAS_NUM_THREADS".into(), "1".into());
        p.env.insert("SECRET_TOKEN".into(), "x".into());
        let l = loaded(&p, &[]);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].knobs.len(), 1);
        assert_eq!(configured_threads(l[0].runtime, &l[0].knobs), Some(1));
        let mut k = BTreeMap::new();
        k.insert("OMP_NUM_THREADS".to_string(), "4,2".to_string());
        assert_eq!(configured_threads(&GNU_OPENMP, &k), Some(4));
    }
}
