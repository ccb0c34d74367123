//! What each thread is: main, Python, a worker of a known runtime's pool, or other.
//!
//! By where it runs when there are stacks: a worker's stacks start in the runtime's thread
//! start routine (`blas_thread_server`, `gomp_thread_start`, `th_worker`, Rayon's registry)
//! or spend most samples inside the runtime's library. OpenMP threads running a library's
//! code belong to that library's pool (the OpenMP build of OpenBLAS, MKL, PyTorch): its knob
//! sizes them. Then by the names some runtimes give their workers (`polars-0`). Without
//! stacks (perf refused) by the one fact procfs gives: pool workers are created by the runtime
//! with the process's name (`comm` is inherited), whereas threads a program names itself carry
//! their own name — attributed to a runtime only when one runtime that names no threads is
//! loaded; with several, they stay unattributed rather than pinned on a guess.

use std::collections::{BTreeMap, HashMap};

use cpuprof_model::{Pid, Process, Profile, StackId, ThreadClass, ThreadRole, Tid};

use crate::runtimes::{self, Family, Loaded, Runtime};

/// Share of a thread's samples inside one runtime's library that makes it that runtime's
/// worker when no start routine was seen: a worker spends nearly all its time there, a
/// caller thread (main) far less than all.
const IN_LIBRARY_SHARE: f64 = 0.8;

/// Per-thread sample facts.
#[derive(Debug, Default, Clone)]
struct ThreadSamples {
    total: u64,
    /// Samples with a frame inside each runtime's library, by runtime name.
    inside: HashMap<&'static str, u64>,
    /// Samples with a frame inside any runtime's library.
    any_inside: u64,
    /// Runtime whose worker start routine appeared in a stack.
    entry: Option<&'static Runtime>,
}

/// Frames facts of one stack, cached per stack id.
#[derive(Debug, Default, Clone)]
struct StackFacts {
    inside: Vec<&'static str>,
    entry: Option<&'static Runtime>,
}

fn stack_facts(
    profile: &Profile,
    runtimes: &mut runtimes::FrameRuntimes,
    stack: StackId,
) -> StackFacts {
    let mut f = StackFacts::default();
    for id in profile.stacks.frames_of(stack) {
        if let Some(rt) = runtimes.of(id) {
            if !f.inside.contains(&rt.name) {
                f.inside.push(rt.name);
            }
        }
        if f.entry.is_none() {
            f.entry = runtimes.worker_entry(id);
        }
    }
    f
}

/// Is this process a Python interpreter?
pub fn is_python(p: &Process) -> bool {
    let exe_py = p
        .exe
        .as_deref()
        .map(runtimes::base_name)
        .is_some_and(|b| b.starts_with("python"));
    let cmd_py = p
        .command
        .first()
        .map(|c| runtimes::base_name(c))
        .is_some_and(|b| b.starts_with("python"));
    let lib_py = p
        .libraries
        .iter()
        .any(|l| runtimes::base_name(l).starts_with("libpython"));
    exe_py || cmd_py || lib_py
}

/// The runtimes whose libraries each sampled thread's stacks enter, by (pid, tid).
pub type Entered = HashMap<(Pid, Tid), Vec<&'static str>>;

/// The role of every thread, by tid, and the runtimes each sampled thread's stacks enter (a
/// caller of a pool enters its library without being its worker): one pass over the samples
/// serves both.
pub fn classify(
    profile: &Profile,
    loaded: &BTreeMap<Pid, Vec<Loaded>>,
) -> (BTreeMap<Tid, ThreadClass>, Entered) {
    let mut cache: HashMap<StackId, StackFacts> = HashMap::new();
    let mut frame_runtimes = runtimes::FrameRuntimes::new(profile);
    let mut per_thread: HashMap<(Pid, Tid), ThreadSamples> = HashMap::new();
    for s in &profile.samples {
        let ts = per_thread.entry((s.pid, s.tid)).or_default();
        ts.total += 1;
        let Some(stack) = s.stack else { continue };
        let f = cache
            .entry(stack)
            .or_insert_with(|| stack_facts(profile, &mut frame_runtimes, stack));
        for rt in &f.inside {
            *ts.inside.entry(rt).or_default() += 1;
        }
        ts.any_inside += u64::from(!f.inside.is_empty());
        if ts.entry.is_none() {
            ts.entry = f.entry;
        }
    }
    let mut python_tids: HashMap<(Pid, Tid), ()> = HashMap::new();
    for s in &profile.python_samples {
        python_tids.insert((s.pid, s.tid), ());
    }
    let mut out = BTreeMap::new();
    for p in &profile.processes {
        let rts = loaded.get(&p.pid).map(Vec::as_slice).unwrap_or(&[]);
        let python = is_python(p);
        // Without stacks: the runtime's workers are the first threads created with the
        // process's own name, as many as the pool has workers. The main thread's name may
        // be its Python name ("MainThread"), so the executable's names count too (`comm` is
        // the file name run, cut to 15 bytes).
        let inherited = inherited_names(p);
        // Runtimes whose workers keep the inherited name. An OpenMP runtime loaded by the
        // OpenMP build of OpenBLAS (or MKL, PyTorch) is that library's pool, not a second one.
        let inheriting: Vec<&Loaded> = rts
            .iter()
            .filter(|l| l.runtime.thread_names.is_empty())
            .collect();
        let openmp_owned = inheriting.iter().any(|l| {
            l.runtime.family != Family::OpenMp
                && runtimes::OPENMP_OWNERS
                    .iter()
                    .any(|o| o.name == l.runtime.name)
        });
        let owners: Vec<&Loaded> = inheriting
            .iter()
            .copied()
            .filter(|l| !(openmp_owned && l.runtime.family == Family::OpenMp))
            .collect();
        let pool = match owners.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        let mut unnamed: Vec<&cpuprof_model::Thread> = p
            .threads
            .iter()
            .filter(|t| {
                t.tid != p.pid
                    && inherited.contains(&t.name)
                    && !python_tids.contains_key(&(p.pid, t.tid))
                    && !per_thread.contains_key(&(p.pid, t.tid))
            })
            .collect();
        unnamed.sort_by_key(|t| (t.start_ns, t.tid));
        let expected = pool
            .map(|l| {
                let n = runtimes::configured_threads(l.runtime, &l.knobs)
                    .unwrap_or_else(|| host_cores(profile));
                if l.runtime.caller_works() {
                    n.saturating_sub(1) as usize
                } else {
                    n as usize
                }
            })
            .unwrap_or(0);
        let guessed: Vec<Tid> = unnamed.iter().take(expected).map(|t| t.tid).collect();
        for th in &p.threads {
            let key = (p.pid, th.tid);
            let class = if python_tids.contains_key(&key) || (python && th.tid == p.pid) {
                ThreadClass {
                    role: ThreadRole::Python,
                    runtime: None,
                }
            } else if th.tid == p.pid {
                ThreadClass {
                    role: ThreadRole::Main,
                    runtime: None,
                }
            } else if let Some(c) = per_thread
                .get(&key)
                .filter(|t| t.total > 0)
                .and_then(|ts| by_samples(ts, rts))
            {
                c
            } else if let Some(rt) = by_name(&th.name, rts) {
                worker_of(rt)
            } else {
                match pool {
                    Some(l) if guessed.contains(&th.tid) => worker_of(l.runtime),
                    _ => other(),
                }
            };
            out.insert(th.tid, class);
        }
    }
    let entered = per_thread
        .into_iter()
        .map(|(k, ts)| (k, ts.inside.into_keys().collect()))
        .collect();
    (out, entered)
}

fn other() -> ThreadClass {
    ThreadClass {
        role: ThreadRole::Other,
        runtime: None,
    }
}

fn worker_of(rt: &Runtime) -> ThreadClass {
    ThreadClass {
        role: match rt.family {
            Family::OpenMp => ThreadRole::OpenmpWorker,
            Family::Blas => ThreadRole::BlasWorker,
            Family::Pool => ThreadRole::PoolWorker,
        },
        runtime: Some(rt.name.to_string()),
    }
}

/// A loaded runtime that names its workers this way.
fn by_name(name: &str, rts: &[Loaded]) -> Option<&'static Runtime> {
    rts.iter()
        .map(|l| l.runtime)
        .find(|r| r.thread_names.iter().any(|p| name.starts_with(p)))
}

fn by_samples(ts: &ThreadSamples, rts: &[Loaded]) -> Option<ThreadClass> {
    let inside: Vec<&'static str> = ts.inside.keys().copied().collect();
    let rt = match ts.entry {
        Some(rt) => rt,
        None => {
            // Nearly all samples inside runtimes (an OpenMP worker running OpenBLAS's kernels
            // is inside both, in shares that vary with how well each stack unwound): the
            // runtime most samples are in.
            if (ts.any_inside as f64) < IN_LIBRARY_SHARE * ts.total as f64 {
                return None;
            }
            let (name, _) = ts.inside.iter().max_by_key(|(_, n)| **n)?;
            rts.iter().find(|l| l.runtime.name == *name)?.runtime
        }
    };
    // OpenMP threads running OpenBLAS's, MKL's or PyTorch's code: that library's pool. (Its
    // start routine may be unnamed: Debian's libgomp exports no `gomp_thread_start`.)
    if rt.family == Family::OpenMp {
        return Some(worker_of(runtimes::openmp_owner(&inside).unwrap_or(rt)));
    }
    // Rayon threads running polars: polars's pool.
    if rt.name == runtimes::RAYON.name && ts.inside.contains_key(runtimes::POLARS.name) {
        return Some(worker_of(&runtimes::POLARS));
    }
    Some(worker_of(rt))
}

/// The names a thread gets when nobody names it: the main thread's (`comm` is inherited), which
/// may be its Python name ("MainThread"), so the executable's too (`comm` is the file name
/// run, cut to 15 bytes).
pub fn inherited_names(p: &Process) -> Vec<String> {
    p.thread(p.pid)
        .map(|t| t.name.clone())
        .into_iter()
        .chain(p.exe.as_deref().map(comm_of))
        .chain(p.command.first().map(|c| comm_of(c)))
        .collect()
}

/// The `comm` a thread started from this path gets: the base name, at most 15 bytes.
fn comm_of(path: &str) -> String {
    let base = runtimes::base_name(path).as_bytes();
    String::from_utf8_lossy(&base[..base.len().min(15)]).into_owned()
}

/// CPUs the runtimes size their pools from: online CPUs within the affinity mask (never the
/// cgroup quota).
fn host_cores(profile: &Profile) -> u32 {
    let m = &profile.machine;
    let mut n = m.online_cpus.max(1);
    if m.affinity_cpus > 0 {
        n = n.min(m.affinity_cpus);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{add_samples, busy_thread, native, profile_with, with_library};

    const OB: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";

    fn loaded_of(p: &Profile) -> BTreeMap<Pid, Vec<Loaded>> {
        p.processes
            .iter()
            .map(|x| (x.pid, runtimes::loaded(x, &[])))
            .collect()
    }

    #[test]
    fn by_stacks_workers_and_main() {
        let mut p = profile_with(
            2,
            vec![(
                10,
                vec![
                    busy_thread(10, 1.0, 1.0, 0.0),
                    busy_thread(11, 1.0, 1.0, 0.0),
                    busy_thread(12, 1.0, 0.1, 0.0),
                ],
            )],
        );
        with_library(&mut p, 10, OB);
        let main = native("main", "/bin/m");
        add_samples(&mut p, 10, 10, &[main.clone(), native("dgemm_", OB)], 10);
        add_samples(
            &mut p,
            10,
            11,
            &[native("blas_thread_server", OB), native("dgemm_kernel", OB)],
            10,
        );
        add_samples(&mut p, 10, 12, &[native("my_loop", "/bin/m")], 10);
        let (c, _) = classify(&p, &loaded_of(&p));
        assert_eq!(c[&10].role, ThreadRole::Main);
        assert_eq!(c[&11].role, ThreadRole::BlasWorker);
        assert_eq!(c[&11].runtime.as_deref(), Some("OpenBLAS"));
        assert_eq!(c[&12].role, ThreadRole::Other);
    }

    #[test]
    fn without_stacks_by_inherited_name() {
        let mut th = vec![
            busy_thread(10, 1.0, 1.0, 0.0),
            busy_thread(11, 1.0, 1.0, 0.0),
            busy_thread(12, 1.0, 1.0, 0.0),
            busy_thread(13, 1.0, 1.0, 0.0),
        ];
        th[0].name = "MainThread".into();
        th[1].name = "python3".into();
        th[2].name = "my-io-thread".into();
        // Created later with the inherited name: beyond the pool's 2 - 1 workers.
        th[3].name = "python3".into();
        th[3].start_ns = 500_000_000;
        let mut p = profile_with(2, vec![(10, th)]);
        p.processes[0].command = vec!["/usr/bin/python3".into(), "x.py".into()];
        with_library(&mut p, 10, "/usr/lib/libgomp.so.1");
        let (c, _) = classify(&p, &loaded_of(&p));
        assert_eq!(c[&10].role, ThreadRole::Python);
        assert_eq!(c[&11].role, ThreadRole::OpenmpWorker);
        assert_eq!(c[&11].runtime.as_deref(), Some("GNU OpenMP"));
        assert_eq!(c[&12].role, ThreadRole::Other);
        assert_eq!(c[&13].role, ThreadRole::Other);
    }
}
