//! What collectors tell the [`ProfileBuilder`](crate::ProfileBuilder).
//!
//! Every collector runs on its own thread and sends events down one channel; only the builder
//! mutates the profile. Times (`t`) are absolute `CLOCK_MONOTONIC` nanoseconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::profile::{CpuTimes, ExitAccounting, Machine, Switch, ThreadPoint};
use crate::stacks::Frame;
use crate::{Pid, Tid};

/// A frame as collectors send it; the builder interns it. Shared: a collector names each
/// distinct frame once and sends the same `Arc` in every sample that has it (a clone of two
/// strings per frame per sample was a third of the perf thread's CPU on a Python pool).
pub type FrameKey = Arc<Frame>;

/// One observation by a collector.
#[derive(Debug, Clone)]
pub enum Event {
    /// A process was seen for the first time.
    ProcessStart {
        /// When.
        t: u64,
        /// Its pid.
        pid: Pid,
        /// Its parent.
        ppid: Pid,
        /// Its command line.
        command: Vec<String>,
        /// Its executable.
        exe: Option<String>,
    },
    /// Latest facts about a process; empty or `None` fields leave what is known unchanged.
    ProcessInfo {
        /// Its pid.
        pid: Pid,
        /// Command line (changes on `exec`).
        command: Option<Vec<String>>,
        /// Executable (changes on `exec`).
        exe: Option<String>,
        /// Loaded libraries of interest (replaces the list when non-empty).
        libraries: Vec<String>,
        /// Whitelisted environment variables (replaces the map when non-empty).
        env: BTreeMap<String, String>,
        /// Resident set size now, KiB.
        rss_kb: u64,
        /// The process's own cumulative CPU (includes threads that already ended).
        cpu: Option<CpuTimes>,
    },
    /// A process ended.
    ProcessEnd {
        /// When.
        t: u64,
        /// Its pid.
        pid: Pid,
        /// Its final CPU (the kernel's rusage when it was reaped), if known.
        cpu: Option<CpuTimes>,
    },
    /// A poll of one thread; the first one for a tid starts the thread.
    ThreadPoint {
        /// Process.
        pid: Pid,
        /// Thread.
        tid: Tid,
        /// Current name.
        name: String,
        /// Counters (with `point.t` absolute).
        point: ThreadPoint,
    },
    /// A thread ended.
    ThreadEnd {
        /// When.
        t: u64,
        /// Process.
        pid: Pid,
        /// Thread.
        tid: Tid,
    },
    /// A native stack sample (perf).
    Sample {
        /// When.
        t: u64,
        /// Process.
        pid: Pid,
        /// Thread.
        tid: Tid,
        /// Frames, root first.
        frames: Vec<FrameKey>,
    },
    /// A Python stack of one thread.
    PythonSample {
        /// When.
        t: u64,
        /// Process.
        pid: Pid,
        /// Thread (OS tid).
        tid: Tid,
        /// Python thread name (`threading.Thread(name=...)`), when known.
        thread_name: Option<String>,
        /// Python frames, root first.
        frames: Vec<FrameKey>,
        /// The thread held the GIL.
        owns_gil: bool,
        /// The thread was active (not idle).
        active: bool,
    },
    /// Context switches in a batch (with `t` absolute): an oversubscribed pool makes ~100 000
    /// a second, one channel message each would cost more than the recording of them.
    Switches(Vec<Switch>),
    /// Several events at once, handled in order: a collector's whole poll in one channel
    /// message, so the receiving thread wakes once per poll rather than once per event.
    Batch(Vec<Event>),
    /// A process of the tree forked (perf's fork record). Processes that end before a poll
    /// sees them are named from this and [`Event::Exec`].
    Forked {
        /// When.
        t: u64,
        /// The new process.
        pid: Pid,
        /// Its parent.
        ppid: Pid,
        /// The parent's thread that forked: the child starts with its name.
        parent_tid: Tid,
    },
    /// A process of the tree called `exec` (perf's comm record, or the process events
    /// connector): its new short name, and its command line when it could be read then.
    Exec {
        /// When (monotonic ns).
        t: u64,
        /// The process.
        pid: Pid,
        /// The program's name, as the kernel keeps it (at most 15 bytes).
        comm: String,
        /// Its new command line (empty when unknown).
        command: Vec<String>,
        /// Its new executable, when known.
        exe: Option<String>,
    },
    /// A task's final figures, from the kernel's exit accounting (taskstats), sent as it
    /// exited: they replace whatever the polls saw of it.
    TaskExit {
        /// Its process.
        pid: Pid,
        /// The task.
        tid: Tid,
        /// Its parent process.
        ppid: Pid,
        /// Its name at exit.
        name: String,
        /// When it started (monotonic ns).
        start_t: u64,
        /// Its counters over its whole life, with `point.t` the exit time (monotonic ns).
        point: ThreadPoint,
    },
    /// The readings of a thread that existed before an attached recording began: the
    /// poller's points start from them, and so must a [`Event::TaskExit`] of that thread.
    ThreadBaseline {
        /// Process.
        pid: Pid,
        /// Thread.
        tid: Tid,
        /// Its counters then.
        base: ThreadPoint,
    },
    /// A thread exited at `t` (perf's exit record: the kernel's time, not a poll's).
    ThreadExited {
        /// When.
        t: u64,
        /// Process.
        pid: Pid,
        /// Thread.
        tid: Tid,
    },
    /// Where the final figures of tasks that ended come from.
    ExitAccounting(ExitAccounting),
    /// The kernel dropped this many samples.
    Lost(u64),
    /// Something the user should know, one line.
    Notice(String),
    /// Updated machine facts (e.g. throttling counters at the end).
    Machine(Machine),
    /// The kernel's rusage of the whole reaped tree (launch mode).
    TreeRusage(CpuTimes),
    /// How the target ended.
    Exit {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if one killed it.
        signal: Option<i32>,
    },
}
