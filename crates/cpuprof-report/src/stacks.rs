//! Which stack samples the outputs count, and small summaries of them.
//!
//! Perf samples (`Profile::samples`) are the source of truth for where CPU went: each stands for
//! the same slice of CPU time, and for Python threads they carry the merged Python + native
//! stack. When perf was unavailable the Python sampler's stacks of *active* threads are used
//! instead, so a profile recorded without perf still has a flamegraph.

use std::collections::HashMap;

use cpuprof_model::{Pid, Process, Profile, StackId, Thread, Tid};

/// One counted stack sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackSample {
    /// Time, ns since the start.
    pub t: u64,
    /// Process.
    pub pid: Pid,
    /// Thread.
    pub tid: Tid,
    /// Stack, root first; `None` when nothing could be unwound.
    pub stack: Option<StackId>,
}

/// Where the samples came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleSource {
    /// perf `cpu-clock` samples (native, merged with Python frames for Python threads).
    Perf,
    /// The Python sampler's stacks of active threads (perf was unavailable).
    Python,
    /// No stacks were recorded.
    None,
}

impl SampleSource {
    /// `perf`, `python` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            SampleSource::Perf => "perf",
            SampleSource::Python => "python",
            SampleSource::None => "none",
        }
    }
}

/// The source of the counted samples.
pub fn source(profile: &Profile) -> SampleSource {
    if !profile.samples.is_empty() {
        SampleSource::Perf
    } else if profile.python_samples.iter().any(|s| s.active) {
        SampleSource::Python
    } else {
        SampleSource::None
    }
}

/// Each sampled thread's CPU time divided among its `samples` (ns per sample, the remainder
/// dropped), keyed by (pid, tid): the weight the viewers' formats give a sample so that a
/// thread's samples add up to what procfs measured for it.
pub fn cpu_per_sample(profile: &Profile, samples: &[StackSample]) -> HashMap<(Pid, Tid), u64> {
    let mut count: HashMap<(Pid, Tid), u64> = HashMap::new();
    for s in samples {
        *count.entry((s.pid, s.tid)).or_default() += 1;
    }
    let mut out = HashMap::with_capacity(count.len());
    for p in &profile.processes {
        for t in &p.threads {
            if let Some(n) = count.get(&(p.pid, t.tid)) {
                out.insert((p.pid, t.tid), t.cpu_ns / n);
            }
        }
    }
    for key in count.keys() {
        out.entry(*key).or_insert(0);
    }
    out
}

/// The counted samples, sorted by time.
pub fn samples(profile: &Profile) -> Vec<StackSample> {
    match source(profile) {
        SampleSource::Perf => profile
            .samples
            .iter()
            .map(|s| StackSample {
                t: s.t,
                pid: s.pid,
                tid: s.tid,
                stack: s.stack,
            })
            .collect(),
        SampleSource::Python => profile
            .python_samples
            .iter()
            .filter(|s| s.active)
            .map(|s| StackSample {
                t: s.t,
                pid: s.pid,
                tid: s.tid,
                stack: s.stack,
            })
            .collect(),
        SampleSource::None => Vec::new(),
    }
}

/// A leaf function and how many of a thread's samples ended in it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopFunction {
    /// Frame label (`name`, or `name (file.py:line)`).
    pub name: String,
    /// Samples whose leaf it was.
    pub samples: u64,
    /// Share of the thread's samples, 0..1.
    pub share: f64,
    /// The source file's full path (Python frames).
    pub file: Option<String>,
}

/// Per (pid, tid): sample count and leaf-function counts.
#[derive(Debug, Default)]
pub struct LeafCounts {
    per_thread: HashMap<(Pid, Tid), (u64, LeafMap)>,
}

/// Per leaf label: samples, and the full path of a Python frame's file.
type LeafMap = HashMap<String, (u64, Option<String>)>;

impl LeafCounts {
    /// Counts the leaves of `samples`.
    pub fn new(profile: &Profile, samples: &[StackSample]) -> Self {
        // Count by stack id first (cheap), then turn the distinct stacks into leaf labels.
        let mut by_stack: HashMap<(Pid, Tid, Option<StackId>), u64> = HashMap::new();
        for s in samples {
            *by_stack.entry((s.pid, s.tid, s.stack)).or_default() += 1;
        }
        let mut per_thread: HashMap<(Pid, Tid), (u64, LeafMap)> = HashMap::new();
        for ((pid, tid, stack), n) in by_stack {
            let e = per_thread.entry((pid, tid)).or_default();
            e.0 += n;
            let leaf = stack.and_then(|id| profile.stacks.leaf(id));
            let label = leaf.map_or_else(|| UNKNOWN.to_string(), |f| f.label());
            let file = leaf
                .filter(|f| f.kind == cpuprof_model::FrameKind::Python)
                .and_then(|f| f.module.clone());
            let slot = e.1.entry(label).or_insert((0, file));
            slot.0 += n;
        }
        LeafCounts { per_thread }
    }

    /// Samples of one thread.
    pub fn samples(&self, pid: Pid, tid: Tid) -> u64 {
        self.per_thread.get(&(pid, tid)).map_or(0, |e| e.0)
    }

    /// The `n` most frequent leaf functions of one thread, most frequent first.
    pub fn top(&self, pid: Pid, tid: Tid, n: usize) -> Vec<TopFunction> {
        let Some((total, counts)) = self.per_thread.get(&(pid, tid)) else {
            return Vec::new();
        };
        let mut v: Vec<_> = counts.iter().collect();
        v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));
        v.into_iter()
            .take(n)
            .map(|(name, (c, file))| TopFunction {
                name: name.clone(),
                samples: *c,
                share: *c as f64 / (*total).max(1) as f64,
                file: file.clone(),
            })
            .collect()
    }
}

/// Label of a sample without a usable stack.
pub const UNKNOWN: &str = "[unknown]";

/// A process's short name: the base name of its program (`python`), else of its executable.
pub fn process_name(p: &Process) -> String {
    let prog = p
        .command
        .first()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .or(p.exe.as_deref())
        .unwrap_or("?");
    prog.rsplit('/').next().unwrap_or(prog).to_string()
}

/// `name (pid)`, the process's first frame in folded stacks and flamegraphs.
pub fn process_label(p: &Process) -> String {
    format!("{} ({})", process_name(p), p.pid)
}

/// `name (tid)`, the thread's frame in folded stacks and flamegraphs.
pub fn thread_label(t: &Thread) -> String {
    let name = if t.name.is_empty() { "?" } else { &t.name };
    format!("{name} ({})", t.tid)
}
