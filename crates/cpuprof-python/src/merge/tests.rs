//! Unit tests of the merge rule on hand-built profiles.

use super::*;
use cpuprof_model::{Event, Machine, Meta, ProfileBuilder};
use std::sync::Arc;

const MS: u64 = 1_000_000;

fn native(name: &str, module: &str) -> Frame {
    Frame {
        kind: FrameKind::Native,
        name: name.into(),
        module: Some(module.into()),
        line: None,
        short_file: None,
    }
}

fn py(name: &str, line: u32) -> Frame {
    Frame {
        kind: FrameKind::Python,
        name: name.into(),
        module: Some("/src/work.py".into()),
        line: Some(line),
        short_file: None,
    }
}

const LIBPY: &str = "/usr/lib/libpython3.11.so.1.0";

/// A native stack of a thread inside `np.dot` from Python code.
fn numpy_native() -> Vec<Frame> {
    vec![
        native("_start", "/usr/bin/python3.11"),
        native("Py_RunMain", LIBPY),
        native("_PyEval_EvalFrameDefault", LIBPY),
        native("_PyEval_Vector", LIBPY),
        native("_PyEval_EvalFrameDefault", LIBPY),
        native("PyObject_Vectorcall", LIBPY),
        native("cfunction_call", LIBPY),
        native("array_dot", "/venv/numpy/_multiarray_umath.so"),
        native("_PyObject_MakeTpCall", LIBPY),
        native("cblas_dgemm", "/venv/numpy.libs/libscipy_openblas.so"),
        native(
            "dgemm_kernel_HASWELL",
            "/venv/numpy.libs/libscipy_openblas.so",
        ),
    ]
}

fn python_event(t: u64, tid: u32, frames: Vec<Frame>, active: bool) -> Event {
    Event::PythonSample {
        t,
        pid: 10,
        tid,
        thread_name: None,
        frames: frames.into_iter().map(Arc::new).collect(),
        owns_gil: true,
        active,
    }
}

fn perf_event(t: u64, tid: u32, frames: Vec<Frame>) -> Event {
    Event::Sample {
        t,
        pid: 10,
        tid,
        frames: frames.into_iter().map(Arc::new).collect(),
    }
}

fn build(events: Vec<Event>) -> Profile {
    let mut b = ProfileBuilder::new(Meta::new(vec!["python".into()]), Machine::default(), 0);
    for e in events {
        b.handle(e);
    }
    b.finish(10_000 * MS)
}

fn labels(p: &Profile, s: &Sample) -> Vec<String> {
    s.stack
        .map(|id| {
            p.stacks
                .frames_of(id)
                .into_iter()
                .map(|f| p.stacks.frame(f).label())
                .collect()
        })
        .unwrap_or_default()
}

/// Python samples every 10 ms on tid 10.
fn py_ticks(frames: Vec<Frame>) -> Vec<Event> {
    (0..10)
        .map(|i| python_event(100 * MS + i * 10 * MS, 10, frames.clone(), true))
        .collect()
}

#[test]
fn python_frames_then_native_frames_below_the_deepest_eval() {
    let mut ev = py_ticks(vec![py("<module>", 1), py("worker", 7)]);
    ev.push(perf_event(133 * MS, 10, numpy_native()));
    let mut p = build(ev);
    merge(&mut p);
    assert_eq!(
        labels(&p, &p.samples[0]),
        vec![
            "<module> (work.py:1)",
            "worker (work.py:7)",
            "array_dot",
            "cblas_dgemm",
            "dgemm_kernel_HASWELL"
        ]
    );
}

#[test]
fn non_call_interpreter_frames_below_eval_are_kept() {
    let mut ev = py_ticks(vec![py("<module>", 1), py("nap", 3)]);
    ev.push(perf_event(
        120 * MS,
        10,
        vec![
            native("_start", "/usr/bin/python3.11"),
            native("_PyEval_EvalFrameDefault.cold", LIBPY),
            native("cfunction_vectorcall_O", LIBPY),
            native("time_sleep", LIBPY),
            native("clock_nanosleep", "/lib/libc.so.6"),
        ],
    ));
    let mut p = build(ev);
    merge(&mut p);
    assert_eq!(
        labels(&p, &p.samples[0]),
        vec![
            "<module> (work.py:1)",
            "nap (work.py:3)",
            "time_sleep",
            "clock_nanosleep"
        ]
    );
}

#[test]
fn nearest_python_sample_is_used() {
    let mut ev = vec![
        python_event(100 * MS, 10, vec![py("a", 1)], true),
        python_event(110 * MS, 10, vec![py("b", 2)], true),
        python_event(120 * MS, 10, vec![py("c", 3)], true),
    ];
    ev.push(perf_event(112 * MS, 10, numpy_native()));
    ev.push(perf_event(118 * MS, 10, numpy_native()));
    let mut p = build(ev);
    merge(&mut p);
    assert_eq!(labels(&p, &p.samples[0])[0], "b (work.py:2)");
    assert_eq!(labels(&p, &p.samples[1])[0], "c (work.py:3)");
}

#[test]
fn samples_far_from_any_python_sample_keep_native_stacks() {
    let mut ev = py_ticks(vec![py("worker", 7)]);
    // Python samples span 100..190 ms, every 10 ms: window 20 ms.
    ev.push(perf_event(500 * MS, 10, numpy_native()));
    ev.push(perf_event(215 * MS, 10, numpy_native()));
    let mut p = build(ev);
    merge(&mut p);
    for s in &p.samples {
        assert_eq!(labels(&p, s)[0], "_start", "sample at {}", s.t);
    }
}

#[test]
fn threads_without_python_samples_keep_native_stacks() {
    let mut ev = py_ticks(vec![py("worker", 7)]);
    let blas = vec![
        native("clone3", "/lib/libc.so.6"),
        native("start_thread", "/lib/libc.so.6"),
        native("blas_thread_server", "/lib/libopenblas.so"),
    ];
    ev.push(perf_event(130 * MS, 11, blas.clone()));
    let mut p = build(ev);
    merge(&mut p);
    assert_eq!(
        labels(&p, &p.samples[0]),
        vec!["clone3", "start_thread", "blas_thread_server"]
    );
}

#[test]
fn complete_stack_without_eval_is_kept_truncated_one_goes_below_python() {
    let mut ev = py_ticks(vec![py("worker", 7)]);
    ev.push(perf_event(
        120 * MS,
        10,
        vec![
            native("_start", "/usr/bin/python3.11"),
            native("Py_FinalizeEx", LIBPY),
        ],
    ));
    ev.push(perf_event(
        140 * MS,
        10,
        vec![native(
            "dgemm_kernel_HASWELL",
            "/venv/numpy.libs/libscipy_openblas.so",
        )],
    ));
    let mut p = build(ev);
    merge(&mut p);
    assert_eq!(labels(&p, &p.samples[0]), vec!["_start", "Py_FinalizeEx"]);
    assert_eq!(
        labels(&p, &p.samples[1]),
        vec!["worker (work.py:7)", "dgemm_kernel_HASWELL"]
    );
}

#[test]
fn python_sample_without_frames_keeps_native() {
    let mut ev = vec![python_event(100 * MS, 10, vec![], true)];
    ev.push(perf_event(101 * MS, 10, numpy_native()));
    let mut p = build(ev);
    merge(&mut p);
    assert_eq!(labels(&p, &p.samples[0])[0], "_start");
}

#[test]
fn merging_twice_changes_nothing() {
    let mut ev = py_ticks(vec![py("worker", 7)]);
    ev.push(perf_event(133 * MS, 10, numpy_native()));
    let mut p = build(ev);
    merge(&mut p);
    let once = labels(&p, &p.samples[0]);
    merge(&mut p);
    assert_eq!(labels(&p, &p.samples[0]), once);
}

#[test]
fn without_perf_active_python_samples_become_samples() {
    let mut ev = py_ticks(vec![py("worker", 7)]);
    ev.push(python_event(105 * MS, 12, vec![py("sleeper", 2)], false));
    let mut p = build(ev);
    merge(&mut p);
    assert_eq!(p.samples.len(), 10);
    assert!(p.samples.iter().all(|s| s.tid == 10));
    assert_eq!(labels(&p, &p.samples[0]), vec!["worker (work.py:7)"]);
    assert_eq!(p.meta.sample_rate_hz, Some(100));
}

#[test]
fn window_is_twice_the_median_gap() {
    let s = |t| PythonSample {
        t,
        pid: 1,
        tid: 1,
        stack: None,
        owns_gil: false,
        active: true,
        repeats: 1,
    };
    assert_eq!(window_ns(&[s(0), s(50 * MS), s(100 * MS)]), 100 * MS);
    assert_eq!(window_ns(&[s(0), s(MS), s(2 * MS)]), MIN_WINDOW_NS);
}
