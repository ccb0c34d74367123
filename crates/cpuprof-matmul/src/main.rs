//! `cpuprof-matmul`: the reference workload of cpuprof.
//!
//! Dense matrix products with ndarray on the system OpenBLAS, in P processes with T BLAS
//! threads each: `--procs 2 --threads auto` on a 2-core machine is the oversubscribed
//! "N processes x N threads" case cpuprof exists to find; `--threads 1` is its fix. It prints
//! GFLOP/s per process and in total, and its own wall and CPU time (getrusage), so the numbers
//! cpuprof measures of it can be checked.
//!
//! Exit codes: 0 done, 1 a worker or the run failed, 2 usage error.

// Links the system OpenBLAS (through openblas-src) that ndarray's BLAS path calls.
extern crate blas_src;

mod args;
mod blas;
mod kernel;
mod report;
mod rusage;
mod workers;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use args::{Args, Dtype, Threads};
use report::ProcResult;
use rusage::{cpu_times, Who};

fn main() -> ExitCode {
    let started = Instant::now();
    let args = Args::parse();
    match run(&args, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cpuprof-matmul: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args, started: Instant) -> Result<()> {
    if let Some(index) = args.worker {
        // A worker: do the loop, print one JSON line for the parent.
        let result = run_here(args, index, started);
        let line = serde_json::to_string(&result).context("cannot encode the result")?;
        println!("{line}");
        return Ok(());
    }

    let processes = if args.procs == 1 {
        vec![run_here(args, 0, started)]
    } else {
        workers::run_workers(args)?
    };
    let wall_s = started.elapsed().as_secs_f64();
    let cpu = cpu_times(Who::SelfProcess) + cpu_times(Who::Children);
    let summary = report::summarize(args, processes, wall_s, cpu);
    if args.json {
        let text = serde_json::to_string_pretty(&summary).context("cannot encode the summary")?;
        println!("{text}");
    } else {
        print!("{}", report::key_values(&summary));
    }
    Ok(())
}

/// Runs the product loop in this process and measures it.
fn run_here(args: &Args, index: usize, started: Instant) -> ProcResult {
    if let Threads::Fixed(n) = args.threads {
        blas::set_num_threads(n);
    }
    let blas_threads = blas::num_threads();
    let k = match args.dtype {
        Dtype::F32 => kernel::run::<f32>(args.size, args.iters),
        Dtype::F64 => kernel::run::<f64>(args.size, args.iters),
    };
    let cpu = cpu_times(Who::SelfProcess);
    ProcResult {
        index,
        pid: std::process::id(),
        blas_threads,
        compute_s: k.compute_s,
        gflops: k.gflops(),
        start_ns: k.start_ns,
        end_ns: k.end_ns,
        flops: k.flops,
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: cpu.total_s(),
        user_s: cpu.user_s,
        sys_s: cpu.sys_s,
        checksum: k.checksum,
    }
}
