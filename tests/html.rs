//! The HTML report in a real browser: Debian's headless Chromium loads the page with
//! `#selftest`, which makes the page's own script check itself after start-up (timeline and
//! flamegraph drawn with a size, a process lane expands into its threads when clicked, no
//! element injected by target-controlled text, no script error) and write the results as JSON
//! into a hidden element; `--dump-dom` hands us the DOM. Chromium's console log (stderr) must
//! be empty too, which also catches Content-Security-Policy violations.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod util;

use util::chromium;

/// What a hostile target calls its thread (15 bytes, the most `comm` holds).
const EVIL_THREAD: &str = "<b>&\"'</script>";
/// What a hostile target passes as an argument.
const EVIL_ARG: &str = "</script><script>document.title='pwned'</script><b>&amp;\"'";

/// Loads `page` with `#selftest` and returns the page's self-check results.
fn selftest(dir: &Path, page: &Path) -> Value {
    let url = format!("file://{}#selftest", page.display());
    let (dom, log) = chromium(dir, &["--dump-dom".to_string()], &url);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let start = dom
        .find("<pre id=\"selftest-result\" hidden=\"\">")
        .unwrap_or_else(|| {
            panic!(
                "no self-test result in the DOM:\n{}",
                &dom[..dom.len().min(3000)]
            )
        });
    let body = &dom[start..];
    let body = &body[body.find('>').unwrap() + 1..body.find("</pre>").unwrap()];
    let json = body
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["errors"], serde_json::json!([]), "script errors: {v}");
    // The title must not have been set by an injected script.
    assert!(!dom.contains("pwned</title>"), "injected script ran");
    v
}

fn screenshot(dir: &Path, page: &Path) -> PathBuf {
    let png = dir.join("report.png");
    chromium(
        dir,
        &[format!("--screenshot={}", png.display())],
        &format!("file://{}", page.display()),
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        bytes.len()
    );
    png
}

fn size(v: &Value) -> (f64, f64) {
    (
        v["w"].as_f64().unwrap_or(0.0),
        v["h"].as_f64().unwrap_or(0.0),
    )
}

fn check_drawn(c: &Value) {
    let (w, h) = size(&c["timeline"]);
    assert!(w > 300.0 && h > 50.0, "timeline {w}x{h}");
    let (w, h) = size(&c["cores_canvas"]);
    assert!(w > 300.0 && h > 50.0, "cores canvas {w}x{h}");
    let (w, h) = size(&c["flame"]);
    assert!(w > 300.0 && h > 30.0, "flamegraph {w}x{h}");
    assert!(
        c["flame_drawn"].as_u64().unwrap() > 3,
        "flamegraph frames: {c}"
    );
    // Clicking the first process lane shows its threads.
    assert_eq!(c["threads_visible_before"], 0, "{c}");
    assert!(c["threads_visible_after"].as_u64().unwrap() >= 1, "{c}");
    let (w, h) = size(&c["thread_canvas"]);
    assert!(w > 300.0 && h > 5.0, "thread lane {w}x{h}");
    // Dragging over the timeline selects a range and narrows the flamegraph to it; the wheel
    // zooms; search finds frames.
    let sel = c["selection"]
        .as_array()
        .expect("a selection after dragging");
    let wall = c["wall"].as_f64().unwrap();
    let (t0, t1) = (sel[0].as_f64().unwrap(), sel[1].as_f64().unwrap());
    assert!(
        (t0 - 0.2 * wall).abs() < 0.05 * wall && (t1 - 0.6 * wall).abs() < 0.05 * wall,
        "selection {t0}..{t1} of {wall}"
    );
    let (all, range) = (
        c["flame_all_samples"].as_u64().unwrap(),
        c["flame_range_samples"].as_u64().unwrap(),
    );
    assert!(
        range < all,
        "the time range did not narrow the flamegraph: {c}"
    );
    assert!(c["zoomed_span"].as_f64().unwrap() < wall * 0.9, "{c}");
    assert!(c["search_matched"].as_u64().unwrap() > 0, "{c}");
    // Nothing from the target became markup or script.
    assert_eq!(c["injected_elements"], 0, "{c}");
    assert_eq!(c["scripts"], 2, "{c}");
}

#[test]
fn synthetic_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let shape = cpuprof_report::synthetic::Shape {
        seconds: 30,
        processes: 2,
        threads_per_process: 4,
        ..Default::default()
    };
    let (mut profile, analysis) = cpuprof_report::synthetic::profile(shape);
    profile.processes[0].threads[1].name = EVIL_THREAD.into();
    profile.processes[0].command.push(EVIL_ARG.into());
    profile.meta.command.push(EVIL_ARG.into());
    let page = dir.path().join("report.html");
    std::fs::write(&page, cpuprof_report::html::render(&profile, &analysis)).unwrap();
    let v = selftest(dir.path(), &page);
    let c = &v["checks"];
    check_drawn(c);
    assert_eq!(c["processes"], 2);
    assert_eq!(c["thread_rows"], 8);
    assert_eq!(c["table_rows"], 8);
    let labels: Vec<&str> = c["thread_labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        labels.contains(&format!("{EVIL_THREAD} (1001)").as_str()),
        "{labels:?}"
    );
    let header = c["header_command"].as_str().unwrap();
    assert!(
        header.contains("</script><script>document.title=") && header.contains("<b>&amp;"),
        "command not shown literally: {header}"
    );
    screenshot(dir.path(), &page);
}

/// A C program whose worker thread is named [`EVIL_THREAD`] and burns CPU.
const EVIL_C: &str = r#"
#include <pthread.h>
#include <sys/prctl.h>
#include <time.h>
static double cpu(void) {
    struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static void burn(double secs) {
    volatile double x = 0; double s = cpu();
    while (cpu() - s < secs) for (int i = 0; i < 100000; i++) x += i * 0.5;
}
static void *worker(void *a) {
    (void)a; prctl(PR_SET_NAME, "<b>&\"'</script>"); burn(0.8); return 0;
}
int main(void) {
    pthread_t t; pthread_create(&t, 0, worker, 0); burn(0.4); pthread_join(t, 0); return 0;
}
"#;

#[test]
fn real_recording_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("evil.c");
    std::fs::write(&src, EVIL_C).unwrap();
    let exe = dir.path().join("evil");
    let st = Command::new("gcc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc failed");
    let page = dir.path().join("report.html");
    let folded = dir.path().join("stacks.folded");
    let out = Command::new(env!("CARGO_BIN_EXE_cpuprof"))
        .current_dir(dir.path())
        .arg("-q")
        .arg("-o")
        .arg(&page)
        .arg("--collapsed")
        .arg(&folded)
        .arg("--")
        .arg(&exe)
        .args(["<b>x</b>", "&amp;", "\"q\"", "'s'", EVIL_ARG])
        .output()
        .expect("run cpuprof");
    assert!(
        out.status.success(),
        "cpuprof failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).expect("the report was written");
    assert!(!html.contains("<b>"), "unescaped markup in the page");
    let v = selftest(dir.path(), &page);
    let c = &v["checks"];
    check_drawn(c);
    let labels: Vec<&str> = c["thread_labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with(&format!("{EVIL_THREAD} ("))),
        "thread name not shown literally: {labels:?}"
    );
    let cmds = c["process_commands"].to_string();
    assert!(
        cmds.contains("<b>x</b>") && cmds.contains("&amp;"),
        "{cmds}"
    );
    let header = c["header_command"].as_str().unwrap();
    assert!(
        header.contains("</script><script>document.title=") && header.contains("<b>&amp;"),
        "command not shown literally: {header}"
    );
    // The folded stacks name the process and the thread first.
    let text = std::fs::read_to_string(&folded).expect("folded stacks written");
    assert!(
        text.lines()
            .any(|l| l.starts_with("evil (") && l.contains(&format!(";{EVIL_THREAD} ("))),
        "{text}"
    );
    screenshot(dir.path(), &page);
}

#[test]
fn empty_profile_renders_without_errors() {
    // A target that failed at once: no process seen, no samples, zero wall time.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("empty.html");
    let profile = cpuprof_model::Profile::default();
    let analysis = cpuprof_model::Analysis::default();
    std::fs::write(&page, cpuprof_report::html::render(&profile, &analysis)).unwrap();
    let v = selftest(dir.path(), &page);
    let c = &v["checks"];
    assert_eq!(c["processes"], 0);
    assert_eq!(c["flame_samples"], 0);
    let (w, h) = size(&c["timeline"]);
    assert!(w > 300.0 && h > 50.0, "timeline {w}x{h}");
}

/// The sweep's page in a real browser: the candidates' table and the recommendation are there,
/// and the command's text stays text.
#[test]
fn sweep_page_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("sweep.html");
    let out = Command::new(env!("CARGO_BIN_EXE_cpuprof"))
        .args(["sweep", "-q", "--runs", "1", "--set", "X=1,2", "-o"])
        .arg(&page)
        .arg("--out-dir")
        .arg(dir.path().join("runs"))
        .args(["--", "sh", "-c", "sleep 0.05", EVIL_ARG])
        .output()
        .expect("run cpuprof sweep");
    assert!(out.status.success(), "{out:?}");
    let url = format!("file://{}", page.display());
    let (dom, _) = chromium(dir.path(), &["--dump-dom".to_string()], &url);
    assert!(dom.contains("id=\"sweep-candidates\""), "{dom}");
    assert!(dom.contains("X=2"), "{dom}");
    assert!(dom.contains("Recommendation"));
    assert!(!dom.contains("<title>pwned"), "the command ran as markup");
    assert!(
        !dom.contains("<script>document.title"),
        "the command ran as markup"
    );
}
