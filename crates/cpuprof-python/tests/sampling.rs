//! The sampler on real Python processes (the project's `.venv` interpreter), without the
//! cpuprof binary: the process tree comes from a small `/proc` scan instead of the procfs poller.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use cpuprof_model::{Event, Pid};
use cpuprof_python::{PythonOptions, PythonSampler, SamplerStats};

fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

/// `root` and all its descendants now.
fn tree(root: Pid) -> Vec<Pid> {
    let mut parent: BTreeMap<Pid, Pid> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<Pid>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent.insert(pid, ppid);
            }
        }
    }
    let mut out = BTreeSet::from([root]);
    loop {
        let before = out.len();
        for (&pid, ppid) in &parent {
            if out.contains(ppid) {
                out.insert(pid);
            }
        }
        if out.len() == before {
            return out.into_iter().collect();
        }
    }
}

struct Run {
    pid: Pid,
    events: Vec<Event>,
    stats: SamplerStats,
}

impl Run {
    fn samples(&self) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::PythonSample { .. }))
    }

    fn notices(&self) -> Vec<&String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Notice(n) => Some(n),
                _ => None,
            })
            .collect()
    }
}

/// Runs `program args` under the sampler until it exits.
fn sample_run(program: &Path, args: &[&str], options: PythonOptions) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .expect("start the target");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = PythonSampler::new(move || tree(pid), options, tx, stop.clone())
        .spawn()
        .expect("sampler thread");
    let status = child.wait().expect("wait for the target");
    assert!(status.success(), "target failed: {status}");
    stop.store(true, Ordering::Relaxed);
    let stats = handle.join().expect("sampler panicked");
    Run {
        pid,
        events: rx
            .into_iter()
            .flat_map(|e| match e {
                Event::Batch(batch) => batch,
                e => vec![e],
            })
            .collect(),
        stats,
    }
}

fn frames_of(e: &Event) -> Vec<String> {
    match e {
        Event::PythonSample { frames, .. } => frames.iter().map(|f| f.label()).collect(),
        _ => vec![],
    }
}

fn script(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write script");
    (dir, path)
}

const SLEEPER_AND_WORKER: &str = r#"
import threading, time
def crunch(deadline):
    x = 0
    while time.time() < deadline:
        x += 1
t = threading.Thread(target=crunch, args=(time.time() + 1.5,), name="cruncher")
t.start()
time.sleep(1.5)
t.join()
"#;

#[test]
fn named_worker_thread_is_active_and_sleeping_main_thread_is_idle() {
    for blocking in [false, true] {
        let (_dir, path) = script("threads.py", SLEEPER_AND_WORKER);
        // A direct child on purpose: blocking mode must not disturb the parent's `wait`.
        let run = sample_run(
            &venv_python(),
            &[path.to_str().unwrap()],
            PythonOptions {
                rate_hz: 100,
                blocking,
            },
        );
        let (mut main, mut worker) = ((0, 0), (0, 0));
        for e in run.samples() {
            let Event::PythonSample {
                pid,
                tid,
                thread_name,
                active,
                ..
            } = e
            else {
                continue;
            };
            let frames = frames_of(e);
            if tid == pid && frames.iter().any(|f| f.starts_with("<module>")) && frames.len() == 1 {
                main.0 += 1;
                main.1 += usize::from(*active);
            }
            if thread_name.as_deref() == Some("cruncher")
                && frames.iter().any(|f| f.starts_with("crunch ("))
            {
                worker.0 += 1;
                worker.1 += usize::from(*active);
            }
        }
        // 1.5 s at 100 Hz: ~150 each; a loaded 2-core machine may get half.
        assert!(main.0 >= 30, "blocking={blocking}: main samples {main:?}");
        assert!(
            worker.0 >= 30,
            "blocking={blocking}: worker samples {worker:?}"
        );
        assert!(
            main.1 * 10 <= main.0,
            "blocking={blocking}: sleeping main thread active in {main:?}"
        );
        assert!(
            worker.1 * 10 >= worker.0 * 8,
            "blocking={blocking}: computing worker idle too often {worker:?}"
        );
        assert!(run.notices().is_empty(), "{:?}", run.notices());
    }
}

const POOL: &str = r#"
import multiprocessing as mp, numpy as np
def work(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((300, 300))
    for _ in range(60):
        a = np.dot(a, a) / 300.0
    return float(a.sum())
if __name__ == "__main__":
    with mp.Pool(2) as pool:
        print(sum(pool.map(work, range(4))))
"#;

#[test]
fn multiprocessing_workers_show_the_worker_function() {
    workers_show_the_worker_function("pool.py", POOL, false);
    // The same pool started after the interpreter has been read once: the parent's first
    // thread-name lookup ran before `threading` existed, so the workers fork with their main
    // thread unnamed; the parent learns the name when the pool starts its threads (a tick may
    // read a worker in between), and the workers take it from the parent. Without that they
    // stayed unnamed for the whole run.
    let late = format!("import time\ntime.sleep(0.3)\n{POOL}");
    workers_show_the_worker_function("pool_late.py", &late, true);
}

/// `named_late`: a worker's first samples may be unnamed, never one after a named one.
fn workers_show_the_worker_function(name: &str, text: &str, named_late: bool) {
    let (_dir, path) = script(name, text);
    let run = sample_run(
        &venv_python(),
        &[path.to_str().unwrap()],
        PythonOptions::default(),
    );
    let mut worker_pids = BTreeSet::new();
    let mut names = BTreeSet::new();
    // Per worker: its samples' names in order, runs of equal names merged.
    let mut sequence: BTreeMap<Pid, Vec<Option<String>>> = BTreeMap::new();
    for e in run.samples() {
        if let Event::PythonSample {
            pid, thread_name, ..
        } = e
        {
            if *pid != run.pid
                && frames_of(e)
                    .iter()
                    .any(|f| f.starts_with(&format!("work ({name}:")))
            {
                worker_pids.insert(*pid);
                let seq = sequence.entry(*pid).or_default();
                if seq.last() != Some(thread_name) {
                    seq.push(thread_name.clone());
                }
                if !(named_late && thread_name.is_none() && seq.len() == 1) {
                    names.insert(thread_name.clone());
                }
            }
        }
    }
    if named_late {
        for (pid, seq) in &sequence {
            assert_eq!(
                seq.last(),
                Some(&Some("MainThread".to_string())),
                "{name}: worker {pid}'s names in order: {seq:?}"
            );
        }
    }
    assert!(
        worker_pids.len() >= 2,
        "worker processes with a `work` frame: {worker_pids:?} ({:?})",
        run.stats
    );
    // Forked workers are read with their parent's analysis (py-spy is opened on one only when
    // it has a thread its parent had not named) and keep the name of the thread that forked them.
    assert!(run.stats.forked >= 2, "{:?}", run.stats);
    assert_eq!(
        names,
        BTreeSet::from([Some("MainThread".to_string())]),
        "{name}"
    );
    assert!(
        run.stats.walked * 10 >= run.stats.reads * 9,
        "{:?}",
        run.stats
    );
    assert!(run.notices().is_empty(), "{:?}", run.notices());
}

const SHORT_CHILD: &str = r#"
import subprocess, sys
code = "import time\ndef spin(d):\n    while time.time() < d: pass\nspin(time.time() + 0.6)\n"
for _ in range(2):
    subprocess.run([sys.executable, "-c", code], check=True)
"#;

#[test]
fn short_lived_child_interpreters_are_sampled_without_spam() {
    let (_dir, path) = script("short.py", SHORT_CHILD);
    let run = sample_run(
        &venv_python(),
        &[path.to_str().unwrap()],
        PythonOptions::default(),
    );
    let mut per_child: BTreeMap<Pid, usize> = BTreeMap::new();
    for e in run.samples() {
        if let Event::PythonSample { pid, .. } = e {
            if *pid != run.pid
                && frames_of(e)
                    .iter()
                    .any(|f| f.starts_with("spin (<string>:"))
            {
                *per_child.entry(*pid).or_default() += 1;
            }
        }
    }
    // Each child spins 0.6 s: at 100 Hz ~60 samples; demand a third of that.
    assert_eq!(per_child.len(), 2, "children sampled: {per_child:?}");
    assert!(per_child.values().all(|&n| n >= 20), "{per_child:?}");
    assert!(run.notices().len() <= 1, "{:?}", run.notices());
}

#[test]
fn pyenv_shim_is_followed_through_exec() {
    let shim = Path::new("/root/.pyenv/shims/python3");
    if !shim.exists() {
        eprintln!("no pyenv shim here; skipped");
        return;
    }
    let run = sample_run(
        shim,
        &[
            "-c",
            "import time\ndef spin(d):\n    while time.time() < d: pass\nspin(time.time() + 1.0)\n",
        ],
        PythonOptions::default(),
    );
    let n = run
        .samples()
        .filter(|e| frames_of(e).iter().any(|f| f.starts_with("spin (")))
        .count();
    assert!(n >= 30, "samples through the shim: {n} ({:?})", run.stats);
    assert!(run.notices().is_empty(), "{:?}", run.notices());
}

#[test]
fn non_python_processes_are_ignored_quietly() {
    let run = sample_run(
        Path::new("/bin/sh"),
        &["-c", "sleep 0.5; sleep 0.5"],
        PythonOptions::default(),
    );
    assert!(run.events.is_empty(), "{:?}", run.events);
    assert_eq!(run.stats.processes, 0);
    // No Python in the tree: the sampler ticks at the procfs pace (50 ms), and kept ticking.
    assert!(run.stats.ticks >= 15, "{:?}", run.stats);
}

#[test]
fn an_unreadable_python_is_reported_once() {
    // Named like Python, but not an interpreter: py-spy cannot open it.
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join("python3.99");
    std::fs::copy("/bin/sleep", &fake).expect("copy sleep");
    let secs = format!("{}", cpuprof_python::OPEN_GRACE.as_secs_f64() + 1.0);
    let run = sample_run(&fake, &[&secs], PythonOptions::default());
    let notices = run.notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains(&run.pid.to_string()) && notices[0].contains("python3.99"),
        "{notices:?}"
    );
    assert_eq!(run.samples().count(), 0);
}

const SLEEPERS: &str = r#"
import threading, time
def nap():
    time.sleep(1.2)
ts = [threading.Thread(target=nap, name="napper-%d" % i) for i in range(3)]
for t in ts:
    t.start()
time.sleep(1.2)
for t in ts:
    t.join()
"#;

#[test]
fn a_process_whose_threads_do_not_run_is_not_read_again() {
    let (_dir, path) = script("sleepers.py", SLEEPERS);
    let run = sample_run(
        &venv_python(),
        &[path.to_str().unwrap()],
        PythonOptions::default(),
    );
    // Four sleeping threads for 1.2 s: most ticks reuse the last read (its stacks still hold),
    // and every tick still gives every thread a sample, none of them running.
    assert!(
        run.stats.reused * 2 >= run.stats.reads,
        "reused {} of {} reads + reuses: {:?}",
        run.stats.reused,
        run.stats.reads + run.stats.reused,
        run.stats
    );
    let nappers = run
        .samples()
        .filter(|e| {
            matches!(e, Event::PythonSample { thread_name: Some(n), active: false, .. }
                if n.starts_with("napper-"))
        })
        .count() as u64;
    assert!(
        nappers >= 3 * 60,
        "{nappers} idle napper samples; {:?}",
        run.stats
    );
    assert!(run.notices().is_empty(), "{:?}", run.notices());
}
