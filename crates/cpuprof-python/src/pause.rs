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

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, Instant};

use cpuprof_model::{Pid, Tid};

/// How long to wait for every thread to stop before reading anyway.
const STOP_TIMEOUT: Duration = Duration::from_millis(20);

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
pub fn pause(pid: Pid) -> Option<Paused> {
    let states = thread_states(pid);
    if states.iter().all(|&(_, s)| is_stopped(s)) {
        return None;
    }
    let running = states
        .iter()
        .filter(|&&(_, s)| s == 'R')
        .map(|&(t, _)| t)
        .collect();
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

/// Every thread of `pid` and its state letter.
fn thread_states(pid: Pid) -> Vec<(Tid, char)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_string_lossy().parse::<Tid>().ok()?;
            let stat = fs::read_to_string(t.path().join("stat")).ok()?;
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some((tid, state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills the child when the test ends, passed or failed: a leaked busy loop would hold a
    /// core (and the test runner's output pipe) forever.
    struct Busy(std::process::Child);

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
        let child = Busy(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("spawn sh"),
        );
        let pid = child.0.id();
        // Wait until the shell is in its loop (right after the spawn it may still be exec'ing).
        assert!(wait_until(|| thread_states(pid)
            .iter()
            .any(|&(_, s)| s == 'R')));
        // Whether a thread is runnable is one snapshot of its state: on a loaded machine the
        // busy shell can be caught in a page fault. Every pause must stop it and every drop
        // continue it; within a few tries one pause must see it running.
        let mut seen_running = false;
        for _ in 0..20 {
            let p = pause(pid).expect("paused");
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
}
