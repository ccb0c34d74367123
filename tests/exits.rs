//! End-to-end tests of exact accounting at exit (issue 12) on real processes: every task's
//! own CPU in its own row, however short it lived, from the kernel's exit notifications
//! (taskstats + the process events connector), in launch and attach mode, with and without
//! perf. The programs measure themselves (`CLOCK_THREAD_CPUTIME_ID`, `getrusage`) and print
//! it; the rows must agree.
//!
//! These measure CPU: run them one at a time (`--test-threads=1`, as `make test` does).

mod util;

use std::process::Command;
use std::time::Duration;

use util::programs::*;
use util::*;

/// `churn TOTAL PAR MS`: starts TOTAL threads, PAR at a time, each burning MS ms of its own
/// CPU and exiting at once; prints `threads_cpu_ns SUM` (what they measured) at the end.
const CHURN_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static long ms; static long long total; static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long long tcpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static void *worker(void *a) {
    volatile unsigned long x = 0; while (tcpu() < ms * 1000000LL) x++;
    long long c = tcpu(); pthread_mutex_lock(&mu); total += c; pthread_mutex_unlock(&mu);
    return NULL;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]), par = atoi(argv[2]); ms = atol(argv[3]);
    pthread_t th[64];
    for (int i = 0; i < n; i += par) {
        for (int j = 0; j < par; j++) pthread_create(&th[j], NULL, worker, NULL);
        for (int j = 0; j < par; j++) pthread_join(th[j], NULL);
    }
    printf("threads_cpu_ns %lld\n", total);
    return 0;
}
"#;

/// `orphans N MS`: after 300 ms, N times: a child forks a grandchild and exits at once; the
/// grandchild, an orphan handed to init (or a subreaper), sleeps 100 ms, burns MS ms of its
/// own CPU, prints `pid cpu_ns` and exits. The program then sleeps 1 s.
const ORPHANS_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static long long pcpu(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]); long ms = atol(argv[2]);
    setvbuf(stdout, NULL, _IONBF, 0);
    usleep(300000);
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c == 0) {
            if (fork() == 0) {
                usleep(100000);
                volatile unsigned long x = 0; while (pcpu() < ms * 1000000LL) x++;
                printf("%d %lld\n", getpid(), pcpu());
                _exit(0);
            }
            _exit(0);
        }
        waitpid(c, NULL, 0);
        usleep(50000);
    }
    sleep(1);
    return 0;
}
"#;

/// Exact exit accounting needs CAP_NET_ADMIN; without it these tests have nothing to check.
fn can_listen_to_exits() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: exit accounting needs root (CAP_NET_ADMIN)");
    }
    root
}

/// The settings every exactness test runs with, and the source each must report: taskstats
/// with and without perf, and perf's switch records with taskstats not asked for (as when it
/// is refused).
const MODES: [(&[&str], &str); 3] = [
    (&[], "taskstats"),
    (&["--no-stacks"], "taskstats"),
    (&["--exit-accounting", "perf"], "perf_switches"),
];

/// How far a figure may be from the task's own measurement, relative: the kernel's exit
/// figures are exact; perf's on-CPU intervals also hold interrupts and, on a virtual machine,
/// the host's steal time (measured here: 20 ms threads read 20.2–22.1 ms with two busy loops
/// beside them, every switch record present; in clean CI runs of the whole suite 24.3, 24.5 and
/// 25.1 ms, i.e. up to +26%, while the host was busy).
fn slack(source: &str) -> f64 {
    if source == "taskstats" {
        0.0
    } else {
        0.30
    }
}

fn assert_source(s: &serde_json::Value, source: &str) {
    assert_eq!(s["exit_accounting"], source, "notices: {}", s["notices"]);
}

fn assert_exact(s: &serde_json::Value) {
    assert_source(s, "taskstats");
}

/// The `burn` processes of a summary: (process, its burning thread's CPU s).
fn burners(s: &serde_json::Value) -> Vec<&serde_json::Value> {
    processes(s)
        .iter()
        .filter(|p| {
            p["command"][0]
                .as_str()
                .is_some_and(|c| c.ends_with("burn"))
        })
        .collect()
}

/// 40 processes of 20 ms one after the other, each shorter than a polling interval.
fn check_sequential_short_processes(
    s: &serde_json::Value,
    shell_pid: u64,
    source: &str,
    own: &std::collections::HashMap<u64, f64>,
) {
    assert_source(s, source);
    let b = burners(s);
    let all: Vec<String> = processes(s)
        .iter()
        .map(|p| format!("{} {} {}", p["pid"], p["ppid"], p["command"]))
        .collect();
    assert_eq!(b.len(), 40, "burn processes in the profile: {all:#?}");
    for p in b {
        let burner = p["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| num(t, "cpu_s"))
            .fold(0.0, f64::max);
        // The thread burned exactly 20 ms of its own clock before it printed it. What it used
        // before (the process's start-up, which a loaded machine stretches: 13 ms once in CI)
        // and after (printing, exiting) is small, but a VM now and then charges the running
        // thread an interrupt's time there (up to 3 ms on a nested paravirtual host). So it
        // is bounded by the process's own CPU clock at its end, which holds the thread's
        // whole run: exactly with exact accounting, with the relative slack for on-CPU
        // intervals (which also hold the VM's steal time).
        let mine = own[&p["pid"].as_u64().unwrap()];
        let most = mine * (1.0 + slack(source)) + 0.001;
        assert!(
            burner >= 0.020 - 0.001 - 0.020 * slack(source) && burner <= most,
            "burning thread of {} ({source}): {burner} (its process's own clock {mine})",
            p["pid"]
        );
        // The process's row is what it measured of itself (its CPU clock at its end: the
        // 20 ms and its start-up, which a loaded machine stretches past 2 ms).
        let cpu = num(p, "cpu_s");
        assert!(
            (cpu - mine).abs() <= 0.001 + mine * (0.02 + slack(source)),
            "process {}: row {cpu}, its own clock {mine}",
            p["pid"]
        );
        assert_eq!(p["ppid"].as_u64(), Some(shell_pid), "{p}");
        // perf's records name the program only (its 15-byte `comm`), unless a poll saw it.
        if source == "taskstats" {
            assert_eq!(p["command"][1], "1", "{}", p["command"]);
        }
        let (start, end) = (num(p, "start_s"), num(p, "end_s"));
        assert!(end - start >= 0.020 && end - start < 0.5, "{start}..{end}");
        assert!(num(p, "runq_wait_s") >= 0.0);
    }
}

#[test]
fn forty_short_processes_each_show_their_own_20_ms() {
    if !can_listen_to_exits() {
        return;
    }
    let dir = tempdir();
    let exe = compile_c(dir.path(), "burn", BURN_C);
    let script = format!("for i in $(seq 40); do {} 1 20 0; done", exe.display());
    for (flags, source) in MODES {
        let r = record(dir.path(), flags, &["sh", "-c", &script]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let s = r.json.unwrap();
        let shell = s["pid"].as_u64().unwrap();
        check_sequential_short_processes(&s, shell, source, &burn_processes(&r.stdout));
        // The shell's row is its own CPU, not that of the 40 children it reaped.
        let sh = processes(&s).iter().find(|p| p["pid"] == s["pid"]).unwrap();
        assert!(num(sh, "cpu_s") < 0.1, "shell row {}", num(sh, "cpu_s"));
        // The tree's total is still the kernel's rusage of the launched child (exactly with
        // taskstats; on-CPU intervals also hold interrupts and a VM's steal time: on nested
        // paravirtual hosts whose steal was ~1% idle, 2.4% over by hand and 3.1% in a clean
        // CI run of the whole suite).
        let tolerance = if source == "taskstats" { 0.001 } else { 0.05 };
        assert_close(
            "tree total vs rusage",
            num(&s, "cpu_s"),
            num(&s, "tree_rusage_cpu_s"),
            tolerance,
        );
    }
}

#[test]
fn short_processes_are_exact_when_attached_too() {
    if !can_listen_to_exits() {
        return;
    }
    let dir = tempdir();
    let exe = compile_c(dir.path(), "burn", BURN_C);
    let script = format!(
        "sleep 1; for i in $(seq 40); do {} 1 20 0; done; sleep 0.3",
        exe.display()
    );
    for (flags, source) in [MODES[0], MODES[2]] {
        let out = dir.path().join(format!("attached-{source}.out"));
        let mut target = Command::new("sh")
            .args(["-c", &script])
            .stdout(std::fs::File::create(&out).unwrap())
            .spawn()
            .unwrap();
        let pid = target.id().to_string();
        let mut args = vec!["--pid", &pid];
        args.extend(flags);
        let r = record(dir.path(), &args, &[]);
        target.wait().unwrap();
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let own = burn_processes(&std::fs::read_to_string(&out).unwrap());
        check_sequential_short_processes(&r.json.unwrap(), target.id() as u64, source, &own);
    }
}

#[test]
fn matmul_workers_rows_match_their_own_rusage() {
    if !can_listen_to_exits() {
        return;
    }
    let dir = tempdir();
    let m = matmul();
    let args = [
        m.to_str().unwrap(),
        "--size",
        "1024",
        "--iters",
        "6",
        "--procs",
        "2",
    ];
    for (flags, source) in MODES {
        let r = record(dir.path(), flags, &args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let s = r.json.unwrap();
        assert_source(&s, source);
        // `proc index=0 pid=123 ... cpu_s=0.221 ...`: each worker's getrusage(RUSAGE_SELF).
        let workers: Vec<(u64, f64)> = r
            .stdout
            .lines()
            .chain(r.stderr.lines())
            .filter(|l| l.starts_with("proc index="))
            .map(|l| {
                let field = |k: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .unwrap_or_else(|| panic!("no {k} in {l}"))
                        .to_string()
                };
                (
                    field("pid=").parse().unwrap(),
                    field("cpu_s=").parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(workers.len(), 2, "{}", r.stdout);
        for (pid, own) in workers {
            let row = processes(&s)
                .iter()
                .find(|p| p["pid"].as_u64() == Some(pid))
                .unwrap_or_else(|| panic!("worker {pid} not in the profile"));
            let cpu = num(row, "cpu_s");
            assert!(
                (cpu - own).abs() <= (0.02 + slack(source)) * own + 0.003,
                "worker {pid}: row {cpu}, its own rusage {own}"
            );
        }
    }
}

#[test]
fn threads_of_one_second_show_one_second() {
    if !can_listen_to_exits() {
        return;
    }
    let dir = tempdir();
    let exe = compile_c(dir.path(), "burn", BURN_C);
    for (flags, source) in MODES {
        let r = record(
            dir.path(),
            flags,
            &[exe.to_str().unwrap(), "2", "1000", "0"],
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let s = r.json.unwrap();
        assert_source(&s, source);
        let (measured, _) = burn_output(&r.stdout);
        assert_eq!(measured.len(), 2);
        for (tid, own) in measured {
            let cpu = thread_cpu(&s, tid);
            assert!(
                (cpu - own).abs() <= 0.01 + own * slack(source),
                "thread {tid}: {cpu} vs {own}"
            );
            // Its end is its exit: before the process's, not at a later poll.
            let (p, t) = threads(&s)
                .into_iter()
                .find(|(_, t)| t["tid"].as_u64() == Some(tid))
                .unwrap();
            assert!(num(t, "end_s") <= num(p, "end_s"), "{t}");
        }
    }
}

#[test]
fn four_hundred_short_threads_add_up() {
    if !can_listen_to_exits() {
        return;
    }
    let dir = tempdir();
    let exe = compile_c(dir.path(), "churn", CHURN_C);
    for (flags, source) in MODES {
        check_churn(&exe, flags, source);
    }
}

fn check_churn(exe: &std::path::Path, flags: &[&str], source: &str) {
    let dir = tempdir();
    let r = record(dir.path(), flags, &[exe.to_str().unwrap(), "400", "8", "3"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = r.json.unwrap();
    assert_source(&s, source);
    let measured: f64 = r
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse::<f64>().ok())
        .expect("threads_cpu_ns")
        / 1e9;
    let p = &processes(&s)[0];
    let workers: Vec<&serde_json::Value> = p["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tid"] != p["pid"])
        .collect();
    assert_eq!(workers.len(), 400, "threads in the profile");
    let sum: f64 = workers.iter().map(|t| num(t, "cpu_s")).sum();
    assert_close("400 threads' CPU", sum, measured, 0.01 + slack(source));
    assert_close(
        "total vs rusage",
        num(&s, "cpu_s"),
        num(&s, "tree_rusage_cpu_s"),
        0.01 + slack(source),
    );
}

#[test]
fn attach_follows_orphans_handed_to_init() {
    if !can_listen_to_exits() {
        return;
    }
    let dir = tempdir();
    let exe = compile_c(dir.path(), "orphans", ORPHANS_C);
    let out = dir.path().join("orphans.out");
    let mut target = Command::new(&exe)
        .args(["6", "30"])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let pid = target.id();
    let r = record(dir.path(), &["--pid", &pid.to_string()], &[]);
    target.wait().unwrap();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = r.json.unwrap();
    assert_exact(&s);
    wait_for("the orphans' output", Duration::from_secs(5), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() == 6)
    });
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let opid: u64 = it.next().unwrap().parse().unwrap();
        let own = it.next().unwrap().parse::<f64>().unwrap() / 1e9;
        let row = processes(&s)
            .iter()
            .find(|p| p["pid"].as_u64() == Some(opid))
            .unwrap_or_else(|| panic!("orphan {opid} not in the profile"));
        let cpu = num(row, "cpu_s");
        assert!(
            (cpu - own).abs() <= 0.02 * own + 0.003,
            "orphan {opid}: {cpu} vs {own}"
        );
        // Its parent is the child of the target that forked it, which is in the profile.
        let parent = row["ppid"].as_u64().unwrap();
        let pp = processes(&s)
            .iter()
            .find(|p| p["pid"].as_u64() == Some(parent))
            .unwrap_or_else(|| panic!("parent {parent} of orphan {opid} not in the profile"));
        assert_eq!(pp["ppid"].as_u64(), Some(pid as u64));
    }
}

#[test]
fn last_poll_accounting_is_said_and_still_adds_up() {
    let dir = tempdir();
    let exe = compile_c(dir.path(), "burn", BURN_C);
    let script = format!("for i in 1 2 3 4 5; do {} 1 20 0; done", exe.display());
    let r = record(
        dir.path(),
        &["--exit-accounting", "last-poll"],
        &["sh", "-c", &script],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = r.json.unwrap();
    assert_eq!(s["exit_accounting"], "last_poll");
    assert_close(
        "total vs rusage",
        num(&s, "cpu_s"),
        num(&s, "tree_rusage_cpu_s"),
        0.01,
    );
    // perf's records asked for where perf cannot give them: said, and the last poll serves.
    let r = record(
        dir.path(),
        &["--no-stacks", "--exit-accounting", "perf"],
        &["sh", "-c", &script],
    );
    let s = r.json.unwrap();
    assert_eq!(s["exit_accounting"], "last_poll");
    assert!(
        s["notices"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("--exit-accounting perf needs")),
        "{}",
        s["notices"]
    );
    // And the terminal says which source served, in one line.
    let r = run(&[
        "--exit-accounting",
        "last-poll",
        "--",
        exe.to_str().unwrap(),
        "1",
        "5",
        "0",
    ]);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("exits") && l.contains("last poll")),
        "{}",
        r.stderr
    );
}
