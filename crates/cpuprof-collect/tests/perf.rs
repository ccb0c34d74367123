//! The perf sampler on real processes: a C program built without frame pointers, launched
//! paused, sampled through `inherit` events, unwound with `.eh_frame`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use cpuprof_collect::launcher::PausedChild;
use cpuprof_collect::perf::{PerfOptions, PerfSampler, PerfTarget};
use cpuprof_model::Event;

const CHAIN_C: &str = r#"
#include <stdio.h>
#include <time.h>
volatile double sink;
__attribute__((noinline)) double leaf(long n) {
    double x = 0;
    for (long i = 0; i < n; i++) x += (double)i * 0.5;
    sink = x;
    return x;
}
__attribute__((noinline)) double middle(long n) { double r = leaf(n); sink += r; return r * 2; }
__attribute__((noinline)) double outer(long n) { double r = middle(n); sink += r; return r + 1; }
int main(void) {
    double t = 0;
    while (clock() < CLOCKS_PER_SEC * 8 / 10) t += outer(2000000);
    printf("%f\n", t);
    return 0;
}
"#;

/// Compiles the chain program with `-O2 -fomit-frame-pointer` into `dir`.
fn build_chain(dir: &Path) -> PathBuf {
    common::compile_c(dir, "chain", CHAIN_C, &["-O2", "-fomit-frame-pointer"])
}

/// Launches `command` paused, samples it until it exits, returns all perf events.
fn record(command: &[String]) -> (Vec<Event>, cpuprof_collect::perf::PerfStats) {
    record_with(command, &PerfOptions::default())
}

/// [`record`] with explicit options.
fn record_with(
    command: &[String],
    opts: &PerfOptions,
) -> (Vec<Event>, cpuprof_collect::perf::PerfStats) {
    let mut child = PausedChild::spawn(command, false).expect("spawn");
    let sampler = PerfSampler::open(PerfTarget::Launch(child.pid()), opts)
        .expect("perf_event_open works on this machine");
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = sampler.spawn(tx, stop.clone());
    child.release().expect("exec");
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child.pid() as i32, &mut status, 0) };
    stop.store(true, Ordering::Release);
    let stats = handle.join().unwrap();
    let mut events = Vec::new();
    for e in rx {
        match e {
            Event::Batch(batch) => events.extend(batch),
            e => events.push(e),
        }
    }
    (events, stats)
}

#[test]
fn chain_without_frame_pointers_unwinds_in_order() {
    let dir = std::env::temp_dir().join(format!("cpuprof-perf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build_chain(&dir);
    let (events, stats) = record(&[exe.to_string_lossy().into_owned()]);
    let stacks: Vec<Vec<String>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Sample { frames, .. } => Some(frames.iter().map(|f| f.name.clone()).collect()),
            _ => None,
        })
        .collect();
    // 0.8 s of CPU at the default rate.
    assert!(
        stacks.len() >= 100,
        "only {} samples: {stats:?}",
        stacks.len()
    );
    let in_order = stacks
        .iter()
        .filter(|s| {
            let pos = |n: &str| s.iter().position(|f| f == n);
            matches!(
                (pos("main"), pos("outer"), pos("middle"), pos("leaf")),
                (Some(a), Some(b), Some(c), Some(d)) if a < b && b < c && c < d
            )
        })
        .count();
    let show: Vec<_> = stacks.iter().take(3).collect();
    eprintln!(
        "{stats:?}; {in_order}/{} in order; first: {show:?}",
        stacks.len()
    );
    assert!(
        in_order * 10 >= stacks.len() * 8,
        "{in_order} of {} samples have main → outer → middle → leaf; e.g. {show:?}",
        stacks.len()
    );
    let switches: usize = events
        .iter()
        .map(|e| match e {
            Event::Switches(batch) => batch.len(),
            _ => 0,
        })
        .sum();
    assert!(switches >= 2, "context switches recorded: {switches}");
    assert_eq!(stats.lost, 0);
}

/// Diagnostic, not a check: `PERF_DUMP_CMD="prog args" cargo test --release --test perf --
/// --ignored --nocapture dump` prints the sampler's counters and the top stacks per thread.
#[test]
#[ignore]
fn dump() {
    let Ok(cmd) = std::env::var("PERF_DUMP_CMD") else {
        return;
    };
    let command: Vec<String> = cmd.split_whitespace().map(String::from).collect();
    let t0 = std::time::Instant::now();
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let opts = PerfOptions {
        rate_hz: env("PERF_DUMP_RATE", PerfOptions::default().rate_hz),
        stack_bytes: env("PERF_DUMP_STACK", PerfOptions::default().stack_bytes),
        context_switches: env("PERF_DUMP_SWITCHES", 1) != 0,
        machine_wide: env("PERF_DUMP_MACHINE_WIDE", 1) != 0,
    };
    let (events, stats) = record_with(&command, &opts);
    eprintln!("{stats:?} wall {:?}", t0.elapsed());
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for e in &events {
        if let Event::Sample { tid, frames, .. } = e {
            let s: Vec<_> = frames.iter().map(|f| f.name.as_str()).collect();
            *counts.entry(format!("{tid};{}", s.join(";"))).or_default() += 1;
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (s, n) in v.iter().take(25) {
        eprintln!("{n:6} {s}");
    }
}

const NUMPY_PY: &str = "
import numpy as np, time
a = np.random.rand(800, 800)
t = time.time()
while time.time() - t < 2.0:
    a @ a
";

#[test]
fn numpy_workers_reach_blas_thread_server_and_main_reaches_main() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        python.exists(),
        "the project venv ({python:?}) is missing: make setup"
    );
    let dir = std::env::temp_dir().join(format!("cpuprof-perf-numpy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("mm.py");
    std::fs::write(&script, NUMPY_PY).unwrap();
    // Two BLAS threads: the main thread and one worker, whatever the machine.
    std::env::set_var("OPENBLAS_NUM_THREADS", "2");
    let (events, stats) = record(&[
        python.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
    ]);
    assert_eq!(stats.lost, 0);
    let mut pid = 0;
    let mut main = Vec::new();
    let mut workers = Vec::new();
    for e in &events {
        if let Event::Sample {
            pid: p,
            tid,
            frames,
            ..
        } = e
        {
            pid = *p;
            if tid == p {
                main.push(frames);
            } else {
                workers.push(frames);
            }
        }
    }
    assert!(
        pid != 0 && workers.len() >= 50,
        "{} worker samples",
        workers.len()
    );
    let pos = |s: &[cpuprof_model::FrameKey], n: &str| s.iter().position(|f| f.name == n);
    let good_workers = workers
        .iter()
        .filter(|s| {
            let blas = s
                .iter()
                .any(|f| f.module_name().is_some_and(|m| m.contains("openblas")));
            blas && pos(s, "__clone3") == Some(0)
                && pos(s, "start_thread") == Some(1)
                && pos(s, "blas_thread_server").is_some()
        })
        .count();
    assert!(
        good_workers * 10 >= workers.len() * 7,
        "{good_workers} of {} worker samples: clone3 → start_thread → blas_thread_server in OpenBLAS",
        workers.len()
    );
    // Main thread: interpreter frames down to `_start` (python's `main` tail-calls
    // `Py_BytesMain`, so `main` itself is not on the stack). Samples inside dgemm exceed the
    // 64 KB stack copy (OpenBLAS keeps big buffers on the stack); the walk goes on in the
    // live thread's stack when the thread is still inside the frames the copy ends in, which
    // is nearly always (measured: all samples rooted, quiet or on an overloaded machine;
    // without it 7-20% under load). Every rooted one must go through the interpreter.
    let rooted: Vec<_> = main
        .iter()
        .filter(|s| pos(s, "_start") == Some(0))
        .collect();
    let unrooted: Vec<String> = main
        .iter()
        .filter(|s| pos(s, "_start") != Some(0))
        .take(3)
        .map(|s| {
            let names: Vec<&str> = s.iter().map(|f| f.name.as_str()).collect();
            names.join(";")
        })
        .collect();
    assert!(
        rooted.len() * 10 >= main.len() * 8,
        "{} of {} main-thread samples reach _start; {stats:?}; e.g. {unrooted:#?}",
        rooted.len(),
        main.len()
    );
    let through_interpreter = rooted
        .iter()
        .filter(|s| {
            matches!(
                (
                    pos(s, "Py_BytesMain"),
                    pos(s, "Py_RunMain"),
                    pos(s, "_PyEval_EvalFrameDefault")
                ),
                (Some(a), Some(b), Some(c)) if a < b && b < c
            )
        })
        .count();
    let outside: Vec<String> = rooted
        .iter()
        .filter(|s| pos(s, "_PyEval_EvalFrameDefault").is_none())
        .take(3)
        .map(|s| {
            let names: Vec<&str> = s.iter().map(|f| f.name.as_str()).collect();
            names.join(";")
        })
        .collect();
    assert!(
        through_interpreter * 10 >= rooted.len() * 8,
        "{through_interpreter} of {} rooted main-thread samples go Py_BytesMain → Py_RunMain → \
         _PyEval_EvalFrameDefault; {stats:?}; e.g. {outside:#?}",
        rooted.len()
    );
    let eval_module = rooted
        .iter()
        .flat_map(|s| s.iter())
        .find(|f| f.name == "_PyEval_EvalFrameDefault")
        .and_then(|f| f.module.clone());
    eprintln!(
        "{} of {} main-thread samples rooted; _PyEval_EvalFrameDefault is in {eval_module:?}; \
         {stats:?}",
        rooted.len(),
        main.len()
    );
    // pyenv builds Python with --enable-shared: the interpreter is libpython.
    assert!(
        eval_module.is_some_and(|m| m.contains("libpython") || m.contains("python3")),
        "the interpreter loop's module"
    );
}
