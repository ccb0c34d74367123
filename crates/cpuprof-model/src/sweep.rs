//! What `cpuprof sweep` measured: its JSON document (`schema: "cpuprof-sweep/1"`,
//! docs/sweep.md), rendered by the report crate and written as JSON by the binary.
//!
//! The types live here, not in the sweep crate, so the report can render them without
//! depending on how they were measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema name of the sweep document.
pub const SWEEP_SCHEMA: &str = "cpuprof-sweep/1";

/// A setting as text: `OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`, or `as it is` when empty.
pub fn setting_label(setting: &BTreeMap<String, String>) -> String {
    if setting.is_empty() {
        return "as it is".into();
    }
    setting
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A median with a 95% interval (docs/sweep.md says how it is computed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// The median of the runs.
    pub median: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// One failed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRun {
    /// Which run of the candidate (1-based, warm-up = 0).
    pub run: usize,
    /// The exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

/// One setting and what its runs measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepCandidate {
    /// The environment variables set for the program (empty: the program as it is).
    pub setting: BTreeMap<String, String>,
    /// Where the candidate came from: `as it is`, `fix of oversubscription`, `one thread per
    /// pool`, `budget // processes`, `--set`.
    pub origin: String,
    /// Measured runs (warm-up excluded).
    pub runs: usize,
    /// The wall time of each measured run that succeeded, in the order run, seconds.
    pub run_wall_s: Vec<f64>,
    /// How many of them failed (exit code other than 0, or a signal).
    pub failed: usize,
    /// Each failed run.
    pub failed_runs: Vec<FailedRun>,
    /// Wall time, seconds.
    pub wall_s: Stat,
    /// CPU time of the process tree, seconds.
    pub cpu_s: Stat,
    /// Run-queue wait of the process tree, seconds.
    pub runq_wait_s: Stat,
    /// Median wall time over the program as it is (1.0 for it; `null` when unknown).
    pub wall_ratio: Option<f64>,
    /// Finding ids of its runs (each id once, in any run).
    pub findings: Vec<String>,
    /// Where its runs' output went (`run-N.out` / `run-N.err` files).
    pub output: String,
}

/// The recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommended {
    /// The setting (empty: keep the program as it is).
    pub setting: BTreeMap<String, String>,
    /// Median wall time saved against the program as it is, seconds.
    pub saving_wall_s: f64,
    /// Median CPU saved, seconds.
    pub saving_cpu_s: f64,
    /// Why: `fastest`, `least CPU within noise of the fastest`, `nothing beats the program as
    /// it is beyond noise`.
    pub reason: String,
    /// For a Python program, the same setting in code (before the imports that start pools).
    pub python: Option<String>,
}

/// A finding of the first recording beside what the sweep measured for its fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedFinding {
    /// Finding id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The setting its fix names.
    pub setting: BTreeMap<String, String>,
    /// What the analysis estimated the fix saves, wall seconds.
    pub est_saving_wall_s: f64,
    /// What the sweep measured that setting to save (median against the program as it is).
    pub measured_saving_wall_s: Option<f64>,
}

/// The whole sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Always [`SWEEP_SCHEMA`].
    pub schema: String,
    /// The command swept.
    pub command: Vec<String>,
    /// CPU budget of the machine, cores.
    pub cpu_budget: f64,
    /// Every candidate; the first is the program as it is.
    pub candidates: Vec<SweepCandidate>,
    /// The recommendation (`null` when nothing could be measured).
    pub recommended: Option<Recommended>,
    /// The first recording's findings, with the measured saving of each fix.
    pub analysis: Vec<CheckedFinding>,
    /// Stopped early (Ctrl-C or `--max-time`): what was measured so far.
    pub stopped_early: bool,
    /// Seconds the sweep took.
    pub elapsed_s: f64,
    /// cpuprof's own CPU per run, median seconds (the sweep's overhead).
    pub recorder_cpu_per_run_s: f64,
    /// Every run the sweep made: the first recording, warm-ups and measured runs.
    pub runs_total: usize,
    /// The target's wall time summed over all those runs, seconds (`elapsed_s` minus this is
    /// what the sweep spent around them).
    pub target_wall_total_s: f64,
}
