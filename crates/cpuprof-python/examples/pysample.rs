//! Runs a command under the Python sampler alone and prints its wall time and the sampler's
//! counts: the cost benchmark of docs/python.md.
//!
//! `pysample [--blocking|--nonblocking|--off] [--rate HZ] -- CMD...`

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use cpuprof_model::{Event, Pid};
use cpuprof_python::{PythonOptions, PythonSampler};

/// `root` and its descendants, from `/proc/PID/task/TID/children`.
fn tree(root: Pid) -> Vec<Pid> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = task.path().join("children");
            if let Ok(text) = std::fs::read_to_string(path) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<Pid>().ok()),
                );
            }
        }
        i += 1;
    }
    out
}

/// This process's own CPU time (the sampler's cost), seconds.
fn own_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = PythonOptions::default();
    let mut off = false;
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        match args[i].as_str() {
            "--blocking" => options.blocking = true,
            "--nonblocking" => options.blocking = false,
            "--off" => off = true,
            "--rate" => {
                i += 1;
                options.rate_hz = args[i].parse().expect("--rate HZ");
            }
            other => panic!("unknown option {other}"),
        }
        i += 1;
    }
    let cmd = args[i + 1..].join(" ");
    // Through `sh -c`, so that shell words in CMD work.
    let start = Instant::now();
    let mut child = Command::new("/bin/sh")
        .args(["-c", &format!("{cmd} & wait")])
        .spawn()
        .expect("start");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = (!off).then(|| {
        PythonSampler::new(move || tree(pid), options, tx, stop.clone())
            .spawn()
            .expect("sampler")
    });
    let status = child.wait().expect("wait");
    let wall = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let stats = handle
        .map(|h| h.join().expect("sampler"))
        .unwrap_or_default();
    let notices: Vec<String> = rx
        .try_iter()
        .filter_map(|e| match e {
            Event::Notice(n) => Some(n),
            _ => None,
        })
        .collect();
    let per_read_us = stats.read_ns as f64 / stats.reads.max(1) as f64 / 1e3;
    println!(
        "wall {wall:.3} s  sampler_cpu {:.3} s  read_us {per_read_us:.0}  paused_s {:.3}  status {status}  ticks {}  samples {}  processes {}  reads {}  walked {}  reused {}  forked {}  failed_reads {}  notices {:?}",
        own_cpu_s(),
        stats.paused_ns as f64 / 1e9,
        stats.ticks,
        stats.samples, stats.processes, stats.reads, stats.walked, stats.reused, stats.forked, stats.failed_reads, notices
    );
}
