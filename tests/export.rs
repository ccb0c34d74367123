//! Exports checked by their real consumers: `--speedscope` loaded by the `speedscope` npm
//! package's own page in headless Chromium (the way its `speedscope FILE` command opens a
//! file), and checked against the file-format schema that package ships.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64_free::encode;
use serde_json::Value;

mod util;

fn speedscope_dir() -> Option<PathBuf> {
    let d =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".node/node_modules/speedscope/dist/release");
    if d.join("index.html").exists() && Path::new(util::CHROMIUM).exists() {
        Some(d)
    } else {
        eprintln!("skipped: speedscope (.node) or chromium missing; run `make setup`");
        None
    }
}

/// A real recording of the matmul pool with stacks, exported with `flag` (`--speedscope`,
/// `--perfetto`): the export and the summary JSON.
fn record_export(dir: &Path, flag: &str) -> (Value, Value) {
    let out = dir.join("export.json");
    let json = dir.join("summary.json");
    let r = Command::new(util::cpuprof())
        .args(["-q", flag])
        .arg(&out)
        .arg("--json")
        .arg(&json)
        .arg("--")
        .arg(util::matmul())
        .args(["--procs=2", "--size=256", "--iters=600", "--threads=auto"])
        .output()
        .expect("run cpuprof");
    assert!(r.status.success(), "{r:?}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (doc, util::read_json(&json).unwrap())
}

/// Asserts that `got` seconds of CPU an export holds are the CPU the summary measured, less
/// what fell before the threads' first poll and after their last (exits are exact): the
/// workload's processes start together and end together, so each end holds at most one
/// polling interval of the machine's cores (seen: 0.377 of 0.473 s in a 0.3 s run, a fifth
/// of it in those ends).
fn assert_sums_to_cpu(what: &str, got: f64, summary: &Value) {
    let cpu = util::num(summary, "cpu_s");
    let ends = 2.0 * util::num(summary, "interval_s") * util::num(summary, "cpu_budget");
    assert!(
        got <= cpu * 1.01 && got >= (cpu - ends) * 0.99,
        "{got} s of CPU in {what} for {cpu} s (ends {ends} s)"
    );
}

/// The structural rules of speedscope's schema for what cpuprof writes (a sampled profile):
/// the required fields, their types, and frame indices inside `shared.frames`.
fn check_against_schema(schema: &Value, doc: &Value) {
    let defs = &schema["definitions"];
    assert_eq!(
        doc["$schema"],
        defs["FileFormat.File"]["properties"]["$schema"]["const"]
    );
    let file_required = defs["FileFormat.File"]["required"]
        .as_array()
        .expect("the schema's FileFormat.File.required");
    for k in file_required {
        assert!(doc.get(k.as_str().unwrap()).is_some(), "missing {k}");
    }
    let sampled_required = defs["FileFormat.SampledProfile"]["required"]
        .as_array()
        .expect("the schema's FileFormat.SampledProfile.required");
    let units: Vec<&str> = defs["FileFormat.ValueUnit"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    let frames = doc["shared"]["frames"].as_array().unwrap();
    for f in frames {
        assert!(f["name"].is_string());
    }
    for p in doc["profiles"].as_array().unwrap() {
        for k in sampled_required {
            assert!(p.get(k.as_str().unwrap()).is_some(), "profile lacks {k}");
        }
        assert_eq!(p["type"], "sampled");
        assert!(units.contains(&p["unit"].as_str().unwrap()));
        for s in p["samples"].as_array().unwrap() {
            for i in s.as_array().unwrap() {
                assert!((i.as_u64().unwrap() as usize) < frames.len());
            }
        }
    }
}

#[test]
fn speedscope_export_loads_in_speedscope() {
    let Some(ss) = speedscope_dir() else {
        return;
    };
    let dir = util::tempdir();
    let (doc, summary) = record_export(dir.path(), "--speedscope");
    let schema: Value =
        serde_json::from_slice(&std::fs::read(ss.join("file-format-schema.json")).unwrap())
            .unwrap();
    check_against_schema(&schema, &doc);
    // The weights are CPU time: each thread's profile sums to its CPU in the summary.
    let profiles = doc["profiles"].as_array().unwrap();
    assert!(profiles.len() >= 2, "one profile per sampled thread");
    let total: f64 = profiles
        .iter()
        .map(|p| p["endValue"].as_f64().unwrap())
        .sum::<f64>()
        / 1e9;
    let cpu = util::num(&summary, "cpu_s");
    assert!(
        total <= cpu * 1.001 && total > 0.5 * cpu,
        "{total} of {cpu}"
    );

    speedscope_loads(&ss, dir.path(), &dir.path().join("export.json"), &doc);
}

/// Loads a speedscope file the way `speedscope FILE` does it (a script calling
/// loadFileFromBase64, named in the page's #localProfilePath) and checks the page shows it.
fn speedscope_loads(ss: &Path, dir: &Path, file: &Path, doc: &Value) {
    let profiles = doc["profiles"].as_array().unwrap();
    let bytes = std::fs::read(file).unwrap();
    let js = dir.join("load.js");
    std::fs::write(
        &js,
        format!(
            "speedscope.loadFileFromBase64(\"profile.speedscope.json\", \"{}\")",
            encode(&bytes)
        ),
    )
    .unwrap();
    let url = format!(
        "file://{}#localProfilePath={}",
        ss.join("index.html").display(),
        js.display()
    );
    let (dom, _) = util::chromium(
        dir,
        &[
            "--allow-file-access-from-files".to_string(),
            "--virtual-time-budget=8000".to_string(),
            "--dump-dom".to_string(),
        ],
        &url,
    );
    // speedscope shows the document's name in the title and each profile's name in its
    // profile selector, once it has imported the file.
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let first = profiles[0]["name"].as_str().unwrap();
    assert!(
        dom.contains(&esc(first)),
        "speedscope does not show {first:?}: {}",
        &dom[..dom.len().min(2000)]
    );
    let title = doc["name"].as_str().unwrap();
    assert!(
        dom.contains(&format!("<title>{} - speedscope", esc(title))),
        "title"
    );
    assert!(!dom.contains("Something went wrong"));
}

/// Base64 without a dependency (the test's one use).
mod base64_free {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(b: &[u8]) -> String {
        let mut o = String::with_capacity(b.len().div_ceil(3) * 4);
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    o.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    o.push('=');
                }
            }
        }
        o
    }

    #[test]
    fn known() {
        assert_eq!(encode(b"Man"), "TWFu");
        assert_eq!(encode(b"Ma"), "TWE=");
        assert_eq!(encode(b"M"), "TQ==");
    }
}

/// `--perfetto`: the Trace Event Format, checked against the format's rules (the JSON object
/// form, each event's phase and required fields, metadata names); Perfetto's trace processor
/// itself is not installable here (its Python package downloads the binary from Google's
/// storage at run time, and this machine reaches only the package registries).
#[test]
fn trace_events_follow_the_format_and_sum_to_the_cpu() {
    let dir = util::tempdir();
    let (doc, summary) = record_export(dir.path(), "--perfetto");
    let events = doc["traceEvents"]
        .as_array()
        .expect("the JSON object format");
    assert_eq!(doc["displayTimeUnit"], "ms");
    let mut running_us = 0.0;
    let mut names = 0;
    for e in events {
        let ph = e["ph"].as_str().expect("ph");
        assert!(e["name"].is_string(), "{e}");
        assert!(e["pid"].is_u64(), "{e}");
        match ph {
            "X" => {
                assert!(e["tid"].is_u64());
                assert!(e["ts"].as_f64().unwrap() >= 0.0);
                let dur = e["dur"].as_f64().unwrap();
                assert!(dur >= 0.0);
                if e["name"] == "running" {
                    running_us += dur;
                }
            }
            "M" => {
                assert!(["process_name", "thread_name"].contains(&e["name"].as_str().unwrap()));
                assert!(e["args"]["name"].is_string());
                names += 1;
            }
            "C" => {
                assert!(e["ts"].as_f64().unwrap() >= 0.0);
                let args = e["args"].as_object().unwrap();
                assert!(
                    !args.is_empty() && args.values().all(Value::is_number),
                    "{e}"
                );
            }
            "i" => assert!(["g", "p", "t"].contains(&e["s"].as_str().unwrap())),
            other => panic!("unexpected phase {other}"),
        }
    }
    assert!(names >= 4, "process and thread names");
    // The running slices add up to the CPU the summary reports (the part before a thread's
    // first poll and after its last is not a slice).
    assert_sums_to_cpu("the running slices", running_us / 1e6, &summary);
    // One instant event per finding of the summary (a short run may have none).
    let instants = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["cat"] == "finding")
        .count();
    assert_eq!(instants, summary["findings"].as_array().unwrap().len());
}

/// The Firefox Profiler's processed format, version by version as its repository documents it
/// (`docs-developer/processed-profile-format.md`, `src/types/profile.js`): the profiler's page
/// cannot be installed here (it is not on npm, and profiler.firefox.com is not reachable), so
/// the file is checked the way the profiler's loader reads it: every table's columns as long as
/// its `length`, every index inside the table it names, every string index in the thread's
/// string array, time deltas and CPU deltas that add up.
fn check_firefox(doc: &Value, summary: &Value) -> Vec<String> {
    let meta = &doc["meta"];
    assert!(meta["version"].as_u64().unwrap() >= 24, "{meta}");
    assert!(meta["preprocessedProfileVersion"].as_u64().unwrap() >= 40);
    assert!(meta["interval"].as_f64().unwrap() > 0.0);
    assert!(
        meta["startTime"].as_f64().unwrap() > 1.7e12,
        "ms since the epoch"
    );
    assert!(meta["product"].as_str().unwrap().starts_with("cpuprof"));
    assert_eq!(meta["sampleUnits"]["threadCPUDelta"], "µs");
    let categories = meta["categories"].as_array().unwrap().len();
    let threads = doc["threads"].as_array().unwrap();
    let mut labels = Vec::new();
    let mut cpu_us = 0.0;
    let table = |t: &Value, name: &str| -> usize {
        let tab = &t[name];
        let n = tab["length"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}.length")) as usize;
        for (k, v) in tab.as_object().unwrap() {
            if let Some(col) = v.as_array() {
                assert_eq!(col.len(), n, "{name}.{k} has {} of {n}", col.len());
            }
        }
        n
    };
    for t in threads {
        assert!(t["pid"].is_string() && t["tid"].is_string() && t["name"].is_string());
        assert!(t["processName"].is_string());
        let strings = t["stringArray"].as_array().unwrap();
        let (stacks, frames, funcs) = (
            table(t, "stackTable"),
            table(t, "frameTable"),
            table(t, "funcTable"),
        );
        let samples = table(t, "samples");
        table(t, "markers");
        let idx = |v: &Value, bound: usize, what: &str| {
            if let Some(i) = v.as_u64() {
                assert!((i as usize) < bound, "{what} {i} of {bound}");
            } else {
                assert!(v.is_null(), "{what}: {v}");
            }
        };
        for v in t["samples"]["stack"].as_array().unwrap() {
            idx(v, stacks, "sample stack");
        }
        for v in t["stackTable"]["prefix"].as_array().unwrap() {
            idx(v, stacks, "stack prefix");
        }
        for v in t["stackTable"]["frame"].as_array().unwrap() {
            idx(v, frames, "stack frame");
        }
        for v in t["frameTable"]["func"].as_array().unwrap() {
            idx(v, funcs, "frame func");
        }
        for v in t["frameTable"]["category"].as_array().unwrap() {
            idx(v, categories, "frame category");
        }
        for v in t["funcTable"]["name"].as_array().unwrap() {
            idx(v, strings.len(), "func name");
            labels.push(
                strings[v.as_u64().unwrap() as usize]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let deltas: f64 = t["samples"]["timeDeltas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_f64().unwrap())
            .sum();
        assert!(deltas >= 0.0 && deltas <= util::num(summary, "wall_s") * 1000.0 + 1000.0);
        assert_eq!(
            samples,
            t["samples"]["threadCPUDelta"].as_array().unwrap().len()
        );
        cpu_us += t["samples"]["threadCPUDelta"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_f64().unwrap_or(0.0))
            .sum::<f64>();
    }
    // The CPU deltas are the threads' CPU as the summary measured it (less what happened
    // before a thread's first sample or poll and after its last).
    assert_sums_to_cpu("the CPU deltas", cpu_us / 1e6, summary);
    // One marker per finding.
    let markers: u64 = threads
        .iter()
        .map(|t| t["markers"]["length"].as_u64().unwrap())
        .sum();
    assert_eq!(
        markers as usize,
        summary["findings"].as_array().unwrap().len()
    );
    labels
}

#[test]
fn firefox_export_follows_the_processed_format() {
    let dir = util::tempdir();
    let (doc, summary) = record_export(dir.path(), "--firefox");
    let labels = check_firefox(&doc, &summary);
    assert!(labels.iter().any(|l| l.starts_with("dgemm_")), "{labels:?}");
    let threads = doc["threads"].as_array().unwrap();
    assert_eq!(threads.len(), util::threads(&summary).len());
}

/// A Python pool (examples/pool_matmul.py) in every format at once, each read by its
/// consumer: speedscope's page, `go tool pprof`, the Firefox format's rules, the Trace Event
/// Format's; Python frames with their file and line in each.
#[test]
fn a_python_pool_in_every_format() {
    let dir = util::tempdir();
    let d = dir.path();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pool_matmul.py");
    let r = Command::new(util::cpuprof())
        .args(["-q", "--json"])
        .arg(d.join("summary.json"))
        .arg("--speedscope")
        .arg(d.join("pool.speedscope.json"))
        .arg("--pprof")
        .arg(d.join("pool.pb.gz"))
        .arg("--firefox")
        .arg(d.join("pool.firefox.json"))
        .arg("--perfetto")
        .arg(d.join("pool.trace.json"))
        .arg("--")
        .arg(util::venv_python())
        .arg(&script)
        .args(["--workers", "2", "--tasks", "8", "--size", "768"])
        .output()
        .expect("run cpuprof");
    assert!(r.status.success(), "{r:?}");
    let summary = util::read_json(&d.join("summary.json")).unwrap();
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(d.join(name)).unwrap()).unwrap()
    };

    // speedscope: Python frames carry the script's path and their line.
    let ss_doc = read("pool.speedscope.json");
    let frames = ss_doc["shared"]["frames"].as_array().unwrap();
    assert!(
        frames.iter().any(|f| f["name"] == "task"
            && f["file"]
                .as_str()
                .is_some_and(|p| p.ends_with("pool_matmul.py"))
            && f["line"].is_u64()),
        "the pool's task function in {frames:?}"
    );
    if let Some(ss) = speedscope_dir() {
        speedscope_loads(&ss, d, &d.join("pool.speedscope.json"), &ss_doc);
    }

    // pprof: `go tool pprof` lists the Python function at its file and line.
    let go = Path::new("/usr/bin/go");
    assert!(go.exists(), "go missing: run `make setup` (golang-go)");
    let out = Command::new(go)
        .args(["tool", "pprof", "-top", "-lines", "-nodecount=100000"])
        .arg(d.join("pool.pb.gz"))
        .env("HOME", d)
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        top.lines()
            .any(|l| l.contains(" task ") && l.contains("pool_matmul.py:")),
        "{top}"
    );

    // Firefox: the processed format's rules, and the Python frames' labels.
    let labels = check_firefox(&read("pool.firefox.json"), &summary);
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with("task (") && l.contains("pool_matmul.py:")),
        "{labels:?}"
    );

    // Trace events: one process_name per process of the summary.
    let trace = read("pool.trace.json");
    let names = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .count();
    assert_eq!(names, util::processes(&summary).len());
}

#[test]
fn report_converts_a_saved_profile_to_every_viewer_format() {
    let dir = util::tempdir();
    let d = dir.path();
    let save = d.join("run.cpuprof");
    let r = Command::new(util::cpuprof())
        .args(["-q", "--save"])
        .arg(&save)
        .arg("--")
        .arg(util::matmul())
        .args(["--procs", "2", "--size", "256", "--iters", "300"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    let r = Command::new(util::cpuprof())
        .args(["report", "-q"])
        .arg(&save)
        .arg("--speedscope")
        .arg(d.join("a.speedscope.json"))
        .arg("--firefox")
        .arg(d.join("a.firefox.json"))
        .arg("--perfetto")
        .arg(d.join("a.trace.json"))
        .arg("--pprof")
        .arg(d.join("a.pb.gz"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    for f in ["a.speedscope.json", "a.firefox.json", "a.trace.json"] {
        let v: Value = serde_json::from_slice(&std::fs::read(d.join(f)).unwrap()).unwrap();
        assert!(v.is_object(), "{f}");
    }
    let gz = std::fs::read(d.join("a.pb.gz")).unwrap();
    assert_eq!(&gz[..2], b"\x1f\x8b", "gzip");
}
