//! What the analysis concludes about a profile: findings, and the role of each thread.
//!
//! The types live here, not in the analysis crate, so the report can render them without
//! depending on how they were found.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{FrameId, Pid, Tid};

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Costs measurable time or CPU.
    Warning,
    /// Costs a lot.
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem found, with its evidence and its fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable identifier: `oversubscription`, `too-many-processes`, `spin-wait`, `cpu-quota`,
    /// `nested-pools`.
    pub id: String,
    /// How bad.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// The evidence, with numbers.
    pub detail: String,
    /// The exact setting or code change that fixes it.
    pub fix: String,
    /// The environment variables the fix sets, when it is a setting (`cpuprof sweep` runs it).
    #[serde(default)]
    pub setting: BTreeMap<String, String>,
    /// Estimated CPU seconds the fix saves.
    pub est_saving_cpu_s: f64,
    /// Estimated wall seconds the fix saves.
    pub est_saving_wall_s: f64,
    /// Processes involved.
    pub pids: Vec<Pid>,
    /// Threads involved.
    pub tids: Vec<Tid>,
}

/// What a thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThreadRole {
    /// The main thread of a non-Python process.
    Main,
    /// A thread running Python code.
    Python,
    /// A BLAS library's worker thread.
    BlasWorker,
    /// An OpenMP runtime's worker thread.
    OpenmpWorker,
    /// A worker of another library's pool (Rayon, numexpr, numba, TBB, PyTorch, ...).
    PoolWorker,
    /// Anything else.
    Other,
}

impl ThreadRole {
    /// `main`, `python`, `blas-worker`, `openmp-worker`, `pool-worker`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadRole::Main => "main",
            ThreadRole::Python => "python",
            ThreadRole::BlasWorker => "blas-worker",
            ThreadRole::OpenmpWorker => "openmp-worker",
            ThreadRole::PoolWorker => "pool-worker",
            ThreadRole::Other => "other",
        }
    }
}

/// A thread's role and the runtime it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadClass {
    /// Its role.
    pub role: ThreadRole,
    /// The runtime (`OpenBLAS`, `GNU OpenMP`, ...) whose pool it belongs to, if any.
    pub runtime: Option<String>,
}

/// A BLAS/OpenMP runtime loaded in a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRuntime {
    /// Process.
    pub pid: Pid,
    /// Runtime name (`OpenBLAS`, `MKL`, `GNU OpenMP`, ...).
    pub name: String,
    /// Path of the library.
    pub library: String,
    /// Thread-count variables in effect for it.
    pub knobs: BTreeMap<String, String>,
    /// Threads of its pool.
    pub threads: Vec<Tid>,
}

/// Everything the analysis concluded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Findings, most costly first.
    pub findings: Vec<Finding>,
    /// Role of each thread, by tid.
    pub threads: BTreeMap<Tid, ThreadClass>,
    /// Runtimes loaded, per process.
    pub runtimes: Vec<ProcessRuntime>,
    /// Frames the analysis counted as a runtime's busy-wait loop (the innermost user frame of a
    /// spinning sample), so the flamegraph can paint exactly what the spin finding measured.
    #[serde(default)]
    pub wait_frames: BTreeSet<FrameId>,
}

impl Analysis {
    /// The worst severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}
