//! The summary JSON (`--json`): one object, schema `cpuprof-summary/1`, that CI scripts and
//! other tools read. Its fields are a contract documented in `docs/summary-json.md`: existing
//! names never change meaning; new ones may be added.

use std::collections::BTreeMap;

use cpuprof_model::{secs, Analysis, Finding, Pid, Process, Profile, Thread, Tid};
use serde::Serialize;
use serde_json::Value;

use crate::stacks::{self, LeafCounts};

/// The `schema` value.
pub const SCHEMA: &str = "cpuprof-summary/1";

/// Leaf functions listed per thread in `top_functions`.
pub const TOP_FUNCTIONS: usize = 5;

/// The summary document; docs/summary-json.md describes every field.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The command run, or the target's command line when attached.
    pub command: &'a [String],
    /// Root process of the target tree.
    pub pid: Pid,
    /// Recorded with `--pid`.
    pub attached: bool,
    /// The target's exit code.
    pub exit_code: Option<i32>,
    /// The signal that killed the target.
    pub signal: Option<i32>,
    /// Start of the recording, Unix ms.
    pub start_unix_ms: u64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// CPU of the tree, seconds.
    pub cpu_s: f64,
    /// User CPU, seconds.
    pub user_s: f64,
    /// System CPU, seconds.
    pub sys_s: f64,
    /// Run-queue wait of the tree, seconds.
    pub runq_wait_s: f64,
    /// CPU budget, cores.
    pub cpu_budget: f64,
    /// CPU seconds per wall second.
    pub avg_cores_busy: f64,
    /// The kernel's rusage of the tree, seconds.
    pub tree_rusage_cpu_s: Option<f64>,
    /// The machine.
    pub machine: MachineSummary<'a>,
    /// Poll interval, seconds.
    pub interval_s: f64,
    /// Native stack sampling rate used.
    pub sample_rate_hz: Option<u32>,
    /// Where native samples came from.
    pub sample_source: &'static str,
    /// Where the figures of tasks that end came from.
    pub exit_accounting: &'static str,
    /// CPU of processes' teardown after their exit figures, seconds.
    pub exit_teardown_cpu_s: Option<f64>,
    /// Native stack samples.
    pub samples: usize,
    /// Samples lost.
    pub lost_samples: u64,
    /// cpuprof's own CPU, seconds.
    pub cpuprof_cpu_s: Option<f64>,
    /// cpuprof's peak memory.
    pub cpuprof_max_rss_kb: Option<u64>,
    /// Every process.
    pub processes: Vec<ProcessSummary<'a>>,
    /// The analysis's findings, most costly first.
    pub findings: &'a [Finding],
    /// Notices of the recording.
    pub notices: &'a [String],
    /// cpuprof's version.
    pub cpuprof_version: &'a str,
}

/// `machine`.
#[derive(Debug, Serialize)]
pub struct MachineSummary<'a> {
    /// Online CPUs.
    pub online_cpus: u32,
    /// CPUs in the target's affinity mask.
    pub affinity_cpus: u32,
    /// The cgroup quota, CPUs.
    pub cgroup_quota_cpus: Option<f64>,
    /// The target's cgroup.
    pub cgroup: Option<CgroupSummary<'a>>,
    /// Kernel release.
    pub kernel: &'a str,
    /// CPU model.
    pub cpu_model: &'a str,
}

/// `machine.cgroup`.
#[derive(Debug, Serialize)]
pub struct CgroupSummary<'a> {
    /// 1 or 2.
    pub version: u8,
    /// Its path.
    pub path: &'a str,
    /// Its quota, CPUs.
    pub quota_cpus: Option<f64>,
    /// Periods throttled during the recording.
    pub throttled_periods: Option<u64>,
    /// Time throttled during the recording, seconds.
    pub throttled_s: Option<f64>,
}

/// One entry of `processes`.
#[derive(Debug, Serialize)]
pub struct ProcessSummary<'a> {
    /// Process id.
    pub pid: Pid,
    /// Parent.
    pub ppid: Pid,
    /// Command line.
    pub command: &'a [String],
    /// Executable.
    pub exe: Option<&'a str>,
    /// Start, seconds into the recording.
    pub start_s: f64,
    /// End, seconds into the recording.
    pub end_s: Option<f64>,
    /// CPU of its own threads, seconds.
    pub cpu_s: f64,
    /// User CPU, seconds.
    pub user_s: f64,
    /// System CPU, seconds.
    pub sys_s: f64,
    /// Run-queue wait, seconds.
    pub runq_wait_s: f64,
    /// Peak memory.
    pub max_rss_kb: u64,
    /// Libraries of interest.
    pub libraries: &'a [String],
    /// Whitelisted thread-count variables.
    pub env: &'a BTreeMap<String, String>,
    /// Runtimes loaded.
    pub runtimes: Vec<RuntimeSummary<'a>>,
    /// Native samples.
    pub samples: u64,
    /// Threads, most CPU first.
    pub threads: Vec<ThreadSummary<'a>>,
}

/// One entry of a process's `runtimes`.
#[derive(Debug, Serialize)]
pub struct RuntimeSummary<'a> {
    /// Runtime name.
    pub name: &'a str,
    /// Its library.
    pub library: &'a str,
    /// Its variables in effect.
    pub knobs: &'a BTreeMap<String, String>,
    /// Threads of its pool.
    pub threads: &'a [Tid],
}

/// One entry of a process's `threads`.
#[derive(Debug, Serialize)]
pub struct ThreadSummary<'a> {
    /// Thread id.
    pub tid: Tid,
    /// Its name.
    pub name: &'a str,
    /// CPU, seconds.
    pub cpu_s: f64,
    /// User CPU, seconds.
    pub user_s: f64,
    /// System CPU, seconds.
    pub sys_s: f64,
    /// Run-queue wait, seconds.
    pub runq_wait_s: f64,
    /// Start, seconds into the recording.
    pub start_s: f64,
    /// End, seconds into the recording.
    pub end_s: Option<f64>,
    /// Voluntary context switches.
    pub vcsw: u64,
    /// Involuntary context switches.
    pub ivcsw: u64,
    /// Its role.
    pub role: Option<&'static str>,
    /// Its runtime.
    pub runtime: Option<&'a str>,
    /// Native samples.
    pub samples: u64,
    /// Most frequent leaf functions.
    pub top_functions: Vec<TopFunctionSummary>,
}

/// One entry of `top_functions`.
#[derive(Debug, Serialize)]
pub struct TopFunctionSummary {
    /// Frame label.
    pub name: String,
    /// Samples.
    pub samples: u64,
    /// Share of the thread's samples.
    pub share: f64,
    /// Full path of a Python frame's file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The summary of a profile and its analysis.
pub fn summary<'a>(profile: &'a Profile, analysis: &'a Analysis) -> Summary<'a> {
    let meta = &profile.meta;
    let cpu = profile.cpu();
    let samples = stacks::samples(profile);
    let leaves = LeafCounts::new(profile, &samples);
    let m = &profile.machine;
    Summary {
        schema: SCHEMA,
        command: &meta.command,
        pid: meta.pid,
        attached: meta.attached,
        exit_code: meta.exit_code,
        signal: meta.signal,
        start_unix_ms: meta.start_unix_ms,
        wall_s: secs(meta.wall_ns),
        cpu_s: secs(cpu.total_ns()),
        user_s: secs(cpu.user_ns),
        sys_s: secs(cpu.sys_ns),
        runq_wait_s: secs(profile.runq_ns()),
        cpu_budget: m.cpu_budget(),
        avg_cores_busy: avg_cores_busy(profile),
        tree_rusage_cpu_s: meta.tree_rusage.map(|r| secs(r.total_ns())),
        machine: MachineSummary {
            online_cpus: m.online_cpus,
            affinity_cpus: m.affinity_cpus,
            cgroup_quota_cpus: m.quota_cpus(),
            cgroup: m.cgroup.as_ref().map(|c| CgroupSummary {
                version: c.version,
                path: &c.path,
                quota_cpus: c.quota_cpus,
                throttled_periods: throttled(c).map(|t| t.0),
                throttled_s: throttled(c).map(|t| secs(t.1)),
            }),
            kernel: &m.kernel,
            cpu_model: &m.cpu_model,
        },
        interval_s: secs(meta.interval_ns),
        sample_rate_hz: meta.sample_rate_hz,
        sample_source: stacks::source(profile).as_str(),
        exit_accounting: meta.exit_accounting.name(),
        exit_teardown_cpu_s: meta.exit_teardown_ns.map(secs),
        samples: samples.len(),
        lost_samples: meta.lost_samples,
        cpuprof_cpu_s: meta.recorder_cpu.map(|r| secs(r.total_ns())),
        cpuprof_max_rss_kb: meta.recorder_max_rss_kb,
        processes: profile
            .processes
            .iter()
            .map(|p| process_summary(p, analysis, &leaves))
            .collect(),
        findings: &analysis.findings,
        notices: &profile.notices,
        cpuprof_version: &meta.cpuprof_version,
    }
}

/// The summary as a JSON value (objects' keys in sorted order, as the summary has always
/// been written). An error here is a bug in these types, reported rather than hidden.
pub fn to_json(profile: &Profile, analysis: &Analysis) -> serde_json::Result<Value> {
    serde_json::to_value(summary(profile, analysis))
}

/// CPU seconds per wall second over the whole recording.
pub fn avg_cores_busy(profile: &Profile) -> f64 {
    if profile.meta.wall_ns == 0 {
        0.0
    } else {
        profile.cpu().total_ns() as f64 / profile.meta.wall_ns as f64
    }
}

/// (periods throttled, ns throttled) during the recording.
fn throttled(c: &cpuprof_model::CgroupInfo) -> Option<(u64, u64)> {
    let end = c.throttling_end?;
    let start = c.throttling_start.unwrap_or_default();
    Some((
        end.nr_throttled.saturating_sub(start.nr_throttled),
        end.throttled_ns.saturating_sub(start.throttled_ns),
    ))
}

fn process_summary<'a>(
    p: &'a Process,
    analysis: &'a Analysis,
    leaves: &LeafCounts,
) -> ProcessSummary<'a> {
    let mut threads: Vec<&Thread> = p.threads.iter().collect();
    threads.sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(a.tid.cmp(&b.tid)));
    ProcessSummary {
        pid: p.pid,
        ppid: p.ppid,
        command: &p.command,
        exe: p.exe.as_deref(),
        start_s: secs(p.start_ns),
        end_s: p.end_ns.map(secs),
        cpu_s: secs(p.cpu_ns()),
        user_s: secs(p.cpu.user_ns),
        sys_s: secs(p.cpu.sys_ns),
        runq_wait_s: secs(p.runq_ns),
        max_rss_kb: p.max_rss_kb,
        libraries: &p.libraries,
        env: &p.env,
        runtimes: analysis
            .runtimes
            .iter()
            .filter(|r| r.pid == p.pid)
            .map(|r| RuntimeSummary {
                name: &r.name,
                library: &r.library,
                knobs: &r.knobs,
                threads: &r.threads,
            })
            .collect(),
        samples: p.threads.iter().map(|t| leaves.samples(p.pid, t.tid)).sum(),
        threads: threads
            .iter()
            .map(|t| thread_summary(p, t, analysis, leaves))
            .collect(),
    }
}

fn thread_summary<'a>(
    p: &Process,
    t: &'a Thread,
    analysis: &'a Analysis,
    leaves: &LeafCounts,
) -> ThreadSummary<'a> {
    let class = analysis.threads.get(&t.tid);
    ThreadSummary {
        tid: t.tid,
        name: &t.name,
        cpu_s: secs(t.cpu_ns),
        user_s: secs(t.user_ns),
        sys_s: secs(t.sys_ns),
        runq_wait_s: secs(t.runq_ns),
        start_s: secs(t.start_ns),
        end_s: t.end_ns.map(secs),
        vcsw: t.vcsw,
        ivcsw: t.ivcsw,
        role: class.map(|c| c.role.as_str()),
        runtime: class.and_then(|c| c.runtime.as_deref()),
        samples: leaves.samples(p.pid, t.tid),
        top_functions: leaves
            .top(p.pid, t.tid, TOP_FUNCTIONS)
            .into_iter()
            .map(|f| TopFunctionSummary {
                name: f.name,
                samples: f.samples,
                share: f.share,
                file: f.file,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};

    #[test]
    fn fixed_fields_are_present() {
        let p = profile();
        let a = analysis();
        let j = to_json(&p, &a).unwrap();
        assert_eq!(j["schema"], SCHEMA);
        for k in [
            "command",
            "pid",
            "exit_code",
            "signal",
            "wall_s",
            "cpu_s",
            "user_s",
            "sys_s",
            "runq_wait_s",
            "cpu_budget",
            "machine",
            "processes",
            "findings",
        ] {
            assert!(j.get(k).is_some(), "{k} missing");
        }
        assert_eq!(j["wall_s"], 2.0);
        assert_eq!(j["cpu_budget"], 2.0);
        assert_eq!(j["machine"]["cgroup_quota_cpus"], Value::Null);
        assert_eq!(j["exit_code"], 0);
        let p0 = &j["processes"][0];
        assert_eq!(p0["pid"], 100);
        assert_eq!(p0["end_s"], Value::Null);
        let t0 = &p0["threads"][0];
        for k in ["tid", "name", "cpu_s", "runq_wait_s", "start_s", "end_s"] {
            assert!(t0.get(k).is_some(), "thread {k} missing");
        }
        // Sorted by CPU: the worker (1.5 s) before main (0.5 s).
        assert_eq!(t0["tid"], 101);
        assert_eq!(t0["cpu_s"], 1.5);
        assert_eq!(t0["role"], "blas-worker");
        assert_eq!(t0["runtime"], "OpenBLAS");
        assert_eq!(t0["top_functions"][0]["name"], "dgemm_kernel");
        assert_eq!(t0["top_functions"][0]["share"], 0.75);
        assert_eq!(j["samples"], 6);
        let f = &j["findings"][0];
        assert_eq!(f["id"], "oversubscription");
        assert_eq!(f["severity"], "warning");
        assert_eq!(f["est_saving_wall_s"], 0.5);
        assert_eq!(f["tids"][0], 101);
        assert!((j["avg_cores_busy"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    }
}
