//! The JSON the page's script reads: processes, thread lanes with their per-bucket states
//! (base64 bytes, 0..255 = share of the bucket), the aggregated stacks, and the findings'
//! processes and threads. Everything is aggregated: its size depends on the number of threads
//! and distinct stacks, not on the length of the recording.

use std::collections::HashMap;

use cpuprof_model::{secs, Analysis, Profile, Thread};
use serde_json::{json, Value};

use super::flame;
use super::timeline::{self, Grid, LaneSource};
use crate::escape::command_line;
use crate::stacks;

/// The page's data.
pub fn build(profile: &Profile, analysis: &Analysis) -> Value {
    let grid = Grid::for_profile(profile);
    let wall = profile.meta.wall_ns;
    let mut lanes = Vec::new();
    let mut lane_index = HashMap::new();
    let mut procs = Vec::new();
    for p in &profile.processes {
        let mut threads: Vec<&Thread> = p.threads.iter().collect();
        // Main thread first, then by tid.
        threads.sort_by_key(|t| (t.tid != p.pid, t.tid));
        let mut idx = Vec::new();
        for t in threads {
            let lane = timeline::lane(&grid, profile, t);
            let class = analysis.threads.get(&t.tid);
            let (run, wait) = (quantize(&lane.run), quantize(&lane.wait));
            let (b0, b1) = nonzero_range(&run, &wait);
            lane_index.insert((p.pid, t.tid), lanes.len());
            idx.push(lanes.len());
            lanes.push(json!({
                "pid": p.pid,
                "tid": t.tid,
                "name": t.name,
                "role": class.map(|c| c.role.as_str()),
                "runtime": class.and_then(|c| c.runtime.clone()),
                "start": secs(t.start_ns),
                "end": secs(t.end_ns.unwrap_or(wall)),
                "ended": t.end_ns.is_some(),
                "cpu": secs(t.cpu_ns),
                "user": secs(t.user_ns),
                "sys": secs(t.sys_ns),
                "runq": secs(t.runq_ns),
                "vcsw": t.vcsw,
                "ivcsw": t.ivcsw,
                "src": match lane.source {
                    LaneSource::Switches => "switches",
                    LaneSource::Schedstat => "schedstat",
                },
                "b0": b0,
                "run": base64(&run[b0..b1]),
                "wait": base64(&wait[b0..b1]),
            }));
        }
        let runtimes: Vec<Value> = analysis
            .runtimes
            .iter()
            .filter(|r| r.pid == p.pid)
            .map(|r| json!({"name": r.name, "library": r.library, "knobs": r.knobs, "threads": r.threads.len()}))
            .collect();
        procs.push(json!({
            "pid": p.pid,
            "ppid": p.ppid,
            "name": stacks::process_name(p),
            "cmd": command_line(&p.command),
            "exe": p.exe,
            "start": secs(p.start_ns),
            "end": secs(p.end_ns.unwrap_or(wall)),
            "ended": p.end_ns.is_some(),
            "cpu": secs(p.cpu_ns()),
            "user": secs(p.cpu.user_ns),
            "sys": secs(p.cpu.sys_ns),
            "runq": secs(p.runq_ns),
            "rss_kb": p.max_rss_kb,
            "env": p.env,
            "runtimes": runtimes,
            "lanes": idx,
        }));
    }
    let samples = stacks::samples(profile);
    let flame = flame::build(profile, &analysis.wait_frames, &samples, &lane_index);
    let sample_s = match (stacks::source(profile), profile.meta.sample_rate_hz) {
        (stacks::SampleSource::Perf, Some(hz)) if hz > 0 => Some(1.0 / f64::from(hz)),
        _ => None,
    };
    json!({
        "version": 1,
        "wall": secs(wall),
        "budget": profile.machine.cpu_budget(),
        "sample_s": sample_s,
        "sample_source": stacks::source(profile).as_str(),
        "tl": {"n": grid.buckets, "dt": grid.bucket_ns / 1e9},
        "procs": procs,
        "lanes": lanes,
        "flame": flame.to_json(),
        "findings": analysis.findings.iter().map(|f| json!({
            "id": f.id, "severity": f.severity.as_str(), "title": f.title,
            "pids": f.pids, "tids": f.tids,
        })).collect::<Vec<_>>(),
    })
}

/// The buckets from the first to the last one with anything in them (a short-lived thread
/// ships only its own life); `(0, 0)` when all are empty.
fn nonzero_range(run: &[u8], wait: &[u8]) -> (usize, usize) {
    let busy = |i: &usize| run[*i] != 0 || wait[*i] != 0;
    match (0..run.len()).find(busy) {
        Some(first) => {
            let last = (0..run.len()).rev().find(busy).unwrap_or(first);
            (first, last + 1)
        }
        None => (0, 0),
    }
}

/// Shares 0..1 as bytes 0..255.
fn quantize(v: &[f32]) -> Vec<u8> {
    v.iter()
        .map(|x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[255, 0, 128, 7]), "/wCABw==");
    }

    #[test]
    fn lanes_in_process_order_main_thread_first() {
        let d = build(&profile(), &analysis());
        let lanes = d["lanes"].as_array().unwrap();
        let tids: Vec<_> = lanes.iter().map(|l| l["tid"].as_u64().unwrap()).collect();
        assert_eq!(tids, vec![100, 101, 200]);
        assert_eq!(d["procs"][0]["lanes"], json!([0, 1]));
        assert_eq!(lanes[1]["role"], "blas-worker");
        assert_eq!(lanes[1]["src"], "schedstat");
        // The sh process's thread used no CPU: nothing shipped.
        assert_eq!(lanes[2]["run"], "");
        assert_eq!(
            nonzero_range(&[0, 0, 3, 0, 1, 0], &[0, 1, 0, 0, 0, 0]),
            (1, 5)
        );
        assert_eq!(d["budget"], 2.0);
        assert!((d["sample_s"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    }
}
