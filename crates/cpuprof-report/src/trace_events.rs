//! The Trace Event Format (Chrome's `chrome://tracing` JSON, which Perfetto's UI and trace
//! processor import): each thread's running and runnable time as slices, the tree's cores
//! busy and run-queue wait as counter tracks, the findings as instant events, and process and
//! thread names as metadata.
//!
//! Slices come from the procfs polls: within each poll interval a thread is shown running for
//! the CPU time it got, then runnable for the time it waited for a core (their order inside
//! the interval is not known; the sums are exact). Times are microseconds from the start of
//! the recording.

use cpuprof_model::{Analysis, Profile};
use serde_json::{json, Value};

use crate::stacks;

/// Events shorter than this are not written (µs): they would not be visible and would make
/// long recordings large.
const MIN_SLICE_US: f64 = 1.0;

/// The profile as a Trace Event Format document (`{"traceEvents": [...]}`).
pub fn to_json(profile: &Profile, analysis: &Analysis) -> serde_json::Result<String> {
    let mut events: Vec<Value> = Vec::new();
    let us = |ns: u64| ns as f64 / 1e3;
    let interval = profile.meta.interval_ns.max(1);
    let nbins = (profile.meta.wall_ns / interval + 1) as usize;
    let mut busy = vec![0.0f64; nbins];
    let mut waiting = vec![0.0f64; nbins];
    for p in &profile.processes {
        events.push(json!({
            "ph": "M", "name": "process_name", "pid": p.pid, "tid": 0,
            "args": {"name": stacks::process_label(p)}
        }));
        for t in &p.threads {
            events.push(json!({
                "ph": "M", "name": "thread_name", "pid": p.pid, "tid": t.tid,
                "args": {"name": t.name}
            }));
            for w in t.points.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                if b.t <= a.t {
                    continue;
                }
                let span = b.t - a.t;
                let cpu = b.cpu_ns.saturating_sub(a.cpu_ns).min(span);
                let wait = b.runq_ns.saturating_sub(a.runq_ns).min(span - cpu);
                if us(cpu) >= MIN_SLICE_US {
                    events.push(json!({
                        "ph": "X", "name": "running", "cat": "sched", "pid": p.pid,
                        "tid": t.tid, "ts": us(a.t), "dur": us(cpu)
                    }));
                }
                if us(wait) >= MIN_SLICE_US {
                    events.push(json!({
                        "ph": "X", "name": "runnable (waiting for a core)", "cat": "sched",
                        "pid": p.pid, "tid": t.tid, "ts": us(a.t + cpu), "dur": us(wait)
                    }));
                }
                let bin = ((a.t / interval) as usize).min(nbins - 1);
                busy[bin] += cpu as f64 / interval as f64;
                waiting[bin] += wait as f64 / interval as f64;
            }
        }
    }
    let root = profile.meta.pid;
    for (i, (b, w)) in busy.iter().zip(&waiting).enumerate() {
        let ts = us(i as u64 * interval);
        events.push(json!({
            "ph": "C", "name": "cores busy", "pid": root, "ts": ts,
            "args": {"cores": b, "budget": profile.machine.cpu_budget()}
        }));
        events.push(json!({
            "ph": "C", "name": "run-queue wait", "pid": root, "ts": ts,
            "args": {"threads waiting": w}
        }));
    }
    for f in &analysis.findings {
        events.push(json!({
            "ph": "i", "s": "g", "name": f.title, "cat": "finding", "pid": root, "tid": 0,
            "ts": 0.0,
            "args": {"id": f.id, "severity": f.severity.as_str(), "fix": f.fix,
                     "detail": f.detail}
        }));
    }
    let doc = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "command": crate::escape::command_line(&profile.meta.command),
            "exporter": format!("cpuprof {}", env!("CARGO_PKG_VERSION")),
        }
    });
    serde_json::to_string(&doc)
}
