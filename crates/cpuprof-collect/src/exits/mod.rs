//! Every task's final figures at its exit, from the kernel's own exit accounting.
//!
//! The poller reads each thread's counters once an interval, so a task loses what it did
//! after its last poll, and a task shorter than an interval is never read at all. The kernel
//! knows each task's figures when it exits, and says so to whoever listens:
//!
//! - [`taskstats`]: per task, exact CPU and run-queue wait (ns), context switches, elapsed
//!   time, its process and parent;
//! - [`proc_events`]: every fork, exec and exit with the kernel's timestamp, which is how the
//!   [`ExitWatcher`] knows which tasks are the target's (a fork from a member makes a member,
//!   before the child runs: a 5 ms child and an orphan re-parented to init both stay in the
//!   tree), when a task started and ended, and when to read a new command line.
//!
//! Both need `CAP_NET_ADMIN`, and exact CPU needs delay accounting on. Where any of it is
//! refused, [`ExitWatcher::open`] says why in one line and the recording falls back to perf's
//! switch and exit records when perf sees every switch
//! ([`cpuprof_model::ExitAccounting::PerfSwitches`]), else to the poller's last reading of
//! each task ([`cpuprof_model::ExitAccounting::LastPoll`]).
//!
//! The listeners are registered before a launched target is released, so its first task is
//! covered; a taskstats notification comes before the exit event of the same task and both
//! before the task's parent can reap it, so when the poller has seen the target reaped, one
//! last drain has every exit of the recording.

pub mod proc_events;
pub mod taskstats;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use cpuprof_model::{Event, Pid, RunState, ThreadPoint, Tid};

use crate::clock::monotonic_ns;
use crate::netlink::wait_readable;
use crate::procfs::cmdline;
use crate::tree::LiveTree;
use proc_events::ProcEvent;
use taskstats::{DelayAccounting, TaskStats};

/// How long a taskstats notification waits for the exit event that gives its exact time.
const EXIT_EVENT_WAIT_NS: u64 = 20_000_000;
/// How long the thread sleeps when no event comes (it wakes at once for one).
const IDLE_WAIT_MS: i32 = 50;

/// Listens to the kernel's exit accounting and sends [`Event::TaskExit`] for each task of the
/// target that ends.
#[derive(Debug)]
pub struct ExitWatcher {
    stats: taskstats::Listener,
    events: proc_events::Listener,
    delay: DelayAccounting,
    tree: LiveTree,
    members: HashSet<Pid>,
    forked_at: HashMap<Tid, u64>,
    exited_at: HashMap<Tid, u64>,
    pending: Vec<(u64, TaskStats)>,
    dropped: u64,
    out: Vec<Event>,
}

impl ExitWatcher {
    /// Starts listening, following `root` and the processes of `tree`. The error is the
    /// start of a one-line notice (what was refused, and what to do), which the caller ends
    /// with where the figures come from instead.
    pub fn open(root: Pid, tree: LiveTree) -> Result<ExitWatcher, String> {
        let why = |what: &str, e: std::io::Error| {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (it needs CAP_NET_ADMIN: run cpuprof as root)"
                }
                _ => "",
            };
            format!("no exact figures of tasks at their exit: {what}: {e}{hint}")
        };
        // Forks first: a task must be known to be the target's before it can exit.
        let events =
            proc_events::Listener::subscribe().map_err(|e| why("process events refused", e))?;
        let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "0".into());
        let stats =
            taskstats::Listener::register(&cpus).map_err(|e| why("taskstats refused", e))?;
        let delay = DelayAccounting::enable();
        if !delay.on {
            return Err(
                "no exact figures of tasks at their exit: taskstats needs delay \
                        accounting (sudo sysctl kernel.task_delayacct=1)"
                    .into(),
            );
        }
        let mut members: HashSet<Pid> = tree.processes().into_iter().collect();
        members.insert(root);
        Ok(ExitWatcher {
            stats,
            events,
            delay,
            tree,
            members,
            forked_at: HashMap::new(),
            exited_at: HashMap::new(),
            pending: Vec::new(),
            dropped: 0,
            out: Vec::new(),
        })
    }

    /// cpuprof turned delay accounting on for this recording (it is turned off again when
    /// the watcher ends).
    pub fn enabled_delay_accounting(&self) -> bool {
        self.delay.enabled_here
    }

    /// Runs on its own thread until `stop` is set, then drains what the kernel already sent.
    pub fn spawn(
        self,
        tx: Sender<Event>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("cpuprof-exits".into())
            .spawn(move || self.run(tx, stop))
    }

    fn run(mut self, tx: Sender<Event>, stop: Arc<AtomicBool>) {
        let fds = [self.events.fd(), self.stats.fd()];
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if !stopping {
                // An error here (none is expected) only makes the loop a timed one.
                // At once: an exec's command line must be read before the process is gone
                // (letting a burst gather for 2 ms halved this thread's CPU on 300 processes
                // of 1 ms but lost 4 in 5 of their command lines).
                let _ = wait_readable(&fds, IDLE_WAIT_MS);
            }
            self.drain(monotonic_ns(), stopping);
            if !self.out.is_empty() {
                let _ = tx.send(Event::Batch(std::mem::take(&mut self.out)));
            }
            if stopping {
                break;
            }
        }
        if self.dropped > 0 {
            let _ = tx.send(Event::Notice(format!(
                "the kernel dropped exit notifications {} times (its buffer overflowed): some \
                 tasks that ended are missing or counted from their last poll",
                self.dropped
            )));
        }
    }

    /// Takes in every waiting event and notification; sends the exits that are complete
    /// (all of them when `all`).
    fn drain(&mut self, now: u64, all: bool) {
        let mut events = Vec::new();
        self.dropped += self.events.drain(|e| events.push(e));
        for e in events {
            self.on_event(e);
        }
        let (mut stats, delay) = (Vec::new(), self.delay.on);
        self.dropped += self.stats.drain(delay, |s| stats.push(s));
        for s in stats {
            if self.is_member(s.tgid) {
                self.pending.push((now, s));
            }
        }
        // Events that came after the notifications of the same drain.
        let mut late = Vec::new();
        self.dropped += self.events.drain(|e| late.push(e));
        for e in late {
            self.on_event(e);
        }
        let pending = std::mem::take(&mut self.pending);
        for (received, s) in pending {
            let ready = all
                || self.exited_at.contains_key(&s.tid)
                || now.saturating_sub(received) >= EXIT_EVENT_WAIT_NS;
            if ready {
                let e = self.task_exit(received, s);
                self.out.push(e);
            } else {
                self.pending.push((received, s));
            }
        }
    }

    fn is_member(&self, pid: Pid) -> bool {
        self.members.contains(&pid) || self.tree.contains(pid)
    }

    fn on_event(&mut self, e: ProcEvent) {
        match e {
            ProcEvent::Fork {
                t,
                parent_pid,
                parent_tid,
                child_pid,
                child_tid,
            } => {
                if child_pid != child_tid {
                    // A new thread.
                    if self.is_member(child_pid) {
                        self.forked_at.insert(child_tid, t);
                    }
                } else if self.is_member(parent_pid) {
                    self.members.insert(child_pid);
                    self.tree.announce(child_pid);
                    self.forked_at.insert(child_tid, t);
                    self.out.push(Event::Forked {
                        t,
                        pid: child_pid,
                        ppid: parent_pid,
                        parent_tid,
                    });
                } else {
                    // A pid that was the target's once, now reused by someone else's child.
                    self.members.remove(&child_pid);
                }
            }
            ProcEvent::Exec { t, pid } if self.is_member(pid) => {
                // Read at once: a process that lives 5 ms is gone before the next poll. Only
                // the command line: its name comes with its exit, its executable from a poll.
                let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| cmdline::parse(&b))
                    .unwrap_or_default();
                if !command.is_empty() {
                    self.out.push(Event::Exec {
                        t,
                        pid,
                        comm: String::new(),
                        command,
                        exe: None,
                    });
                }
            }
            ProcEvent::Exec { .. } => {}
            ProcEvent::Exit { t, pid, tid } => {
                if self.is_member(pid) {
                    self.exited_at.insert(tid, t);
                }
            }
        }
    }

    /// The event for one task's notification: its exit time is the exit event's (else when
    /// the notification came), its start the fork event's (else its exit less its elapsed
    /// time).
    fn task_exit(&mut self, received: u64, s: TaskStats) -> Event {
        let end = self.exited_at.remove(&s.tid).unwrap_or(received);
        let start = self
            .forked_at
            .remove(&s.tid)
            .unwrap_or(end.saturating_sub(s.elapsed_ns));
        Event::TaskExit {
            pid: s.tgid,
            tid: s.tid,
            ppid: s.ppid,
            name: s.comm,
            start_t: start,
            point: ThreadPoint {
                t: end,
                cpu_ns: s.cpu_ns.unwrap_or(s.user_ns + s.sys_ns),
                runq_ns: s.runq_ns.unwrap_or(0),
                user_ns: s.user_ns,
                sys_ns: s.sys_ns,
                state: RunState::Dead,
                vcsw: s.vcsw,
                ivcsw: s.ivcsw,
            },
        }
    }
}
