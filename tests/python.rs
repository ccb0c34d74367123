//! Python stacks end to end: the real `cpuprof` binary on the project's `.venv` interpreter with
//! NumPy. Assertions read the saved profile (merged stacks are in `profile.samples`).

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cpuprof_model::{FrameKind, Pid, Profile, Sample, Tid};

/// Writes `script` into `dir`, records it with `flags`, returns the saved profile.
fn record_script(dir: &Path, name: &str, script: &str, flags: &[&str]) -> Profile {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, script).expect("write script");
    let save = dir.join("p.cpuprof");
    let save_s = save.to_string_lossy().into_owned();
    let mut all = vec!["--save", save_s.as_str()];
    all.extend_from_slice(flags);
    let python = util::venv_python();
    let run = util::record(
        dir,
        &all,
        &[python.to_str().unwrap(), path.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(0), "cpuprof failed: {}", run.stderr);
    cpuprof_model::file::load(&save).expect("load the saved profile")
}

/// The frame labels of a sample, root first.
fn labels(p: &Profile, s: &Sample) -> Vec<(FrameKind, String, Option<String>)> {
    s.stack
        .map(|id| {
            p.stacks
                .frames_of(id)
                .into_iter()
                .map(|f| {
                    let f = p.stacks.frame(f);
                    (f.kind, f.label(), f.module_name().map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn python_notices(p: &Profile) -> Vec<&String> {
    p.notices
        .iter()
        .filter(|n| n.to_lowercase().contains("python"))
        .collect()
}

const POOL: &str = r#"
import multiprocessing as mp, numpy as np
def work(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((400, 400))
    for _ in range(60):
        a = np.dot(a, a)
        a /= np.abs(a).max()
    return float(a.sum())
if __name__ == "__main__":
    with mp.Pool(2) as pool:
        print(sum(pool.map(work, range(4))))
"#;

#[test]
fn pool_workers_show_the_worker_frame_above_an_openblas_kernel() {
    let dir = util::tempdir();
    let p = record_script(dir.path(), "pool.py", POOL, &[]);
    assert!(
        p.samples.len() > 50,
        "too few native samples ({}); notices: {:?}",
        p.samples.len(),
        p.notices
    );
    let mut merged_workers = BTreeSet::new();
    for s in &p.samples {
        if s.pid == p.meta.pid {
            continue;
        }
        let frames = labels(&p, s);
        let Some(work) = frames
            .iter()
            .position(|(k, l, _)| *k == FrameKind::Python && l.starts_with("work (pool.py:"))
        else {
            continue;
        };
        // Python frames first, then native ones: nothing Python below the first native frame.
        let first_native = frames.iter().position(|(k, _, _)| *k != FrameKind::Python);
        if let Some(n) = first_native {
            assert!(
                frames[n..].iter().all(|(k, _, _)| *k != FrameKind::Python),
                "Python frame below native ones: {frames:?}"
            );
        }
        let kernel_below = frames[work + 1..].iter().any(|(k, l, m)| {
            *k == FrameKind::Native
                && l.contains("kernel")
                && m.as_deref().is_some_and(|m| m.contains("openblas"))
        });
        if kernel_below {
            merged_workers.insert(s.pid);
        }
    }
    assert!(
        merged_workers.len() >= 2,
        "worker processes with work() above an OpenBLAS kernel: {merged_workers:?}; notices {:?}",
        p.notices
    );
    assert!(python_notices(&p).is_empty(), "{:?}", p.notices);
}

const THREADS: &str = r#"
import threading, time
def crunch(deadline):
    x = 0
    while time.time() < deadline:
        x += 1
def nap():
    time.sleep(1.5)
w = threading.Thread(target=crunch, args=(time.time() + 1.5,), name="cruncher")
s = threading.Thread(target=nap, name="napper")
w.start(); s.start()
time.sleep(1.5)
w.join(); s.join()
"#;

/// Per thread name: (python samples, active ones).
fn activity(p: &Profile) -> BTreeMap<String, (usize, usize)> {
    let names: BTreeMap<(Pid, Tid), String> = p
        .processes
        .iter()
        .flat_map(|pr| {
            pr.threads
                .iter()
                .map(move |t| ((pr.pid, t.tid), t.name.clone()))
        })
        .collect();
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for s in &p.python_samples {
        let e = out.entry(names[&(s.pid, s.tid)].clone()).or_default();
        // A waiting thread's unchanged reads are kept as one sample that counts them.
        e.0 += s.repeats as usize;
        e.1 += usize::from(s.active) * s.repeats as usize;
    }
    out
}

fn check_threads(p: &Profile, mode: &str) {
    let act = activity(p);
    for name in ["MainThread", "cruncher", "napper"] {
        let (n, _) = act.get(name).copied().unwrap_or_default();
        // 1.5 s at 100 Hz is ~150; a loaded 2-core machine may give a third.
        assert!(n >= 40, "{mode}: thread {name:?} has {n} samples: {act:?}");
    }
    let (n, a) = act["cruncher"];
    assert!(
        a * 10 >= n * 8,
        "{mode}: computing thread idle too often: {act:?}"
    );
    for name in ["MainThread", "napper"] {
        let (n, a) = act[name];
        assert!(
            a * 10 <= n,
            "{mode}: sleeping thread {name} active: {act:?}"
        );
    }
    // The computing thread's CPU samples carry its Python frame.
    let tid = p
        .processes
        .iter()
        .flat_map(|pr| pr.threads.iter())
        .find(|t| t.name == "cruncher")
        .map(|t| t.tid)
        .expect("cruncher thread");
    let with_frame = p
        .samples
        .iter()
        .filter(|s| s.tid == tid)
        .filter(|s| {
            labels(p, s)
                .iter()
                .any(|(_, l, _)| l.starts_with("crunch (threads.py:"))
        })
        .count();
    assert!(
        with_frame >= 20,
        "{mode}: merged samples of cruncher: {with_frame}"
    );
    assert!(python_notices(p).is_empty(), "{mode}: {:?}", p.notices);
}

#[test]
fn named_threads_and_idle_versus_active() {
    let dir = util::tempdir();
    let p = record_script(dir.path(), "threads.py", THREADS, &[]);
    check_threads(&p, "non-blocking");
}

#[test]
fn blocking_mode_pauses_without_hanging_the_recording() {
    let dir = util::tempdir();
    let p = record_script(dir.path(), "threads.py", THREADS, &["--python-blocking"]);
    check_threads(&p, "blocking");
}

const SHORT_CHILD: &str = r#"
import subprocess, sys
code = "import time\ndef spin(d):\n    while time.time() < d: pass\nspin(time.time() + 0.6)\n"
subprocess.run([sys.executable, "-c", code], check=True)
"#;

#[test]
fn short_lived_child_interpreter_is_kept_without_spam() {
    let dir = util::tempdir();
    let p = record_script(dir.path(), "short.py", SHORT_CHILD, &[]);
    let child = p
        .processes
        .iter()
        .find(|pr| pr.pid != p.meta.pid && pr.command.iter().any(|c| c == "-c"))
        .map(|pr| pr.pid)
        .expect("the child interpreter was seen");
    let py = p
        .python_samples
        .iter()
        .filter(|s| s.pid == child)
        .filter(|s| {
            s.stack.is_some_and(|id| {
                p.stacks
                    .frames_of(id)
                    .iter()
                    .any(|&f| p.stacks.frame(f).name == "spin")
            })
        })
        .count();
    // 0.6 s at 100 Hz is ~60.
    assert!(py >= 20, "python samples of the short child: {py}");
    let merged = p
        .samples
        .iter()
        .filter(|s| s.pid == child)
        .filter(|s| {
            labels(&p, s)
                .iter()
                .any(|(_, l, _)| l.starts_with("spin (<string>:"))
        })
        .count();
    assert!(merged >= 10, "merged samples of the short child: {merged}");
    assert!(p.notices.len() <= 1, "{:?}", p.notices);
}

#[test]
fn non_python_tree_has_no_python_samples_or_notices() {
    let dir = util::tempdir();
    let run = util::record(
        dir.path(),
        &["--save", dir.path().join("p.cpuprof").to_str().unwrap()],
        &["/bin/sh", "-c", "sleep 0.3; sleep 0.3"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let p = cpuprof_model::file::load(&dir.path().join("p.cpuprof")).expect("load");
    assert!(p.python_samples.is_empty());
    assert!(python_notices(&p).is_empty(), "{:?}", p.notices);
}

#[test]
fn without_native_stacks_active_python_samples_fill_the_flamegraph() {
    let dir = util::tempdir();
    let p = record_script(dir.path(), "threads.py", THREADS, &["--no-stacks"]);
    let crunch = p
        .samples
        .iter()
        .filter(|s| {
            labels(&p, s)
                .iter()
                .any(|(_, l, _)| l.starts_with("crunch (threads.py:"))
        })
        .count();
    let nap = p
        .samples
        .iter()
        .filter(|s| {
            labels(&p, s)
                .iter()
                .any(|(_, l, _)| l.starts_with("nap (threads.py:"))
        })
        .count();
    assert!(
        crunch >= 40,
        "samples in crunch: {crunch} of {}",
        p.samples.len()
    );
    // The sleeping thread uses no CPU: (almost) no samples.
    assert!(
        nap * 10 <= crunch,
        "samples in nap: {nap}, crunch: {crunch}"
    );
    assert!(p.meta.sample_rate_hz.is_some());
}
