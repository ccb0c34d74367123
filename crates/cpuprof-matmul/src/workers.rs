//! `--procs P`: the shape of a multiprocessing pool, P copies of this binary doing the same loop.
//!
//! The parent re-executes itself (`std::env::current_exe`) with the hidden `--worker I` flag and
//! the same settings; each worker prints one JSON line (a [`ProcResult`]) on its stdout, which
//! the parent reads once the worker exits. Workers inherit stderr, so their errors show.

use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::args::Args;
use crate::report::ProcResult;

/// Starts `args.procs` workers, waits for all of them, and returns their results by index.
pub fn run_workers(args: &Args) -> Result<Vec<ProcResult>> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(args.procs);
    for index in 0..args.procs {
        let child = Command::new(&exe)
            .args(worker_args(args, index))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start worker {index} ({})", exe.display()));
        match child {
            Ok(c) => children.push((index, c)),
            Err(e) => {
                // Do not leave the workers already started running unattended.
                for (_, mut c) in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(e);
            }
        }
    }

    let mut results = Vec::with_capacity(args.procs);
    let mut failures = Vec::new();
    for (index, child) in children {
        let pid = child.id();
        let out = child
            .wait_with_output()
            .with_context(|| format!("cannot wait for worker {index} (pid {pid})"))?;
        if !out.status.success() {
            failures.push(format!("worker {index} (pid {pid}) failed: {}", out.status));
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        match parse_result(&text) {
            Some(r) => results.push(r),
            None => failures.push(format!(
                "worker {index} (pid {pid}) printed no result: {:?}",
                text.trim()
            )),
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    results.sort_by_key(|r| r.index);
    Ok(results)
}

/// The command line of worker `index`: the parent's settings, one process, `--worker index`.
fn worker_args(args: &Args, index: usize) -> Vec<String> {
    vec![
        "--size".into(),
        args.size.to_string(),
        "--iters".into(),
        args.iters.to_string(),
        "--threads".into(),
        args.threads.to_string(),
        "--dtype".into(),
        args.dtype.to_string(),
        "--worker".into(),
        index.to_string(),
    ]
}

/// The worker's result: the last line of its stdout that parses as a [`ProcResult`].
fn parse_result(stdout: &str) -> Option<ProcResult> {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<ProcResult>(l.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn worker_command_line_parses_back_to_the_same_settings() {
        let parent = Args::try_parse_from([
            "m",
            "--size",
            "300",
            "--iters",
            "4",
            "--procs",
            "3",
            "--threads",
            "2",
            "--dtype",
            "f32",
            "--json",
        ])
        .unwrap();
        let w =
            Args::try_parse_from(std::iter::once("m".to_string()).chain(worker_args(&parent, 2)))
                .unwrap();
        assert_eq!((w.size, w.iters, w.procs), (300, 4, 1));
        assert_eq!(
            (w.threads, w.dtype, w.worker),
            (parent.threads, parent.dtype, Some(2))
        );
    }

    #[test]
    fn result_line_is_found_among_other_output() {
        assert_eq!(parse_result("no json here\n"), None);
        let line = r#"{"index":1,"pid":7,"blas_threads":2,"compute_s":1.0,"gflops":3.0,"start_ns":5,"end_ns":6,"flops":3e9,"wall_s":1.1,"cpu_s":2.0,"user_s":2.0,"sys_s":0.0,"checksum":0.5}"#;
        let r = parse_result(&format!("warning: x\n{line}\n")).unwrap();
        assert_eq!((r.index, r.pid, r.blas_threads), (1, 7, 2));
    }
}
