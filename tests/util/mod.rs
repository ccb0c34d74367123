//! Helpers shared by the end-to-end tests: run the real `cpuprof` binary, compile small C
//! programs in a temporary directory, read the summary JSON, wait for conditions.
//!
//! Each test file includes this with `mod util;`; not every file uses every helper.
#![allow(dead_code)]

pub mod programs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `cpuprof` binary under test.
pub fn cpuprof() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cpuprof"))
}

/// The reference workload, built next to `cpuprof` by `make build` (another package of the
/// workspace, so cargo does not build it for these tests).
pub fn matmul() -> PathBuf {
    workspace_bin("cpuprof-matmul")
}

/// A binary of another package of the workspace: beside `cpuprof`, or in the release build
/// (a bare `cargo test` builds a debug `cpuprof`; `make build` the release workloads).
pub fn workspace_bin(name: &str) -> PathBuf {
    let beside = cpuprof().with_file_name(name);
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("release")
        .join(name);
    let p = if beside.exists() { beside } else { release };
    assert!(
        p.exists(),
        "{} missing: run `make setup build` (or `make test`)",
        p.display()
    );
    p
}

/// The project's virtual environment's Python (with NumPy), made by `make setup`.
pub fn venv_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run `make setup` (NumPy venv)",
        p.display()
    );
    p
}

/// Debian's Chromium, installed by `make setup`.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `url` with `extra` flags (a profile directory of its own in
/// `dir`); returns its stdout and stderr.
pub fn chromium(dir: &Path, extra: &[String], url: &str) -> (String, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make setup` (Debian package chromium)"
    );
    let profile_dir = dir.join(format!("chromium-profile-{}", extra.len()));
    let out = Command::new("timeout")
        .args(["-k", "5", "120", CHROMIUM])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1400,1600",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh temporary directory (removed when dropped).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cpuprof-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Compiles C `source` with gcc into `dir/name` (with `-pthread -O1`) and returns its path.
pub fn compile_c(dir: &Path, name: &str, source: &str) -> PathBuf {
    compile_c_with(dir, name, source, &[])
}

/// [`compile_c`] with more arguments after the source (`-shared -fPIC`, libraries to link).
pub fn compile_c_with(dir: &Path, name: &str, source: &str, args: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).expect("write C source");
    let out = Command::new("gcc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(args)
        .output()
        .expect("run gcc (is it installed?)");
    assert!(
        out.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// What one run of cpuprof gave.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if cpuprof itself was killed by a signal).
    pub code: Option<i32>,
    /// Standard output (the target's, unless `--json -`).
    pub stdout: String,
    /// Standard error (cpuprof's summary and errors, and the target's).
    pub stderr: String,
    /// The summary JSON, when one was written.
    pub json: Option<Value>,
}

impl From<(Output, Option<Value>)> for Run {
    fn from((out, json): (Output, Option<Value>)) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            json,
        }
    }
}

/// Runs `cpuprof ARGS` (no JSON requested).
pub fn run(args: &[&str]) -> Run {
    let out = Command::new(cpuprof())
        .args(args)
        .output()
        .expect("run cpuprof");
    (out, None).into()
}

/// The command `cpuprof [flags] --quiet --json JSON -- CMD`, not started yet.
pub fn record_command(flags: &[&str], json: &Path, cmd: &[&str]) -> Command {
    let mut c = Command::new(cpuprof());
    c.args(flags)
        .arg("--quiet")
        .arg("--json")
        .arg(json)
        .arg("--")
        .args(cmd);
    c
}

/// Runs `cpuprof [flags] --quiet --json DIR/summary.json -- CMD` and parses the JSON.
pub fn record(dir: &Path, flags: &[&str], cmd: &[&str]) -> Run {
    let json = dir.join("summary.json");
    let _ = std::fs::remove_file(&json);
    let out = record_command(flags, &json, cmd)
        .output()
        .expect("run cpuprof");
    let value = read_json(&json);
    (out, value).into()
}

/// Parses a JSON file, `None` if it is missing.
pub fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {path:?}: {e}")))
}

/// A number field of a JSON object (panics with the object if missing).
pub fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// The processes array of a summary.
pub fn processes(summary: &Value) -> &Vec<Value> {
    summary["processes"].as_array().expect("processes array")
}

/// Every thread of every process of a summary, with its process.
pub fn threads(summary: &Value) -> Vec<(&Value, &Value)> {
    processes(summary)
        .iter()
        .flat_map(|p| {
            p["threads"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (p, t))
        })
        .collect()
}

/// Waits until `cond` holds, polling every 10 ms, panicking with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `n` child processes of `root` (its main thread's children), once it has that many.
pub fn children(root: u32, n: usize) -> Vec<u32> {
    let mut found = Vec::new();
    wait_for(
        &format!("{n} children of {root}"),
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
                .unwrap_or_default();
            found = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            found.len() == n
        },
    );
    found
}

/// Asserts `actual` is within `rel` (relative) of `expected`.
pub fn assert_close(what: &str, actual: f64, expected: f64, rel: f64) {
    let err = (actual - expected).abs() / expected.abs().max(1e-9);
    assert!(
        err <= rel,
        "{what}: got {actual:.4}, expected {expected:.4} (off by {:.1}%, allowed {:.1}%)",
        err * 100.0,
        rel * 100.0
    );
}
