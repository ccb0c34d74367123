//! What the workload prints: one line per process and one total, or one JSON object.
//!
//! The key=value lines are stable and meant to be parsed (tests compare them with cpuprof's own
//! measurements): `proc` lines carry each process's result, the `total` line the whole run.
//! Values never contain spaces. `--json` prints the same data as one object.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The result of one process (the parent itself when `--procs 1`, else one worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcResult {
    /// Worker number, 0-based.
    pub index: usize,
    /// Process id.
    pub pid: u32,
    /// OpenBLAS threads the process used (`openblas_get_num_threads`).
    pub blas_threads: usize,
    /// Seconds spent in the product loop.
    pub compute_s: f64,
    /// GFLOP/s of the product loop.
    pub gflops: f64,
    /// CLOCK_MONOTONIC ns when the product loop started.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC ns when the product loop ended.
    pub end_ns: u64,
    /// Floating-point operations done.
    pub flops: f64,
    /// Wall seconds of the whole process (setup included).
    pub wall_s: f64,
    /// CPU seconds of the process (`getrusage(RUSAGE_SELF)`, all threads).
    pub cpu_s: f64,
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub sys_s: f64,
    /// Sum of the last product's elements.
    pub checksum: f64,
}

/// The whole run, as the top-level process saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Matrix dimension.
    pub size: usize,
    /// Products per process.
    pub iters: usize,
    /// Number of processes that did products.
    pub procs: usize,
    /// The `--threads` setting (`auto` or a number).
    pub threads: String,
    /// Element type (`f32` or `f64`).
    pub dtype: String,
    /// Total floating-point operations over all processes.
    pub flops: f64,
    /// Total GFLOP/s: all flops over the span from the first loop's start to the last one's end.
    pub gflops: f64,
    /// Seconds from the first product loop's start to the last one's end.
    pub compute_s: f64,
    /// Wall seconds of the top-level process, start to end.
    pub wall_s: f64,
    /// CPU seconds of the whole tree: the top-level process plus its reaped workers.
    pub cpu_s: f64,
    /// User CPU seconds of the whole tree.
    pub user_s: f64,
    /// System CPU seconds of the whole tree.
    pub sys_s: f64,
    /// CPU seconds over wall seconds: average cores kept busy.
    pub cores_busy: f64,
    /// One entry per process, by index.
    pub processes: Vec<ProcResult>,
}

fn kv_proc(p: &ProcResult) -> String {
    format!(
        "proc index={} pid={} blas_threads={} compute_s={:.3} gflops={:.2} wall_s={:.3} \
         cpu_s={:.3} user_s={:.3} sys_s={:.3} checksum={:.6e}",
        p.index,
        p.pid,
        p.blas_threads,
        p.compute_s,
        p.gflops,
        p.wall_s,
        p.cpu_s,
        p.user_s,
        p.sys_s,
        p.checksum
    )
}

/// Renders the summary as `proc ...` lines followed by one `total ...` line.
pub fn key_values(s: &Summary) -> String {
    let mut out = String::new();
    for p in &s.processes {
        out.push_str(&kv_proc(p));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "total procs={} size={} iters={} dtype={} threads={} gflops={:.2} compute_s={:.3} \
         wall_s={:.3} cpu_s={:.3} user_s={:.3} sys_s={:.3} cores_busy={:.2}",
        s.procs,
        s.size,
        s.iters,
        s.dtype,
        s.threads,
        s.gflops,
        s.compute_s,
        s.wall_s,
        s.cpu_s,
        s.user_s,
        s.sys_s,
        s.cores_busy
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_result(index: usize) -> ProcResult {
        ProcResult {
            index,
            pid: 100 + index as u32,
            blas_threads: 2,
            compute_s: 1.5,
            gflops: 20.0,
            start_ns: 1_000,
            end_ns: 1_500_001_000,
            flops: 3e10,
            wall_s: 1.6,
            cpu_s: 3.0,
            user_s: 2.9,
            sys_s: 0.1,
            checksum: -12.5,
        }
    }

    #[test]
    fn key_value_lines_are_parseable() {
        let s = Summary {
            size: 1024,
            iters: 10,
            procs: 2,
            threads: "auto".into(),
            dtype: "f64".into(),
            flops: 6e10,
            gflops: 37.5,
            compute_s: 1.55,
            wall_s: 1.6,
            cpu_s: 6.1,
            user_s: 5.9,
            sys_s: 0.2,
            cores_busy: 3.81,
            processes: vec![proc_result(0), proc_result(1)],
        };
        let text = key_values(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("proc index=0 pid=100 blas_threads=2 "));
        assert!(lines[2].starts_with("total procs=2 size=1024 iters=10 dtype=f64 threads=auto"));
        for line in lines {
            for field in line.split(' ').skip(1) {
                let (k, v) = field.split_once('=').expect("key=value");
                assert!(!k.is_empty() && !v.is_empty(), "{field}");
            }
        }
    }

    #[test]
    fn proc_result_round_trips_through_json() {
        let p = proc_result(3);
        let line = serde_json::to_string(&p).unwrap();
        assert!(!line.contains('\n'));
        let back: ProcResult = serde_json::from_str(&line).unwrap();
        assert_eq!(back, p);
    }
}

/// Adds up the processes' results into the run's summary.
///
/// `wall_s` and `cpu` are the top-level process's own measurements: its wall time and its CPU
/// time including reaped workers.
pub fn summarize(
    args: &crate::args::Args,
    processes: Vec<ProcResult>,
    wall_s: f64,
    cpu: crate::rusage::CpuTimes,
) -> Summary {
    let flops: f64 = processes.iter().map(|p| p.flops).sum();
    let first = processes.iter().map(|p| p.start_ns).min().unwrap_or(0);
    let last = processes.iter().map(|p| p.end_ns).max().unwrap_or(0);
    let compute_s = last.saturating_sub(first) as f64 / 1e9;
    let gflops = if compute_s > 0.0 {
        flops / compute_s / 1e9
    } else {
        0.0
    };
    Summary {
        size: args.size,
        iters: args.iters,
        procs: processes.len(),
        threads: args.threads.to_string(),
        dtype: args.dtype.to_string(),
        flops,
        gflops,
        compute_s,
        wall_s,
        cpu_s: cpu.total_s(),
        user_s: cpu.user_s,
        sys_s: cpu.sys_s,
        cores_busy: if wall_s > 0.0 {
            cpu.total_s() / wall_s
        } else {
            0.0
        },
        processes,
    }
}

#[cfg(test)]
mod summarize_tests {
    use super::*;
    use crate::args::{Args, Dtype, Threads};
    use crate::rusage::CpuTimes;

    #[test]
    fn total_rate_uses_the_span_of_all_loops() {
        let args = Args {
            size: 100,
            iters: 2,
            procs: 2,
            threads: Threads::Fixed(1),
            dtype: Dtype::F32,
            json: false,
            worker: None,
        };
        let mk = |index, start_ns, end_ns| ProcResult {
            index,
            pid: 1,
            blas_threads: 1,
            compute_s: (end_ns - start_ns) as f64 / 1e9,
            gflops: 0.0,
            start_ns,
            end_ns,
            flops: 4e9,
            wall_s: 0.0,
            cpu_s: 0.0,
            user_s: 0.0,
            sys_s: 0.0,
            checksum: 0.0,
        };
        // Loops from t=1 s to 3 s and from 2 s to 5 s: 8 GFLOP over a 4 s span.
        let procs = vec![
            mk(0, 1_000_000_000, 3_000_000_000),
            mk(1, 2_000_000_000, 5_000_000_000),
        ];
        let cpu = CpuTimes {
            user_s: 5.0,
            sys_s: 1.0,
        };
        let s = summarize(&args, procs, 4.0, cpu);
        assert_eq!(s.flops, 8e9);
        assert!((s.compute_s - 4.0).abs() < 1e-9);
        assert!((s.gflops - 2.0).abs() < 1e-9);
        assert_eq!(s.cpu_s, 6.0);
        assert_eq!(s.cores_busy, 1.5);
        assert_eq!((s.threads.as_str(), s.dtype.as_str()), ("1", "f32"));
    }
}
