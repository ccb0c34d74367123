//! The summary JSON (`--json`): one object, schema `cpuprof-summary/1`, that CI scripts and
//! other tools read. Its fields are a contract documented in `docs/summary-json.md`: existing
//! names never change meaning; new ones may be added.

use cpuprof_model::{secs, Analysis, Process, Profile, Thread};
use serde_json::{json, Value};

use crate::stacks::{self, LeafCounts};

/// The `schema` value.
pub const SCHEMA: &str = "cpuprof-summary/1";

/// Leaf functions listed per thread in `top_functions`.
pub const TOP_FUNCTIONS: usize = 5;

/// The summary of a profile and its analysis.
pub fn to_json(profile: &Profile, analysis: &Analysis) -> Value {
    let meta = &profile.meta;
    let cpu = profile.cpu();
    let wall_s = secs(meta.wall_ns);
    let samples = stacks::samples(profile);
    let leaves = LeafCounts::new(profile, &samples);
    let processes: Vec<Value> = profile
        .processes
        .iter()
        .map(|p| process_json(p, analysis, &leaves))
        .collect();
    let m = &profile.machine;
    json!({
        "schema": SCHEMA,
        "command": meta.command,
        "pid": meta.pid,
        "attached": meta.attached,
        "exit_code": meta.exit_code,
        "signal": meta.signal,
        "start_unix_ms": meta.start_unix_ms,
        "wall_s": wall_s,
        "cpu_s": secs(cpu.total_ns()),
        "user_s": secs(cpu.user_ns),
        "sys_s": secs(cpu.sys_ns),
        "runq_wait_s": secs(profile.runq_ns()),
        "cpu_budget": m.cpu_budget(),
        "avg_cores_busy": avg_cores_busy(profile),
        "tree_rusage_cpu_s": meta.tree_rusage.map(|r| secs(r.total_ns())),
        "machine": {
            "online_cpus": m.online_cpus,
            "affinity_cpus": m.affinity_cpus,
            "cgroup_quota_cpus": m.quota_cpus(),
            "cgroup": m.cgroup.as_ref().map(|c| json!({
                "version": c.version,
                "path": c.path,
                "quota_cpus": c.quota_cpus,
                "throttled_periods": throttled(c).map(|t| t.0),
                "throttled_s": throttled(c).map(|t| secs(t.1)),
            })),
            "kernel": m.kernel,
            "cpu_model": m.cpu_model,
        },
        "interval_s": secs(meta.interval_ns),
        "sample_rate_hz": meta.sample_rate_hz,
        "sample_source": stacks::source(profile).as_str(),
        "exit_accounting": meta.exit_accounting.name(),
        "exit_teardown_cpu_s": meta.exit_teardown_ns.map(secs),
        "samples": samples.len(),
        "lost_samples": meta.lost_samples,
        "cpuprof_cpu_s": meta.recorder_cpu.map(|r| secs(r.total_ns())),
        "cpuprof_max_rss_kb": meta.recorder_max_rss_kb,
        "processes": processes,
        "findings": analysis.findings.iter().map(|f| serde_json::to_value(f).unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "notices": profile.notices,
        "cpuprof_version": meta.cpuprof_version,
    })
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

fn process_json(p: &Process, analysis: &Analysis, leaves: &LeafCounts) -> Value {
    let runtimes: Vec<Value> = analysis
        .runtimes
        .iter()
        .filter(|r| r.pid == p.pid)
        .map(|r| {
            json!({
                "name": r.name,
                "library": r.library,
                "knobs": r.knobs,
                "threads": r.threads,
            })
        })
        .collect();
    let mut threads: Vec<&Thread> = p.threads.iter().collect();
    threads.sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(a.tid.cmp(&b.tid)));
    json!({
        "pid": p.pid,
        "ppid": p.ppid,
        "command": p.command,
        "exe": p.exe,
        "start_s": secs(p.start_ns),
        "end_s": p.end_ns.map(secs),
        "cpu_s": secs(p.cpu_ns()),
        "user_s": secs(p.cpu.user_ns),
        "sys_s": secs(p.cpu.sys_ns),
        "runq_wait_s": secs(p.runq_ns),
        "max_rss_kb": p.max_rss_kb,
        "libraries": p.libraries,
        "env": p.env,
        "runtimes": runtimes,
        "samples": p.threads.iter().map(|t| leaves.samples(p.pid, t.tid)).sum::<u64>(),
        "threads": threads.iter().map(|t| thread_json(p, t, analysis, leaves)).collect::<Vec<_>>(),
    })
}

fn thread_json(p: &Process, t: &Thread, analysis: &Analysis, leaves: &LeafCounts) -> Value {
    let class = analysis.threads.get(&t.tid);
    let top: Vec<Value> = leaves
        .top(p.pid, t.tid, TOP_FUNCTIONS)
        .into_iter()
        .map(|f| {
            let mut v = json!({"name": f.name, "samples": f.samples, "share": f.share});
            if let Some(file) = &f.file {
                v["file"] = json!(file);
            }
            v
        })
        .collect();
    json!({
        "tid": t.tid,
        "name": t.name,
        "cpu_s": secs(t.cpu_ns),
        "user_s": secs(t.user_ns),
        "sys_s": secs(t.sys_ns),
        "runq_wait_s": secs(t.runq_ns),
        "start_s": secs(t.start_ns),
        "end_s": t.end_ns.map(secs),
        "vcsw": t.vcsw,
        "ivcsw": t.ivcsw,
        "role": class.map(|c| c.role.as_str()),
        "runtime": class.and_then(|c| c.runtime.clone()),
        "samples": leaves.samples(p.pid, t.tid),
        "top_functions": top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};

    #[test]
    fn fixed_fields_are_present() {
        let p = profile();
        let a = analysis();
        let j = to_json(&p, &a);
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
