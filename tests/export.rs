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
        .args(["--procs=2", "--size=256", "--iters=300", "--threads=auto"])
        .output()
        .expect("run cpuprof");
    assert!(r.status.success(), "{r:?}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (doc, util::read_json(&json).unwrap())
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

    // Loaded the way `speedscope FILE` does it: a script calling loadFileFromBase64, named in
    // the page's #localProfilePath.
    let bytes = std::fs::read(dir.path().join("export.json")).unwrap();
    let js = dir.path().join("load.js");
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
        dir.path(),
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
    // first poll is not a slice).
    let cpu = util::num(&summary, "cpu_s");
    let running = running_us / 1e6;
    assert!(
        running <= cpu * 1.01 && running >= 0.8 * cpu,
        "{running} of {cpu}"
    );
    // One instant event per finding of the summary (a short run may have none).
    let instants = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["cat"] == "finding")
        .count();
    assert_eq!(instants, summary["findings"].as_array().unwrap().len());
}
