//! End-to-end tests of the reference workloads, alone and under cpuprof.
//!
//! The matmul workload (`cpuprof-matmul`) reports its own GFLOP/s, wall and CPU time; these
//! tests check that those numbers hold together, that cpuprof measures the same CPU time the
//! kernel charged the workload (its getrusage), and that cpuprof sees the thread structure the
//! workload was told to have: P processes with the BLAS default of one thread per core, or one
//! BLAS thread each with `--threads 1`. The Python scenarios of `examples/` must run in the
//! project's `.venv` (made by `make setup`) and, under cpuprof, show what they claim to show.
//!
//! Everything runs real processes; tolerances are sized for a noisy 2-core machine on which other
//! builds may be running.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod util;
use util::{cpuprof, matmul, venv_python};

/// Longest any single run here may take before the test kills it and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn online_cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs a command to completion (killing it after [`RUN_TIMEOUT`]), capturing its output.
fn run(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {RUN_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not an integer in {v}"))
}

/// `|a - b| <= rel * max(|a|, |b|) + abs`.
fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}

/// The workload run directly with `--json`.
fn matmul_json(args: &[&str]) -> Value {
    let out = run(Command::new(matmul()).args(args).arg("--json"));
    assert_success(&out, "cpuprof-matmul");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("workload output is not JSON ({e}): {}", text(&out.stdout)))
}

/// cpuprof recording a command: (the command's stdout, cpuprof's summary JSON).
fn profile(cmd: &[&Path], args: &[&str]) -> (String, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("summary.json");
    let out = run(Command::new(cpuprof())
        .arg("--json")
        .arg(&json)
        .arg("--")
        .args(cmd)
        .args(args)
        .current_dir(repo()));
    assert_success(&out, "cpuprof");
    let summary: Value = serde_json::from_slice(
        &std::fs::read(&json).unwrap_or_else(|e| panic!("no summary at {}: {e}", json.display())),
    )
    .expect("summary JSON parses");
    assert_eq!(summary["schema"], "cpuprof-summary/1");
    (text(&out.stdout), summary)
}

/// cpuprof recording the matmul workload: (the workload's own JSON, cpuprof's summary).
fn profile_matmul(args: &[&str]) -> (Value, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let (stdout, summary) = profile(&[&matmul()], &all);
    let own: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("workload output is not JSON ({e}): {stdout}"));
    (own, summary)
}

fn process_by_pid(summary: &Value, pid: u64) -> &Value {
    summary["processes"]
        .as_array()
        .expect("processes array")
        .iter()
        .find(|p| p["pid"].as_u64() == Some(pid))
        .unwrap_or_else(|| panic!("cpuprof has no process {pid}: {}", summary["processes"]))
}

/// Threads of a process that did a real share of its work (more than 15% of its CPU).
fn busy_threads(process: &Value) -> Vec<&Value> {
    let total = f(process, "cpu_s");
    process["threads"]
        .as_array()
        .expect("threads array")
        .iter()
        .filter(|t| f(t, "cpu_s") > 0.15 * total && f(t, "cpu_s") > 0.05)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The workload on its own
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_arguments_are_usage_errors() {
    for (args, mentions) in [
        (&["--size", "0"][..], "--size"),
        (&["--procs", "0"], "--procs"),
        (&["--iters", "0"], "--iters"),
        (&["--dtype", "f16"], "f16"),
        (&["--threads", "lots"], "--threads"),
    ] {
        let out = run(Command::new(matmul()).args(args));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains(mentions), "{args:?}: message {err:?}");
        assert!(out.stdout.is_empty(), "{args:?} printed results");
    }
}

#[test]
fn key_value_output_has_one_line_per_process_and_a_total() {
    let out = run(Command::new(matmul()).args(["--size", "256", "--iters", "3", "--procs", "2"]));
    assert_success(&out, "cpuprof-matmul");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("proc index=0 "), "{stdout}");
    assert!(lines[1].starts_with("proc index=1 "), "{stdout}");
    assert!(lines[2].starts_with("total procs=2 size=256 iters=3 dtype=f64 threads=auto "));
    for key in ["gflops=", "wall_s=", "cpu_s=", "user_s=", "sys_s="] {
        assert!(
            lines[2].contains(key),
            "total line lacks {key}: {}",
            lines[2]
        );
    }
}

#[test]
fn workload_numbers_are_self_consistent() {
    let j = matmul_json(&[
        "--size",
        "1024",
        "--iters",
        "6",
        "--procs",
        "2",
        "--threads",
        "1",
        "--dtype",
        "f32",
    ]);
    let procs = j["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 2);
    let n = 1024f64;
    let mut worker_cpu = 0.0;
    for p in procs {
        assert_eq!(u(p, "blas_threads"), 1);
        assert_eq!(f(p, "flops"), 2.0 * n * n * n * 6.0);
        // GFLOP/s is the flops over the loop's own time.
        let rate = f(p, "flops") / f(p, "compute_s") / 1e9;
        assert!(close(f(p, "gflops"), rate, 0.001, 0.01), "{p}");
        // The loop fits in the process's life, and one BLAS thread cannot use more CPU
        // than the process's wall time (plus setup, startup, and 10 ms rusage ticks).
        assert!(f(p, "compute_s") < f(p, "wall_s"), "{p}");
        assert!(f(p, "cpu_s") <= f(p, "wall_s") * 1.05 + 0.05, "{p}");
        // (No lower bound against wall time: on a loaded machine the process may wait.)
        assert!(f(p, "user_s") > 0.0, "{p}");
        assert!(close(
            f(p, "cpu_s"),
            f(p, "user_s") + f(p, "sys_s"),
            0.0,
            0.002
        ));
        assert!(u(p, "end_ns") > u(p, "start_ns"));
        worker_cpu += f(p, "cpu_s");
    }
    // Same inputs, same products.
    assert_eq!(procs[0]["checksum"], procs[1]["checksum"]);
    assert_ne!(procs[0]["pid"], procs[1]["pid"]);
    // The total: all flops over the span of the loops; CPU of the whole tree.
    assert_eq!(f(&j, "flops"), 2.0 * (2.0 * n * n * n * 6.0));
    assert!(close(
        f(&j, "gflops"),
        f(&j, "flops") / f(&j, "compute_s") / 1e9,
        0.001,
        0.01
    ));
    assert!(f(&j, "cpu_s") >= worker_cpu - 0.001, "{j}");
    assert!(
        f(&j, "cpu_s") <= worker_cpu + 0.2,
        "parent used more than 0.2 s itself: {j}"
    );
    assert!(f(&j, "wall_s") >= f(&j, "compute_s"));
    let cpus = online_cpus() as f64;
    assert!(
        f(&j, "cpu_s") <= f(&j, "wall_s") * cpus * 1.05 + 0.05,
        "{j}"
    );
    assert!(close(
        f(&j, "cores_busy"),
        f(&j, "cpu_s") / f(&j, "wall_s"),
        0.01,
        0.01
    ));
}

// ---------------------------------------------------------------------------------------------
// The workload under cpuprof
// ---------------------------------------------------------------------------------------------

#[test]
fn cpuprof_measures_the_cpu_the_workload_reports() {
    let (own, summary) = profile_matmul(&["--size", "1536", "--iters", "8", "--procs", "2"]);
    // Tree total: cpuprof against the workload's RUSAGE_SELF + RUSAGE_CHILDREN.
    let theirs = f(&own, "cpu_s");
    let ours = f(&summary, "cpu_s");
    assert!(
        close(ours, theirs, 0.03, 0.05),
        "cpuprof cpu_s {ours} vs workload rusage {theirs}"
    );
    // Wall time: cpuprof's covers the workload's whole life, and not much more.
    let (own_wall, wall) = (f(&own, "wall_s"), f(&summary, "wall_s"));
    assert!(
        wall >= own_wall - 0.01,
        "cpuprof wall {wall} < workload wall {own_wall}"
    );
    assert!(
        wall <= own_wall + 1.0,
        "cpuprof wall {wall} >> workload wall {own_wall}"
    );
    // Per worker: cpuprof's process CPU against the worker's own RUSAGE_SELF.
    for w in own["processes"].as_array().expect("processes") {
        let p = process_by_pid(&summary, u(w, "pid"));
        assert!(
            close(f(p, "cpu_s"), f(w, "cpu_s"), 0.03, 0.05),
            "worker {}: cpuprof {} vs rusage {}",
            w["pid"],
            p["cpu_s"],
            w["cpu_s"]
        );
        // Its life as cpuprof saw it holds the worker's own wall time. (It may end later: the
        // parent reaps its workers in order, and a worker that exits first stays a zombie
        // until then; cpuprof ends a process when it is reaped.)
        let life = f(p, "end_s") - f(p, "start_s");
        assert!(
            life >= f(w, "wall_s") - 0.06 && life <= own_wall + 0.5,
            "worker {}: cpuprof saw it live {life} s, it measured {} s",
            w["pid"],
            w["wall_s"]
        );
        assert_eq!(
            p["ppid"], summary["pid"],
            "workers are children of the launched process"
        );
    }
}

#[test]
fn oversubscribed_workers_each_run_a_full_blas_pool() {
    let cpus = online_cpus();
    let (own, summary) = profile_matmul(&["--size", "1536", "--iters", "8", "--procs", "2"]);
    let workers = own["processes"].as_array().expect("processes");
    assert_eq!(workers.len(), 2);
    // The launched parent plus two workers.
    assert_eq!(
        summary["processes"].as_array().map(Vec::len),
        Some(3),
        "{}",
        summary["processes"]
    );
    for w in workers {
        let pool = u(w, "blas_threads") as usize;
        assert_eq!(pool, cpus, "OpenBLAS default is one thread per core: {w}");
        let p = process_by_pid(&summary, u(w, "pid"));
        let busy = busy_threads(p);
        assert_eq!(
            busy.len(),
            pool,
            "worker {} should have {pool} threads doing BLAS work: {}",
            w["pid"],
            p["threads"]
        );
    }
    // Two full pools on this many cores: more runnable threads than cores, so they queue.
    // (N/C - 1 of their run time in theory; demand a tenth of their CPU time.)
    if cpus >= 2 {
        for w in workers {
            let p = process_by_pid(&summary, u(w, "pid"));
            assert!(
                f(p, "runq_wait_s") > 0.1 * f(p, "cpu_s"),
                "worker {} hardly waited for a core: {p}",
                w["pid"]
            );
        }
    }
}

#[test]
fn one_blas_thread_per_process_with_threads_1() {
    let (own, summary) = profile_matmul(&[
        "--size",
        "1536",
        "--iters",
        "6",
        "--procs",
        "2",
        "--threads",
        "1",
    ]);
    for w in own["processes"].as_array().expect("processes") {
        assert_eq!(u(w, "blas_threads"), 1);
        let p = process_by_pid(&summary, u(w, "pid"));
        let busy = busy_threads(p);
        assert_eq!(busy.len(), 1, "worker {}: {}", w["pid"], p["threads"]);
        // That thread did (nearly) all of the process's work.
        assert!(f(busy[0], "cpu_s") > 0.9 * f(p, "cpu_s"), "{p}");
    }
}

// ---------------------------------------------------------------------------------------------
// Python scenarios (examples/) in the project's .venv
// ---------------------------------------------------------------------------------------------

/// Parses the `key=value` words of an example's result line.
fn result_value(stdout: &str, key: &str) -> f64 {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {stdout:?}"))
}

fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

#[test]
fn article_example_runs_both_ways() {
    let py = venv_python();
    for (mode, threads) in [("default", online_cpus()), ("limit1", 1)] {
        let out = run(Command::new(&py)
            .arg(example("article_dot.py"))
            .args([mode, "--size", "1024", "--repeat", "3"]));
        assert_success(&out, "article_dot.py");
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("mode={mode} ")), "{stdout}");
        assert!(
            stdout.contains(&format!("blas_threads=[{threads}]")),
            "{stdout}"
        );
    }
}

#[test]
fn pool_example_runs_oversubscribed_and_fixed() {
    let py = venv_python();
    for (mode, env) in [("oversubscribed", "unset"), ("fixed", "1")] {
        let out = run(Command::new(&py)
            .arg(example("pool_matmul.py"))
            .args([mode, "--workers", "2", "--tasks", "4", "--size", "512"])
            .env_remove("OPENBLAS_NUM_THREADS")
            .env_remove("OMP_NUM_THREADS"));
        assert_success(&out, "pool_matmul.py");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("tasks=4 "), "{stdout}");
        assert!(
            stdout.contains(&format!("OPENBLAS_NUM_THREADS={env} ")),
            "{stdout}"
        );
    }
}

#[test]
fn pool_example_under_cpuprof_shows_every_worker() {
    let py = venv_python();
    let (stdout, summary) = profile(
        &[&py, &example("pool_matmul.py")],
        &[
            "oversubscribed",
            "--workers",
            "2",
            "--tasks",
            "6",
            "--size",
            "1024",
        ],
    );
    let own_cpu = result_value(&stdout, "cpu_s");
    // The interpreter plus its two pool workers (a pyenv shim would add one more).
    let n = summary["processes"].as_array().map_or(0, Vec::len);
    assert!(
        n >= 3,
        "expected the pool's workers: {}",
        summary["processes"]
    );
    // The script's own rusage covers its pool; cpuprof sees at least that, plus the interpreter
    // start-up before the script measures.
    let ours = f(&summary, "cpu_s");
    assert!(
        ours >= own_cpu * 0.97 - 0.05,
        "cpuprof {ours} < script's own {own_cpu}"
    );
    assert!(
        ours <= own_cpu * 1.03 + 1.0,
        "cpuprof {ours} >> script's own {own_cpu}"
    );
}

#[test]
fn waiting_example_under_cpuprof_uses_little_cpu() {
    let py = venv_python();
    let (stdout, summary) = profile(
        &[&py, &example("waiting.py")],
        &[
            "--seconds",
            "2",
            "--dir",
            std::env::temp_dir().to_str().expect("utf-8 temp dir"),
        ],
    );
    assert!(result_value(&stdout, "wall_s") >= 1.9, "{stdout}");
    let (cpu, wall) = (f(&summary, "cpu_s"), f(&summary, "wall_s"));
    assert!(wall >= 2.0, "wall {wall}");
    // Interpreter start-up costs some CPU; the two waiting seconds almost none.
    assert!(cpu < 0.25 * wall, "cpu {cpu} vs wall {wall}");
    // Its five waiting threads plus the main thread are all there.
    let threads: usize = summary["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p["threads"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(threads >= 6, "{}", summary["processes"]);
}
