//! Golden files: every output format of fixed profiles, and the findings the analysis makes on
//! real recordings saved as `.cpuprof` fixtures. A changed field name, table, folded line or
//! finding shows up as a diff here, with no timing in the test.
//!
//! Regenerate after a deliberate change (never by hand), then review the diff:
//!
//!     CPUPROF_BLESS=1 cargo test --release --test golden
//!
//! The fixtures (tests/fixtures/*.cpuprof) are real recordings made on the 2-core VM with
//! `cpuprof --save` (tests/fixtures/README.md says which command made each one).

use std::path::{Path, PathBuf};

use cpuprof_model::Profile;
use cpuprof_report::synthetic::{self, Shape};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with the golden file `name`, or writes it when `CPUPROF_BLESS` is set.
fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("CPUPROF_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with CPUPROF_BLESS=1 cargo test --release --test golden",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  golden: {a}\n  now:    {b}", i + 1))
            .collect();
        panic!(
            "{} differs from the output ({} lines golden, {} now):\n{}\nIf the change is \
             deliberate: CPUPROF_BLESS=1 cargo test --release --test golden",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

fn small() -> (Profile, cpuprof_model::Analysis) {
    synthetic::profile(Shape {
        seconds: 2,
        processes: 2,
        threads_per_process: 3,
        interval_ms: 100,
        rate_hz: 50,
    })
}

#[test]
fn summary_json_of_a_fixed_profile() {
    let (p, a) = small();
    let json = cpuprof_report::summary::to_json(&p, &a).unwrap();
    check(
        "synthetic.summary.json",
        &(serde_json::to_string_pretty(&json).unwrap() + "\n"),
    );
}

#[test]
fn terminal_summary_of_a_fixed_profile() {
    let (p, a) = small();
    check(
        "synthetic.terminal.txt",
        &cpuprof_report::terminal::render(&p, &a, false),
    );
}

#[test]
fn folded_stacks_of_a_fixed_profile() {
    let (p, _) = small();
    let mut out = Vec::new();
    cpuprof_report::collapsed::write(&p, &mut out).unwrap();
    check("synthetic.folded", &String::from_utf8(out).unwrap());
}

#[test]
fn speedscope_export_of_a_fixed_profile() {
    let (p, _) = small();
    let doc: serde_json::Value =
        serde_json::from_str(&cpuprof_report::speedscope::to_json(&p).unwrap()).unwrap();
    check(
        "synthetic.speedscope.json",
        &(serde_json::to_string_pretty(&doc).unwrap() + "\n"),
    );
}

#[test]
fn trace_events_of_a_fixed_profile() {
    let (p, a) = small();
    let doc: serde_json::Value =
        serde_json::from_str(&cpuprof_report::trace_events::to_json(&p, &a).unwrap()).unwrap();
    check(
        "synthetic.trace.json",
        &(serde_json::to_string_pretty(&doc).unwrap() + "\n"),
    );
}

/// The analysis of a fixture, in a stable text form: each finding's id, severity, title, fix,
/// setting and estimates (to 10 ms), and every thread's role and runtime.
fn analysis_text(p: &Profile) -> String {
    let a = cpuprof_analysis::analyze(p);
    let mut o = String::new();
    for f in &a.findings {
        o.push_str(&format!(
            "finding {} [{}]\n  title: {}\n  fix: {}\n  setting: {:?}\n  saves: {:.2} s wall, {:.2} s CPU\n  pids: {:?}\n",
            f.id,
            f.severity.as_str(),
            f.title,
            f.fix,
            f.setting,
            f.est_saving_wall_s,
            f.est_saving_cpu_s,
            f.pids
        ));
    }
    if a.findings.is_empty() {
        o.push_str("no findings\n");
    }
    for r in &a.runtimes {
        o.push_str(&format!(
            "runtime {} in {}: {} threads, knobs {:?}\n",
            r.name,
            r.pid,
            r.threads.len(),
            r.knobs
        ));
    }
    for (tid, c) in &a.threads {
        o.push_str(&format!(
            "thread {tid}: {} {}\n",
            c.role.as_str(),
            c.runtime.as_deref().unwrap_or("-")
        ));
    }
    o
}

fn fixture(name: &str) -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.cpuprof"));
    cpuprof_model::file::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

macro_rules! fixture_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check(concat!($name, ".findings.txt"), &analysis_text(&fixture($name)));
            }
        )*
    };
}

fixture_tests! {
    findings_of_an_oversubscribed_pool => "oversubscribed-pool",
    findings_of_a_fixed_pool => "fixed-pool",
    findings_of_a_spinning_single_process => "spinning-process",
    findings_of_a_pool_in_a_quota => "quota",
    findings_of_a_sleeper => "sleeper",
    findings_of_numexpr_in_a_process_pool => "numexpr-pool",
    findings_of_numpy_from_executor_threads => "executor-threads",
}
