//! Which BLAS and OpenMP runtimes a process loaded, and the knobs that size their pools.
//!
//! Recognition is by library base name (what `/proc/PID/maps` lists, the same file threadpoolctl
//! reads), so it works on a saved profile without the target. The knob lists are the only
//! environment variables the analysis looks at: everything else in an environment may be a
//! secret, and the collector never records it.

use std::collections::{BTreeMap, BTreeSet};

use cpuprof_model::{Pid, Process, Profile, StackId};

/// What kind of pool a runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// A BLAS library with its own thread pool (OpenBLAS, MKL, BLIS, FlexiBLAS).
    Blas,
    /// An OpenMP runtime (libgomp, libiomp/libomp).
    OpenMp,
    /// Another threaded numeric library (TBB, torch, numexpr...).
    Other,
}

/// A runtime the analysis knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// Display name, as used in findings and the summary JSON.
    pub name: &'static str,
    /// Kind of pool.
    pub family: Family,
    /// Library base-name prefixes.
    pub prefixes: &'static [&'static str],
    /// Environment variables that size or tune its pool.
    pub knobs: &'static [&'static str],
    /// The variable to set to limit its pool (first choice).
    pub limit_var: &'static str,
    /// Thread start routines / entry functions of its pool workers.
    pub worker_entries: &'static [&'static str],
}

/// OpenBLAS.
pub const OPENBLAS: Runtime = Runtime {
    name: "OpenBLAS",
    family: Family::Blas,
    prefixes: &["libopenblas", "libscipy_openblas"],
    knobs: &[
        "OPENBLAS_NUM_THREADS",
        "GOTO_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_THREAD_TIMEOUT",
    ],
    limit_var: "OPENBLAS_NUM_THREADS",
    worker_entries: &["blas_thread_server"],
};

/// Intel MKL.
pub const MKL: Runtime = Runtime {
    name: "MKL",
    family: Family::Blas,
    prefixes: &[
        "libmkl_rt",
        "libmkl_intel_thread",
        "libmkl_gnu_thread",
        "libmkl_tbb_thread",
    ],
    knobs: &[
        "MKL_NUM_THREADS",
        "MKL_DYNAMIC",
        "MKL_THREADING_LAYER",
        "OMP_NUM_THREADS",
    ],
    limit_var: "MKL_NUM_THREADS",
    worker_entries: &[],
};

/// BLIS.
pub const BLIS: Runtime = Runtime {
    name: "BLIS",
    family: Family::Blas,
    prefixes: &["libblis"],
    knobs: &["BLIS_NUM_THREADS", "OMP_NUM_THREADS"],
    limit_var: "BLIS_NUM_THREADS",
    worker_entries: &[],
};

/// FlexiBLAS (a switch in front of another BLAS).
pub const FLEXIBLAS: Runtime = Runtime {
    name: "FlexiBLAS",
    family: Family::Blas,
    prefixes: &["libflexiblas"],
    knobs: &["FLEXIBLAS_NUM_THREADS", "OMP_NUM_THREADS"],
    limit_var: "FLEXIBLAS_NUM_THREADS",
    worker_entries: &[],
};

/// GNU OpenMP (libgomp).
pub const GNU_OPENMP: Runtime = Runtime {
    name: "GNU OpenMP",
    family: Family::OpenMp,
    prefixes: &["libgomp"],
    knobs: &["OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"],
    limit_var: "OMP_NUM_THREADS",
    worker_entries: &["gomp_thread_start"],
};

/// Intel / LLVM OpenMP.
pub const INTEL_OPENMP: Runtime = Runtime {
    name: "Intel/LLVM OpenMP",
    family: Family::OpenMp,
    prefixes: &["libiomp", "libomp"],
    knobs: &["OMP_NUM_THREADS", "KMP_BLOCKTIME", "OMP_WAIT_POLICY"],
    limit_var: "OMP_NUM_THREADS",
    worker_entries: &["__kmp_launch_worker", "__kmp_launch_thread"],
};

/// TBB.
pub const TBB: Runtime = Runtime {
    name: "TBB",
    family: Family::Other,
    prefixes: &["libtbb"],
    knobs: &[],
    limit_var: "",
    worker_entries: &[],
};

/// PyTorch's CPU library (its intra-op pool is OpenMP, listed separately when loaded).
pub const TORCH: Runtime = Runtime {
    name: "torch",
    family: Family::Other,
    prefixes: &["libtorch_cpu"],
    knobs: &["OMP_NUM_THREADS", "MKL_NUM_THREADS"],
    limit_var: "",
    worker_entries: &[],
};

/// Every runtime the analysis recognises, BLAS first.
pub const ALL: &[Runtime] = &[
    OPENBLAS,
    MKL,
    BLIS,
    FLEXIBLAS,
    GNU_OPENMP,
    INTEL_OPENMP,
    TBB,
    TORCH,
];

/// Variables of other threaded libraries, reported with any runtime when set.
pub const OTHER_KNOBS: &[&str] = &[
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
];

/// Base name of a path.
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The runtime a library path belongs to, if any.
pub fn runtime_of_library(path: &str) -> Option<&'static Runtime> {
    let base = base_name(path);
    ALL.iter()
        .find(|r| r.prefixes.iter().any(|p| base.starts_with(p)))
        .or_else(|| {
            // Debian's alternatives: `openblas-pthread/libblas.so.3` is OpenBLAS itself.
            let generic = ["libblas", "libcblas"].iter().any(|p| base.starts_with(p));
            (generic && path.contains("openblas")).then_some(&OPENBLAS)
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
    for s in &profile.samples {
        let Some(stack) = s.stack else { continue };
        if !seen.insert((s.pid, stack)) {
            continue;
        }
        for id in profile.stacks.frames_of(stack) {
            let Some(m) = profile.stacks.frame(id).module.as_deref() else {
                continue;
            };
            if runtime_of_library(m).is_some() {
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
        .filter(|k| k.ends_with("_NUM_THREADS"))
        .find_map(|k| {
            knobs
                .get(*k)
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| *n > 0)
        })
}

/// Is the OpenBLAS library built on OpenMP (its pool is then libgomp's)?
pub fn openblas_uses_openmp(library: &str) -> bool {
    library.contains("openmp")
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
        assert_eq!(rt("/opt/intel/libiomp5.so"), Some("Intel/LLVM OpenMP"));
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
