//! Merging Python stacks with native stacks.
//!
//! perf sees a Python thread as a tower of `_PyEval_EvalFrameDefault` frames: the interpreter,
//! not the program. py-spy sees the program's Python frames but nothing beneath them. A merged
//! stack takes the best of both: for every perf sample of a Python thread, the Python frames of
//! that thread's Python sample nearest in time, followed by the native frames that lie *below*
//! the interpreter's deepest frame-evaluation function (NumPy's C code, the BLAS call, the
//! OpenBLAS kernel, the kernel's frames).
//!
//! The rule, in order (see `docs/python.md` for its limits):
//! 1. Threads without Python samples keep their native stacks (BLAS and OpenMP workers).
//! 2. A perf sample with no Python sample of the same thread within the window
//!    (2 × the thread's median Python sampling gap, at least 20 ms) keeps its native stack;
//!    so does one whose nearest Python sample has no Python frames.
//! 3. Otherwise the native stack is cut below its deepest evaluation frame
//!    (`_PyEval_EvalFrameDefault`, `_PyEval_EvalFrame*`, `PyEval_EvalFrame*`, `_PyEval_Vector`,
//!    `PyEval_EvalCode*`, including `.cold` parts). Interpreter call glue below it
//!    (`PyObject_Vectorcall`, `cfunction_call`, ... — interpreter frames whose name contains
//!    "call") is dropped; the rest is kept beneath the Python frames.
//! 4. A native stack with no evaluation frame: if its unwind reached a thread entry point
//!    (`_start`, `main`, `start_thread`, `clone`...) the thread was not running Python code
//!    (start-up, shutdown, GC between frames) and the native stack is kept; if the unwind was
//!    truncated, the partial native stack goes beneath the Python frames.
//! 5. When the profile has no perf samples at all (perf unavailable), the *active* Python samples
//!    become the samples, so the flamegraph still shows where Python spent its time.

use std::collections::HashMap;

use cpuprof_model::{Frame, FrameId, FrameKind, Pid, Profile, PythonSample, Sample, Tid};

/// Smallest matching window, ns (a Python sampler running faster than 100 Hz still gets 20 ms).
const MIN_WINDOW_NS: u64 = 20_000_000;
/// Largest matching window, ns.
const MAX_WINDOW_NS: u64 = 1_000_000_000;

/// Rewrites the stacks of Python threads' perf samples into merged Python + native stacks
/// (module docs give the rule). Call once, after recording; calling it again is harmless
/// (a merged stack has no evaluation frame left and its Python frames are replaced again).
pub fn merge(profile: &mut Profile) {
    let by_thread = python_samples_by_thread(&profile.python_samples);
    if by_thread.is_empty() {
        return;
    }
    if profile.samples.is_empty() {
        fallback_to_python_samples(profile);
        return;
    }
    let windows: HashMap<(Pid, Tid), u64> =
        by_thread.iter().map(|(k, v)| (*k, window_ns(v))).collect();
    let mut cache: HashMap<(Option<u32>, Option<u32>), Option<u32>> = HashMap::new();
    let samples = std::mem::take(&mut profile.samples);
    let mut out = Vec::with_capacity(samples.len());
    for mut s in samples {
        let key = (s.pid, s.tid);
        if let Some(py) = by_thread.get(&key) {
            if let Some(near) = nearest(py, s.t, windows[&key]) {
                if let Some(py_stack) = near.stack {
                    s.stack = *cache
                        .entry((Some(py_stack), s.stack))
                        .or_insert_with(|| merged_stack(profile, py_stack, s.stack));
                }
            }
        }
        out.push(s);
    }
    profile.samples = out;
}

/// Python samples grouped by thread, each group sorted by time.
fn python_samples_by_thread(samples: &[PythonSample]) -> HashMap<(Pid, Tid), Vec<PythonSample>> {
    let mut map: HashMap<(Pid, Tid), Vec<PythonSample>> = HashMap::new();
    for s in samples {
        map.entry((s.pid, s.tid)).or_default().push(*s);
    }
    for v in map.values_mut() {
        v.sort_by_key(|s| s.t);
    }
    map
}

/// Matching window of one thread: twice its median gap between Python samples.
fn window_ns(samples: &[PythonSample]) -> u64 {
    let mut gaps: Vec<u64> = samples.windows(2).map(|w| w[1].t - w[0].t).collect();
    if gaps.is_empty() {
        return MIN_WINDOW_NS * 5;
    }
    gaps.sort_unstable();
    (2 * gaps[gaps.len() / 2]).clamp(MIN_WINDOW_NS, MAX_WINDOW_NS)
}

/// The sample of `sorted` nearest to `t`, if within `window`.
fn nearest(sorted: &[PythonSample], t: u64, window: u64) -> Option<&PythonSample> {
    let i = sorted.partition_point(|s| s.t < t);
    let before = i.checked_sub(1).and_then(|j| sorted.get(j));
    let after = sorted.get(i);
    let best = match (before, after) {
        (Some(b), Some(a)) => {
            if t - b.t <= a.t - t {
                b
            } else {
                a
            }
        }
        (Some(b), None) => b,
        (None, Some(a)) => a,
        (None, None) => return None,
    };
    (best.t.abs_diff(t) <= window).then_some(best)
}

/// The merged stack of one Python stack and one native stack (rules 3 and 4).
fn merged_stack(profile: &mut Profile, py: u32, native: Option<u32>) -> Option<u32> {
    let table = &profile.stacks;
    let py_frames = table.frames_of(py);
    let native_frames = native.map(|n| table.frames_of(n)).unwrap_or_default();
    let frame = |id: FrameId| table.frame(id);
    let below: Vec<FrameId> = match native_frames.iter().rposition(|&f| is_eval(frame(f))) {
        Some(deepest) => native_frames[deepest + 1..]
            .iter()
            .copied()
            .filter(|&f| !is_call_glue(frame(f)))
            .collect(),
        None => {
            let complete = native_frames
                .first()
                .is_some_and(|&f| is_entry_point(frame(f)));
            if complete {
                return native;
            }
            native_frames
        }
    };
    // A stack merged before (merge called twice) starts with Python frames: replace them.
    let below: Vec<FrameId> = below
        .into_iter()
        .skip_while(|&f| frame(f).kind == FrameKind::Python)
        .collect();
    let mut frames = py_frames;
    frames.extend(below);
    profile.stacks.intern_stack(&frames)
}

/// Rule 5: no perf samples at all; active Python samples stand in for them.
fn fallback_to_python_samples(profile: &mut Profile) {
    let mut samples: Vec<Sample> = profile
        .python_samples
        .iter()
        .filter(|s| s.active && s.stack.is_some())
        .map(|s| Sample {
            t: s.t,
            pid: s.pid,
            tid: s.tid,
            stack: s.stack,
        })
        .collect();
    if samples.is_empty() {
        return;
    }
    samples.sort_by_key(|s| s.t);
    if profile.meta.sample_rate_hz.is_none() {
        // From the running threads' samples: a waiting thread's are kept sparser.
        let active: Vec<PythonSample> = profile
            .python_samples
            .iter()
            .filter(|s| s.active)
            .copied()
            .collect();
        let by_thread = python_samples_by_thread(&active);
        let mut gaps: Vec<u64> = by_thread
            .values()
            .flat_map(|v| v.windows(2).map(|w| w[1].t - w[0].t))
            .filter(|&g| g > 0)
            .collect();
        gaps.sort_unstable();
        let period = gaps.get(gaps.len() / 2).copied().unwrap_or(10_000_000);
        profile.meta.sample_rate_hz = Some((1_000_000_000 / period).max(1) as u32);
    }
    profile.samples = samples;
}

/// The interpreter's frame-evaluation functions (one per Python call up to 3.10; one per
/// burst of Python-to-Python calls from 3.11 on).
fn is_eval(f: &Frame) -> bool {
    if f.kind != FrameKind::Native {
        return false;
    }
    let name = f.name.split('.').next().unwrap_or(&f.name);
    matches!(
        name,
        "_PyEval_EvalFrameDefault"
            | "_PyEval_EvalFrame"
            | "PyEval_EvalFrame"
            | "PyEval_EvalFrameEx"
            | "_PyEval_Vector"
            | "_PyEval_EvalCode"
            | "_PyEval_EvalCodeWithName"
            | "PyEval_EvalCode"
            | "PyEval_EvalCodeEx"
    )
}

/// A frame of the interpreter itself: its module is `python*` or `libpython*`, or, with no
/// module known, a `Py*`/`_Py*` symbol.
fn is_interpreter(f: &Frame) -> bool {
    if f.kind != FrameKind::Native {
        return false;
    }
    match f.module_name() {
        Some(m) => m.starts_with("python") || m.starts_with("libpython"),
        None => f.name.starts_with("Py") || f.name.starts_with("_Py"),
    }
}

/// Interpreter call machinery between the evaluation loop and the called C function.
fn is_call_glue(f: &Frame) -> bool {
    is_interpreter(f) && f.name.to_ascii_lowercase().contains("call")
}

/// Where a complete user-space unwind ends (root first).
fn is_entry_point(f: &Frame) -> bool {
    matches!(
        f.name.as_str(),
        "_start" | "__libc_start_main" | "__libc_start_call_main" | "main" | "start_thread"
    ) || f.name.starts_with("clone")
        || f.name.starts_with("__clone")
}

#[cfg(test)]
mod tests;
