//! Pausing a process while its Python stacks are read (`--python-blocking`).
//!
//! py-spy's own lock `PTRACE_SEIZE`s every thread and waits for its ptrace stop with
//! `waitpid`. Inside cpuprof that cannot work: cpuprof is the parent (and, as subreaper, the
//! adoptive parent) of the target tree and reaps it with `wait4(-1, __WALL)`, and ptrace stops
//! of a tracee are reported to *every* thread of the tracer's process, so the reaper can
//! swallow the stop that py-spy's `waitpid` is waiting for: the sampler blocks forever and the
//! target stays stopped (seen here: `cpuprof --python-blocking` hung).
//!
//! So cpuprof pauses with job control instead: `SIGSTOP`, wait until every thread shows state
//! `T`, read without py-spy's lock, `SIGCONT` (on drop, so an early return cannot leave the
//! target stopped). A job-control stop is reported by `wait` only with `WUNTRACED`, which the
//! reaper does not use. A process that was already stopped is read without touching it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, Instant};

use cpuprof_model::{Pid, Tid};

/// How long to wait for every thread to stop before reading anyway.
const STOP_TIMEOUT: Duration = Duration::from_millis(20);

/// Each thread's CPU time at earlier pauses of one process.
///
/// Stopping and continuing a process wakes its sleeping threads: a thread in `time.sleep`
/// must re-enter its sleep after each `SIGCONT`, and on a busy machine it can still be waiting
/// for a core (state `R`) at the next pause, 10 ms later. So a thread counts as running only if
/// it is runnable *and* used at least a tenth of a CPU over the last 100-200 ms. The window is
/// that long because a computing thread on a busy machine may not get a core for a whole
/// 10 ms tick, while a woken sleeper uses microseconds per tick. Without an earlier snapshot
/// (a new process or thread), being runnable is enough.
#[derive(Debug, Default)]
pub struct RunHistory {
    /// The snapshot compared against (100-200 ms old once the process has been paused that
    /// long) and the one that replaces it.
    older: Option<(Instant, HashMap<Tid, u64>)>,
    newer: Option<(Instant, HashMap<Tid, u64>)>,
}

/// Age at which the newer snapshot becomes the one compared against.
const RUN_WINDOW: Duration = Duration::from_millis(100);

impl RunHistory {
    /// Whether thread `tid`, with `cpu_ns` of CPU now, ran for a tenth of the window.
    fn ran_enough(&self, now: Instant, tid: Tid, cpu_ns: u64) -> bool {
        let Some((at, cpu)) = self.older.as_ref().or(self.newer.as_ref()) else {
            return true;
        };
        match cpu.get(&tid) {
            Some(&c0) => {
                cpu_ns.saturating_sub(c0).saturating_mul(10) >= (now - *at).as_nanos() as u64
            }
            None => true,
        }
    }

    fn record(&mut self, now: Instant, cpu: HashMap<Tid, u64>) {
        match &self.newer {
            Some((at, _)) if now - *at < RUN_WINDOW => {}
            _ => self.older = self.newer.replace((now, cpu)),
        }
    }
}

/// A process stopped by [`pause`]; continued when dropped.
#[derive(Debug)]
pub struct Paused {
    pid: Pid,
    /// Threads that were runnable (`R`) just before the stop: once stopped every thread shows
    /// `T`, so py-spy's own activity check must be redone from this.
    running: HashSet<Tid>,
}

impl Paused {
    /// True when `tid` was runnable just before the stop.
    pub fn was_running(&self, tid: Tid) -> bool {
        self.running.contains(&tid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGCONT) };
    }
}

/// Stops `pid` and waits (briefly) until all its threads are stopped. `None` when the process
/// was already stopped by someone else or could not be signalled.
pub fn pause(pid: Pid, history: &mut RunHistory) -> Option<Paused> {
    let states = thread_states(pid);
    if states.iter().all(|&(_, s)| is_stopped(s)) {
        return None;
    }
    let now = Instant::now();
    let mut cpu = HashMap::with_capacity(states.len());
    let running = states
        .iter()
        .filter_map(|&(t, s)| {
            // Without schedstat (a kernel without CONFIG_SCHED_INFO) the state alone decides.
            let c = thread_cpu_ns(pid, t);
            if let Some(c) = c {
                cpu.insert(t, c);
            }
            let ran = c.is_none_or(|c| history.ran_enough(now, t, c));
            (s == 'R' && ran).then_some(t)
        })
        .collect();
    history.record(now, cpu);
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) } != 0 {
        return None;
    }
    let paused = Paused { pid, running };
    let start = Instant::now();
    while !all_stopped(pid) && start.elapsed() < STOP_TIMEOUT {
        std::thread::yield_now();
    }
    Some(paused)
}

/// True when every thread of `pid` is in state `T` (or the process is gone).
fn all_stopped(pid: Pid) -> bool {
    thread_states(pid).iter().all(|&(_, s)| is_stopped(s))
}

fn is_stopped(state: char) -> bool {
    matches!(state, 'T' | 't' | 'Z' | 'X')
}

/// CPU time of thread `tid` of `pid` so far, ns (`schedstat`).
fn thread_cpu_ns(pid: Pid, tid: Tid) -> Option<u64> {
    let text = fs::read(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    cpuprof_collect::procfs::schedstat::parse(&text).map(|s| s.cpu_ns)
}

/// Every thread of `pid` and its state letter.
fn thread_states(pid: Pid) -> Vec<(Tid, char)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_string_lossy().parse::<Tid>().ok()?;
            let text = fs::read(t.path().join("stat")).ok()?;
            let stat = cpuprof_collect::procfs::stat::parse(
                &text,
                cpuprof_collect::procfs::clock_ticks(),
            )?;
            Some((tid, stat.state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills the child when the test ends, passed or failed: a leaked busy loop would hold a
    /// core (and the test runner's output pipe) forever.
    struct Busy(std::process::Child);

    impl Busy {
        /// Starts `cmd` and waits until one of its threads is in `state` (right after the
        /// spawn it may still be exec'ing).
        fn start(cmd: &str, args: &[&str], state: char) -> Busy {
            let child = Busy(
                std::process::Command::new(cmd)
                    .args(args)
                    .spawn()
                    .expect("spawn the test process"),
            );
            let pid = child.0.id();
            assert!(wait_until(|| thread_states(pid)
                .iter()
                .any(|&(_, s)| s == state)));
            child
        }
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn wait_until(what: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while !what() {
            if start.elapsed() > Duration::from_secs(5) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn stops_and_continues_a_process() {
        let child = Busy::start("sh", &["-c", "while :; do :; done"], 'R');
        let pid = child.0.id();
        // Whether a thread is runnable is one snapshot of its state: on a loaded machine the
        // busy shell can be caught in a page fault. Every pause must stop it and every drop
        // continue it; within a few tries one pause must see it running.
        let mut seen_running = false;
        let mut history = RunHistory::default();
        for _ in 0..20 {
            let p = pause(pid, &mut history).expect("paused");
            assert!(wait_until(|| all_stopped(pid)), "stopped");
            seen_running |= p.was_running(pid);
            drop(p);
            assert!(wait_until(|| !all_stopped(pid)), "continued after drop");
            if seen_running {
                break;
            }
        }
        assert!(seen_running, "the busy shell was never seen running");
    }

    #[test]
    fn a_sleeper_woken_by_the_pauses_is_not_running() {
        let child = Busy::start("sleep", &["5"], 'S');
        let pid = child.0.id();
        let mut history = RunHistory::default();
        for _ in 0..20 {
            let p = pause(pid, &mut history).expect("paused");
            assert!(!p.was_running(pid), "a sleeping process counted as running");
            drop(p);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
