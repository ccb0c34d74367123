//! `cpuprof sweep` end to end on real programs: the matmul workload where the fix matters and
//! where it does not, a Python pool (the recommendation agrees with the analysis's fix), a
//! command that fails as it is, and a candidate that fails.

use std::process::Command;

use serde_json::Value;

mod util;

/// Runs `cpuprof sweep --json FILE <flags> -- <cmd>`; returns the exit code, stderr and JSON.
fn sweep(flags: &[&str], cmd: &[&str]) -> (Option<i32>, String, Option<Value>) {
    let dir = util::tempdir();
    let json = dir.path().join("sweep.json");
    let out = Command::new(util::cpuprof())
        .arg("sweep")
        .arg("--json")
        .arg(&json)
        .arg("--out-dir")
        .arg(dir.path().join("runs"))
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .expect("run cpuprof sweep");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        util::read_json(&json),
    )
}

fn setting(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .expect("a setting is an object")
        .iter()
        .map(|(k, x)| (k.clone(), x.as_str().unwrap().to_string()))
        .collect()
}

fn median(c: &Value, key: &str) -> f64 {
    c[key]["median"].as_f64().expect("median")
}

#[test]
fn small_products_in_two_processes_get_one_thread_each_and_save_time() {
    let mm = util::matmul().display().to_string();
    let (code, err, v) = sweep(
        &["-q"],
        &[
            &mm,
            "--procs=2",
            "--size=128",
            "--iters=6000",
            "--threads=auto",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let v = v.expect("sweep JSON");
    assert_eq!(v["schema"], "cpuprof-sweep/1");
    if v["cpu_budget"].as_f64().unwrap() < 2.0 {
        eprintln!("skipped: needs 2 cores");
        return;
    }
    let rec = &v["recommended"];
    assert_eq!(
        setting(&rec["setting"]),
        vec![("OPENBLAS_NUM_THREADS".to_string(), "1".to_string())],
        "{rec}"
    );
    let base = &v["candidates"][0];
    assert!(setting(&base["setting"]).is_empty());
    assert!(base["runs"].as_u64().unwrap() >= 3);
    // Products of 128 × 128: at 256 the saving was 3–30% of the wall time from sweep to sweep
    // (two spinning pools in lockstep or not, docs/findings.md; once in CI within the noise),
    // at 128 it is 25–55% (0.9–1.55 s as it is, 0.63–0.70 with one thread, 2026-12-03). That
    // it is recommended means it beat the program as it is beyond the noise of paired runs,
    // so the test asks for a saving, not its size (docs/sweep.md and the session notes give
    // the measured sizes).
    let saving = rec["saving_wall_s"].as_f64().unwrap();
    assert!(
        saving > 0.0,
        "saving {saving} of {}",
        median(base, "wall_s")
    );
    // The analysis's finding is shown with its estimate and the saving measured here.
    let over = v["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "oversubscription")
        .expect("the first recording's finding");
    assert!(over["measured_saving_wall_s"].as_f64().unwrap() > 0.0);
    assert!(over["est_saving_wall_s"].as_f64().is_some());
    for c in v["candidates"].as_array().unwrap() {
        for k in ["wall_s", "cpu_s", "runq_wait_s"] {
            let s = &c[k];
            assert!(s["low"].as_f64().unwrap() <= s["median"].as_f64().unwrap());
            assert!(s["median"].as_f64().unwrap() <= s["high"].as_f64().unwrap());
        }
    }
}

#[test]
fn one_large_product_keeps_the_default() {
    let mm = util::matmul().display().to_string();
    let (code, err, v) = sweep(
        &["-q"],
        &[
            &mm,
            "--procs=1",
            "--size=2048",
            "--iters=4",
            "--threads=auto",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let v = v.expect("sweep JSON");
    if v["cpu_budget"].as_f64().unwrap() < 2.0 {
        eprintln!("skipped: needs 2 cores");
        return;
    }
    let rec = &v["recommended"];
    assert!(setting(&rec["setting"]).is_empty(), "{rec}");
    assert!(rec["reason"].as_str().unwrap().contains("keep"), "{rec}");
    // One thread was measured, and was slower.
    let one = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| setting(&c["setting"]) == vec![("OPENBLAS_NUM_THREADS".into(), "1".into())])
        .expect("one thread per pool was a candidate");
    assert!(one["wall_ratio"].as_f64().unwrap() > 1.2, "{one}");
}

#[test]
fn a_python_pool_gets_the_analysis_fix_and_its_code_form() {
    let py = util::venv_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pool_matmul.py");
    let (code, err, v) = sweep(
        &["-q"],
        &[
            &py.display().to_string(),
            &script.display().to_string(),
            "--size=512",
            "--tasks=32",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let v = v.expect("sweep JSON");
    if v["cpu_budget"].as_f64().unwrap() < 2.0 {
        eprintln!("skipped: needs 2 cores");
        return;
    }
    let rec = &v["recommended"];
    let fix = v["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "oversubscription" || f["id"] == "nested-pools")
        .expect("a pool finding in the first recording");
    assert_eq!(
        setting(&rec["setting"]),
        setting(&fix["setting"]),
        "{rec} vs {fix}"
    );
    assert!(
        fix["measured_saving_wall_s"].as_f64().unwrap() > 0.0,
        "{fix}"
    );
    let code_form = rec["python"].as_str().expect("the code form for Python");
    assert!(code_form.contains("os.environ[\"OPENBLAS_NUM_THREADS\"] = \"1\""));
}

#[test]
fn a_command_that_fails_as_it_is_stops_the_sweep_with_one_line() {
    let (code, err, v) = sweep(&["-q"], &["sh", "-c", "exit 3"]);
    assert_eq!(code, Some(1));
    assert!(v.is_none());
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("fails as it is (exit code 3)"), "{err}");
}

#[test]
fn a_failing_candidate_is_shown_failed_never_fast() {
    // X=2 fails at once (fastest of all, were it counted); the others sleep.
    let (code, err, v) = sweep(
        &["-q", "--set", "X=1,2", "--runs", "2"],
        &["sh", "-c", "test \"$X\" = 2 && exit 5; sleep 0.2"],
    );
    assert_eq!(code, Some(0), "{err}");
    let v = v.expect("sweep JSON");
    let cands = v["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 3);
    let two = cands
        .iter()
        .find(|c| setting(&c["setting"]) == vec![("X".into(), "2".into())])
        .unwrap();
    let failed = two["failed_runs"].as_array().unwrap();
    assert_eq!(two["failed"], two["runs"]);
    assert_eq!(failed.len(), two["runs"].as_u64().unwrap() as usize);
    assert_eq!(failed[0]["exit_code"], 5);
    assert_ne!(
        setting(&v["recommended"]["setting"]),
        vec![("X".into(), "2".into())]
    );
}

#[test]
fn an_interrupt_stops_cleanly_and_reports_what_was_measured() {
    let dir = util::tempdir();
    let json = dir.path().join("sweep.json");
    let mut child = Command::new(util::cpuprof())
        .args(["sweep", "-q", "--runs", "50", "--set", "X=1", "--json"])
        .arg(&json)
        .arg("--out-dir")
        .arg(dir.path().join("runs"))
        .args(["--", "sh", "-c", "sleep 0.1"])
        .spawn()
        .expect("run cpuprof sweep");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let v = util::read_json(&json).expect("the sweep so far is written");
    assert_eq!(v["stopped_early"], true);
    let runs = v["candidates"][0]["runs"].as_u64().unwrap();
    assert!((1..50).contains(&runs), "{runs} runs");
}
