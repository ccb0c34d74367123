//! Native stacks end to end: the real `cpuprof` binary samples real programs with perf
//! `cpu-clock` events and unwinds them with `.eh_frame`; the saved profile is checked.
//!
//! (Raw perf samples of a Python + NumPy process, before the Python merge rewrites them, are
//! checked in `crates/cpuprof-collect/tests/perf.rs`.)

mod util;

use std::path::{Path, PathBuf};

use cpuprof_model::{Frame, Profile};

/// `main → outer → middle → leaf`, built with `-O2 -fomit-frame-pointer`: only `.eh_frame`
/// can unwind it. Each function does work after its call, so none is a tail call.
const CHAIN_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
volatile double sink;
__attribute__((noinline)) double leaf(long n) {
    double x = 0;
    for (long i = 0; i < n; i++) x += (double)i * 0.5;
    sink = x;
    return x;
}
__attribute__((noinline)) double middle(long n) { double r = leaf(n); sink += r; return r * 2; }
__attribute__((noinline)) double outer(long n) { double r = middle(n); sink += r; return r + 1; }
int main(int argc, char **argv) {
    double t = 0;
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    while (clock() < CLOCKS_PER_SEC * secs) t += outer(2000000);
    printf("%f\n", t);
    return 0;
}
"#;

fn build_chain(dir: &Path) -> PathBuf {
    let src = dir.join("chain.c");
    let exe = dir.join("chain");
    std::fs::write(&src, CHAIN_C).unwrap();
    let out = std::process::Command::new("gcc")
        .args(["-O2", "-fomit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Records `cmd` with `flags` and loads the saved profile.
fn record(dir: &Path, flags: &[&str], cmd: &[&str]) -> (util::Run, Profile) {
    let save = dir.join("p.cpuprof");
    let save_s = save.to_string_lossy().into_owned();
    let mut all = vec!["--save", save_s.as_str()];
    all.extend_from_slice(flags);
    let run = util::record(dir, &all, cmd);
    assert_eq!(run.code, Some(0), "cpuprof failed: {}", run.stderr);
    let profile = cpuprof_model::file::load(&save).expect("profile saved");
    (run, profile)
}

/// The stacks (frames root first) of one thread's perf samples.
fn stacks(p: &Profile, tid: u32) -> Vec<Vec<&Frame>> {
    p.samples
        .iter()
        .filter(|s| s.tid == tid)
        .map(|s| match s.stack {
            Some(id) => p
                .stacks
                .frames_of(id)
                .into_iter()
                .map(|f| p.stacks.frame(f))
                .collect(),
            None => Vec::new(),
        })
        .collect()
}

fn pos(stack: &[&Frame], name: &str) -> Option<usize> {
    stack.iter().position(|f| f.name == name)
}

fn show(stack: &[&Frame]) -> String {
    stack
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

/// How many of `stacks` hold `main → outer → middle → leaf` in that order.
fn in_chain_order(stacks: &[Vec<&Frame>]) -> usize {
    stacks
        .iter()
        .filter(|s| {
            matches!(
                (pos(s, "main"), pos(s, "outer"), pos(s, "middle"), pos(s, "leaf")),
                (Some(a), Some(b), Some(c), Some(d)) if a < b && b < c && c < d
            )
        })
        .count()
}

#[test]
fn chain_built_without_frame_pointers_unwinds_in_order() {
    chain_unwinds_in_order(&[]);
}

#[test]
fn chain_unwinds_in_order_with_per_task_events() {
    chain_unwinds_in_order(&["--per-task-events"]);
}

/// The chain program, recorded with `flags` (one event per CPU for the machine, or events
/// per task).
fn chain_unwinds_in_order(flags: &[&str]) {
    let dir = util::tempdir();
    let exe = build_chain(dir.path());
    let (_, p) = record(dir.path(), flags, &[exe.to_str().unwrap()]);
    let pid = p.meta.pid;
    let all = stacks(&p, pid);
    assert!(all.len() >= 100, "only {} samples of 1 s of CPU", all.len());
    let ordered = in_chain_order(&all);
    assert!(
        ordered * 10 >= all.len() * 8,
        "{ordered} of {} samples show main → outer → middle → leaf; first: {}",
        all.len(),
        show(&all[0])
    );
    let module = all
        .iter()
        .flat_map(|s| s.iter())
        .find(|f| f.name == "leaf")
        .and_then(|f| f.module.clone());
    assert_eq!(
        module.as_deref(),
        exe.to_str(),
        "leaf's module is the executable"
    );
    assert!(
        p.processes
            .iter()
            .flat_map(|p| &p.threads)
            .any(|t| !t.sched.is_empty()),
        "context switches recorded"
    );
}

#[test]
fn matmul_workers_reach_openblas_and_main_shows_its_own_frames() {
    let dir = util::tempdir();
    let (_, p) = record(
        dir.path(),
        &[],
        &[
            util::matmul().to_str().unwrap(),
            "--iters",
            "12",
            "--size",
            "1024",
        ],
    );
    assert_eq!(
        p.meta.lost_samples, 0,
        "no samples lost at the default rate"
    );
    let proc_ = p
        .processes
        .iter()
        .max_by_key(|pr| pr.cpu_ns())
        .expect("a process");
    // Worker threads: in libopenblas, from clone3/start_thread.
    let mut workers = 0;
    let mut worker_ok = 0;
    for th in proc_.threads.iter().filter(|t| t.tid != proc_.pid) {
        for s in stacks(&p, th.tid) {
            workers += 1;
            let in_blas = s.iter().any(|f| {
                f.module_name()
                    .is_some_and(|m| m.starts_with("libopenblas"))
            });
            let rooted = matches!(
                (pos(&s, "__clone3"), pos(&s, "start_thread")),
                (Some(0), Some(1))
            );
            worker_ok += usize::from(in_blas && rooted);
        }
    }
    assert!(workers >= 30, "only {workers} worker samples");
    assert!(
        worker_ok * 10 >= workers * 7,
        "{worker_ok} of {workers} worker samples are libopenblas frames under clone3/start_thread"
    );
    // Main thread: cpuprof_matmul frames above cblas_dgemm.
    let main = stacks(&p, proc_.pid);
    let dgemm: Vec<_> = main
        .iter()
        .filter(|s| pos(s, "cblas_dgemm").is_some())
        .collect();
    assert!(
        dgemm.len() >= 20,
        "only {} main-thread samples in cblas_dgemm",
        dgemm.len()
    );
    let framed = dgemm
        .iter()
        .filter(|s| {
            let d = pos(s, "cblas_dgemm").unwrap();
            s[..d]
                .iter()
                .any(|f| f.name.starts_with("cpuprof_matmul::"))
                && pos(s, "main").is_some_and(|m| m < d)
        })
        .count();
    assert!(
        framed * 10 >= dgemm.len() * 8,
        "{framed} of {} show main … cpuprof_matmul:: … cblas_dgemm; e.g. {}",
        dgemm.len(),
        show(dgemm[0])
    );
}

#[test]
fn samples_per_thread_agree_with_procfs_cpu() {
    let dir = util::tempdir();
    let (_, p) = record(
        dir.path(),
        &["--rate", "500"],
        &[
            util::matmul().to_str().unwrap(),
            "--iters",
            "30",
            "--procs",
            "2",
        ],
    );
    let rate = f64::from(p.meta.sample_rate_hz.expect("rate recorded"));
    // The kernel's tid -1 (the last switch-out of an exiting thread) is no thread.
    assert!(
        p.processes
            .iter()
            .flat_map(|p| &p.threads)
            .all(|t| t.tid != u32::MAX),
        "a thread with tid 4294967295"
    );
    let mut checked = 0;
    for proc_ in &p.processes {
        for th in &proc_.threads {
            let cpu_s = th.cpu_ns as f64 / 1e9;
            if cpu_s < 0.25 {
                continue;
            }
            let expected = cpu_s * rate;
            let n = p.samples.iter().filter(|s| s.tid == th.tid).count() as f64;
            // Poisson-like noise plus the poll interval at the ends of the thread.
            let tolerance = 0.15 * expected + 4.0 * expected.sqrt();
            assert!(
                (n - expected).abs() <= tolerance,
                "thread {} ({}): {n} samples, procfs CPU {cpu_s:.3} s → {expected:.0} expected",
                th.tid,
                th.name
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "only {checked} threads with enough CPU to compare"
    );
}

#[test]
fn perf_refused_still_records_procfs_data_with_one_notice() {
    let dir = util::tempdir();
    let save = dir.path().join("p.cpuprof");
    let json = dir.path().join("s.json");
    let exe = build_chain(dir.path());
    let out = std::process::Command::new(util::cpuprof())
        .env("CPUPROF_DISABLE_PERF", "1")
        .arg("--quiet")
        .arg("--save")
        .arg(&save)
        .arg("--json")
        .arg(&json)
        .arg("--")
        .arg(&exe)
        .output()
        .expect("run cpuprof");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = cpuprof_model::file::load(&save).expect("profile saved");
    assert!(p.samples.is_empty(), "no perf samples without perf");
    assert!(p
        .processes
        .iter()
        .flat_map(|p| &p.threads)
        .all(|t| t.sched.is_empty()));
    let perf_notices: Vec<_> = p
        .notices
        .iter()
        .filter(|n| n.contains("perf_event_paranoid"))
        .collect();
    assert_eq!(perf_notices.len(), 1, "notices: {:?}", p.notices);
    assert!(!perf_notices[0].contains('\n'), "one line");
    assert!(perf_notices[0].contains("CAP_PERFMON"));
    let cpu = p.process(p.meta.pid).expect("target recorded").cpu_ns();
    assert!(cpu as f64 >= 0.7e9, "procfs CPU still measured: {cpu} ns");
    let summary = util::read_json(&json).expect("summary JSON");
    let notices = summary["notices"].to_string();
    assert!(
        notices.contains("perf_event_paranoid"),
        "summary notices: {notices}"
    );
}

#[test]
fn attach_mode_samples_a_running_process() {
    attach_samples_the_chain(&[]);
}

#[test]
fn attach_mode_samples_a_running_process_with_per_task_events() {
    attach_samples_the_chain(&["--per-task-events"]);
}

/// Attaches to the running chain program for 1.5 s with `flags`.
fn attach_samples_the_chain(flags: &[&str]) {
    let dir = util::tempdir();
    let exe = build_chain(dir.path());
    let mut child = std::process::Command::new(&exe)
        .arg("20")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the chain program");
    let pid = child.id().to_string();
    let save = dir.path().join("p.cpuprof");
    let out = std::process::Command::new(util::cpuprof())
        .args(["--quiet", "--duration", "1.5", "--pid", &pid])
        .args(flags)
        .arg("--save")
        .arg(&save)
        .output()
        .expect("run cpuprof");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = cpuprof_model::file::load(&save).expect("profile saved");
    let all = stacks(&p, child.id());
    assert!(
        all.len() >= 50,
        "only {} samples in 1.5 s of attach",
        all.len()
    );
    let ordered = in_chain_order(&all);
    assert!(
        ordered * 10 >= all.len() * 8,
        "{ordered} of {} attached samples show main → outer → middle → leaf",
        all.len()
    );
}

/// 150 child processes, then 150 threads, one after the other, each running 2 ms of CPU:
/// shorter than one sampling period (4 ms at 250 Hz).
const SHORT_TASKS_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static void spin_ms(double ms) {
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    do clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    while ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6 < ms);
}
static void *thread_main(void *arg) { spin_ms(2); return arg; }
int main(void) {
    for (int i = 0; i < 150; i++) {
        pid_t p = fork();
        if (p == 0) { spin_ms(2); _exit(0); }
        waitpid(p, 0, 0);
    }
    for (int i = 0; i < 150; i++) {
        pthread_t t;
        pthread_create(&t, 0, thread_main, 0);
        pthread_join(t, 0);
    }
    return 0;
}
"#;

#[test]
fn children_and_threads_shorter_than_a_period_are_sampled() {
    let dir = util::tempdir();
    let exe = util::compile_c(dir.path(), "short", SHORT_TASKS_C);
    // A busy process outside the tree: the per-CPU events see it, the profile must not.
    let mut stranger = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .expect("start a busy loop");
    let (_, p) = record(dir.path(), &[], &[exe.to_str().unwrap()]);
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(
        !p.samples.iter().any(|s| s.pid == stranger.id()) && p.process(stranger.id()).is_none(),
        "the busy loop outside the tree was recorded"
    );
    let root = p.meta.pid;
    let rate = f64::from(p.meta.sample_rate_hz.expect("rate recorded"));
    // 0.3 s of CPU in each group: 75 samples expected at 250 Hz.
    let expected = 0.3 * rate;
    let children: Vec<_> = p.samples.iter().filter(|s| s.pid != root).collect();
    let threads = p
        .samples
        .iter()
        .filter(|s| s.pid == root && s.tid != root)
        .count();
    let child_pids: std::collections::BTreeSet<_> = children.iter().map(|s| s.pid).collect();
    assert!(
        children.len() as f64 >= 0.5 * expected && child_pids.len() >= 20,
        "{} samples in {} child processes; {expected:.0} expected",
        children.len(),
        child_pids.len()
    );
    assert!(
        threads as f64 >= 0.5 * expected,
        "{threads} samples in the short threads; {expected:.0} expected"
    );
    assert!(
        children.len() as f64 <= 1.6 * expected && threads as f64 <= 1.6 * expected,
        "more samples than CPU: {} and {threads} against {expected:.0}",
        children.len()
    );
    // The parent mostly waits for them. Sampling in step with the scheduler tick gave it
    // 143 samples for 0.04 s of CPU on a busy machine (perf/period.rs).
    let parent_cpu = p
        .process(root)
        .and_then(|pr| pr.thread(root))
        .map_or(0.0, |t| t.cpu_ns as f64 / 1e9);
    let parent = p
        .samples
        .iter()
        .filter(|s| s.pid == root && s.tid == root)
        .count();
    assert!(
        parent as f64 <= 1.6 * parent_cpu * rate + 8.0,
        "{parent} samples in the waiting parent, {parent_cpu:.3} s of CPU"
    );
}

/// The samples do not disturb what they measure: in a 2-thread LLVM OpenMP program whose
/// regions last ~10 µs, both threads spend most of their CPU in the region's work. When every
/// CPU sampled at the same instant, the cost of one CPU's sample (the interrupt, the stack
/// copy) made the other thread late, and the main thread was caught waiting for it at the
/// join barrier in 186 of 193 samples; `perf record` and per-task events put ~90% of its
/// samples in the work.
#[test]
fn a_sample_on_one_cpu_does_not_make_another_cpus_thread_look_idle() {
    let dir = util::tempdir();
    let exe = dir.path().join("omp");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/c/omp_regions.c");
    let cc = match std::process::Command::new("clang")
        .args(["-O2", "-fopenmp"])
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!("clang: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("skipped: clang cannot run ({e}); run `make setup`");
            return;
        }
    };
    drop(cc);
    let (_, p) = record(
        dir.path(),
        &[],
        &["env", "OMP_NUM_THREADS=2", exe.to_str().unwrap(), "70000"],
    );
    let proc_ = p
        .processes
        .iter()
        .find(|p| p.threads.len() == 2)
        .expect("the OpenMP process with its 2 threads");
    for th in &proc_.threads {
        let all = stacks(&p, th.tid);
        let work = all
            .iter()
            .filter(|s| s.iter().any(|f| f.name.starts_with(".omp_outlined")))
            .count();
        assert!(
            all.len() >= 50 && work as f64 >= 0.6 * all.len() as f64,
            "thread {} ({}): {work} of {} samples in the parallel region's work",
            th.tid,
            th.name,
            all.len()
        );
    }
}
