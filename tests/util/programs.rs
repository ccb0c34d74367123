//! C programs the end-to-end tests compile and run, and parsers of what they print.

use serde_json::Value;

/// `burn NTHREADS MS LINGER`: every thread burns MS ms of its own CPU time, prints
/// `tid cpu_ns`, and (LINGER=1) stays alive, idle, until all are done and 200 ms more, so
/// that a poll sees its final counters; the process then sleeps another 300 ms. Finally prints
/// `wall_ns` and `process PID cpu_ns` (its own CPU clock, start-up included).
pub const BURN_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long ms; static int linger; static pthread_barrier_t bar;
static long long now(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static void *burn(void *arg) {
    volatile unsigned long x = 0;
    while (now(CLOCK_THREAD_CPUTIME_ID) < ms * 1000000LL) x++;
    printf("%ld %lld\n", (long)syscall(SYS_gettid), now(CLOCK_THREAD_CPUTIME_ID));
    fflush(stdout);
    if (linger) { pthread_barrier_wait(&bar); usleep(200000); }
    return NULL;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]); ms = atol(argv[2]); linger = atoi(argv[3]);
    long long t0 = now(CLOCK_MONOTONIC);
    pthread_t th[64];
    pthread_barrier_init(&bar, NULL, n);
    for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, burn, NULL);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    if (linger) usleep(300000);
    printf("wall_ns %lld\n", now(CLOCK_MONOTONIC) - t0);
    printf("process %d %lld\n", (int)getpid(), now(CLOCK_PROCESS_CPUTIME_ID));
    return 0;
}
"#;

/// Parses the `tid cpu_ns` lines and the `wall_ns` line of `burn`.
pub fn burn_output(stdout: &str) -> (Vec<(u64, f64)>, f64) {
    let mut threads = Vec::new();
    let mut wall = 0.0;
    for line in stdout.lines() {
        let mut it = line.split_whitespace();
        match (it.next(), it.next()) {
            (Some("wall_ns"), Some(w)) => wall = w.parse::<f64>().unwrap() / 1e9,
            (Some("process"), _) => {}
            (Some(tid), Some(ns)) => {
                threads.push((tid.parse().unwrap(), ns.parse::<f64>().unwrap() / 1e9))
            }
            _ => {}
        }
    }
    (threads, wall)
}

/// The CPU seconds of thread `tid` in a summary.
pub fn thread_cpu(summary: &Value, tid: u64) -> f64 {
    let (_, t) = super::threads(summary)
        .into_iter()
        .find(|(_, t)| t["tid"].as_u64() == Some(tid))
        .unwrap_or_else(|| panic!("thread {tid} not in the summary"));
    super::num(t, "cpu_s")
}

/// The `process PID cpu_ns` lines of `burn` runs: each process's own CPU, seconds, by pid.
pub fn burn_processes(stdout: &str) -> std::collections::HashMap<u64, f64> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("process ")?.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let ns: f64 = it.next()?.parse().ok()?;
            Some((pid, ns / 1e9))
        })
        .collect()
}
