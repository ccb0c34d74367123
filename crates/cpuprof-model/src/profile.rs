//! The profile: what one recording measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sched::SchedBin;
use crate::stacks::{StackId, StackTable};
use crate::{Ns, Pid, Tid};

/// A recording: the target, the machine, every process and thread, stacks and scheduler events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    /// How and when the recording was made, and how the target ended.
    pub meta: Meta,
    /// The CPU budget the target had.
    pub machine: Machine,
    /// Every process seen, in order of first sight.
    pub processes: Vec<Process>,
    /// Interned frames and stacks referenced by samples.
    pub stacks: StackTable,
    /// Stack samples (perf `cpu-clock`: each stands for `1 / meta.sample_rate_hz` s of CPU),
    /// sorted by time. For Python threads the stack is the merged Python + native stack.
    pub samples: Vec<Sample>,
    /// Python stacks as read by the Python sampler, sorted by time.
    pub python_samples: Vec<PythonSample>,
    /// One-line notices for the user (perf refused, a Python process unreadable, ...).
    pub notices: Vec<String>,
}

/// How the recording was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// The command run (launch mode) or the target's command line (attach mode).
    pub command: Vec<String>,
    /// The root process of the target tree.
    pub pid: Pid,
    /// True when cpuprof attached to a running process (`--pid`).
    pub attached: bool,
    /// Wall-clock start of the recording, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// `CLOCK_MONOTONIC` at the start of the recording; all [`Ns`] are relative to it.
    pub clock_origin_ns: u64,
    /// Length of the recording (the target's wall time in launch mode).
    pub wall_ns: Ns,
    /// The target's exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that killed the target, if one did.
    pub signal: Option<i32>,
    /// procfs polling interval.
    pub interval_ns: Ns,
    /// Width of the threads' [`SchedBin`]s (context switches aggregated), ns.
    #[serde(default)]
    pub sched_bin_ns: u64,
    /// perf sampling rate, when stacks were sampled.
    pub sample_rate_hz: Option<u32>,
    /// Samples the kernel dropped (ring buffer full).
    pub lost_samples: u64,
    /// Kernel's accounting of the whole reaped tree (`wait4` rusage), launch mode only.
    pub tree_rusage: Option<CpuTimes>,
    /// Version of cpuprof that recorded.
    pub cpuprof_version: String,
    /// cpuprof's own CPU time while recording (all its threads, `getrusage(RUSAGE_SELF)` when
    /// the recording ended): what watching cost.
    #[serde(default)]
    pub recorder_cpu: Option<CpuTimes>,
    /// cpuprof's largest resident set while recording, KiB (`ru_maxrss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorder_max_rss_kb: Option<u64>,
    /// Where the final figures of tasks that ended come from.
    #[serde(default)]
    pub exit_accounting: ExitAccounting,
    /// CPU the kernel's rusage of the tree holds beyond every task's exit figures: what
    /// processes spent after their exit figures were taken (freeing their memory and files),
    /// which no task's row can show. Part of [`Profile::cpu`] (as system time), so that the
    /// tree's total is the kernel's. Launch mode with exact exit accounting only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_teardown_ns: Option<u64>,
}

/// The source of a task's figures at its exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitAccounting {
    /// The kernel's exit notifications (taskstats with delay accounting, and the process
    /// events connector): every task's exact CPU, run-queue wait, start and end, however
    /// short it lived.
    Taskstats,
    /// perf's context-switch and exit records (when taskstats is refused): every on-CPU
    /// interval of a task from its first switch-in to its exit, which add up to its CPU; its
    /// run-queue wait counts the waits after preemptions only (not after wake-ups).
    PerfSwitches,
    /// The last poll before the task vanished: up to one interval of its CPU is missing
    /// from its row (it shows in its parent's, from the kernel's child counters).
    #[default]
    LastPoll,
}

impl ExitAccounting {
    /// Every task's final figures are its own (not the last poll's).
    pub fn is_exact(self) -> bool {
        self != ExitAccounting::LastPoll
    }

    /// Its name in the summary JSON and the terminal.
    pub fn name(self) -> &'static str {
        match self {
            ExitAccounting::Taskstats => "taskstats",
            ExitAccounting::PerfSwitches => "perf_switches",
            ExitAccounting::LastPoll => "last_poll",
        }
    }
}

impl Meta {
    /// Metadata for a recording of `command`, other fields defaulted.
    pub fn new(command: Vec<String>) -> Self {
        Meta {
            command,
            ..Default::default()
        }
    }
}

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTimes {
    /// User-mode CPU time, ns.
    pub user_ns: u64,
    /// Kernel-mode CPU time, ns.
    pub sys_ns: u64,
}

impl CpuTimes {
    /// User + system.
    pub fn total_ns(&self) -> u64 {
        self.user_ns.saturating_add(self.sys_ns)
    }
}

/// The machine and the share of it the target may use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub online_cpus: u32,
    /// CPUs in the target's affinity mask.
    pub affinity_cpus: u32,
    /// The target's cgroup and its CPU quota, when it has one.
    pub cgroup: Option<CgroupInfo>,
    /// `uname -r`.
    #[serde(default)]
    pub kernel: String,
    /// CPU model name from `/proc/cpuinfo`.
    #[serde(default)]
    pub cpu_model: String,
}

impl Machine {
    /// The quota in CPUs, if the cgroup sets one.
    pub fn quota_cpus(&self) -> Option<f64> {
        self.cgroup.as_ref().and_then(|c| c.quota_cpus)
    }

    /// Cores the target may use: the smallest of online CPUs, affinity and cgroup quota.
    pub fn cpu_budget(&self) -> f64 {
        let mut b = f64::from(self.online_cpus.max(1));
        if self.affinity_cpus > 0 {
            b = b.min(f64::from(self.affinity_cpus));
        }
        if let Some(q) = self.quota_cpus() {
            b = b.min(q);
        }
        b
    }
}

/// The target's cgroup and its CPU controller settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupInfo {
    /// 1 or 2.
    pub version: u8,
    /// Path of the cgroup (as in `/proc/PID/cgroup`).
    pub path: String,
    /// quota / period, `None` when unlimited.
    pub quota_cpus: Option<f64>,
    /// Throttling counters at the start of the recording.
    pub throttling_start: Option<Throttling>,
    /// Throttling counters at the end of the recording.
    pub throttling_end: Option<Throttling>,
}

/// CFS bandwidth throttling counters (`cpu.stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    pub nr_periods: u64,
    /// Periods in which the group was throttled.
    pub nr_throttled: u64,
    /// Total time throttled, ns.
    pub throttled_ns: u64,
}

/// One process of the target tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Process {
    /// Process id.
    pub pid: Pid,
    /// Parent process id.
    pub ppid: Pid,
    /// Command line (`/proc/PID/cmdline`), updated after `exec`.
    pub command: Vec<String>,
    /// Executable path (`/proc/PID/exe`), when readable.
    pub exe: Option<String>,
    /// When it was first seen.
    pub start_ns: Ns,
    /// When it ended; `None` if still running at the end of the recording.
    pub end_ns: Option<Ns>,
    /// Largest resident set seen, KiB.
    pub max_rss_kb: u64,
    /// Loaded libraries of interest (BLAS, OpenMP, Python, ...), full paths.
    pub libraries: Vec<String>,
    /// Thread-count variables of its environment (whitelisted names only).
    pub env: BTreeMap<String, String>,
    /// CPU of the whole process including threads that ended unseen (from the process's
    /// own counters or the kernel's rusage when it was reaped). At least the sum of its threads.
    pub cpu: CpuTimes,
    /// Run-queue wait summed over its threads, ns.
    pub runq_ns: u64,
    /// Its threads, in order of first sight.
    pub threads: Vec<Thread>,
}

impl Process {
    /// Total CPU (user + sys), ns.
    pub fn cpu_ns(&self) -> u64 {
        self.cpu.total_ns()
    }

    /// The thread with this tid.
    pub fn thread(&self, tid: Tid) -> Option<&Thread> {
        self.threads.iter().find(|t| t.tid == tid)
    }
}

/// Scheduler state letter of `/proc/.../stat`, reduced to what matters here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// `R`: running or waiting for a core.
    Runnable,
    /// `S`, `I`: sleeping, interruptible.
    #[default]
    Sleeping,
    /// `D`: uninterruptible (usually I/O).
    DiskWait,
    /// `T`, `t`: stopped or traced.
    Stopped,
    /// `Z`, `X`: exiting.
    Dead,
}

impl RunState {
    /// From the state letter of `/proc/PID/task/TID/stat`.
    pub fn from_letter(c: char) -> Self {
        match c {
            'R' => RunState::Runnable,
            'D' => RunState::DiskWait,
            'T' | 't' => RunState::Stopped,
            'Z' | 'X' | 'x' => RunState::Dead,
            _ => RunState::Sleeping,
        }
    }
}

/// One poll of one thread: cumulative counters at time `t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadPoint {
    /// Time of the poll (monotonic ns in events; relative [`Ns`] in a profile).
    pub t: u64,
    /// CPU time so far, ns (`schedstat` field 1).
    pub cpu_ns: u64,
    /// Run-queue wait so far, ns (`schedstat` field 2).
    pub runq_ns: u64,
    /// User time so far, ns (`stat` utime, tick resolution).
    pub user_ns: u64,
    /// System time so far, ns (`stat` stime, tick resolution).
    pub sys_ns: u64,
    /// State at the poll.
    pub state: RunState,
    /// Voluntary context switches so far.
    pub vcsw: u64,
    /// Involuntary context switches (preemptions) so far.
    pub ivcsw: u64,
}

/// One thread and its CPU series.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thread {
    /// Kernel thread id.
    pub tid: Tid,
    /// Name (`comm`, up to 15 bytes, any bytes: escape it when rendering).
    pub name: String,
    /// When it was first seen.
    pub start_ns: Ns,
    /// When it ended; `None` if still running at the end of the recording.
    pub end_ns: Option<Ns>,
    /// CPU time, ns (last known `schedstat`).
    pub cpu_ns: u64,
    /// Run-queue wait, ns.
    pub runq_ns: u64,
    /// User time, ns.
    pub user_ns: u64,
    /// System time, ns.
    pub sys_ns: u64,
    /// Voluntary context switches.
    pub vcsw: u64,
    /// Involuntary context switches.
    pub ivcsw: u64,
    /// Polls, oldest first, times relative to the recording start.
    pub points: Vec<ThreadPoint>,
    /// On/off-CPU time per bin from perf context switches (empty without perf), in bin order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sched: Vec<SchedBin>,
    /// Switch-outs that were preemptions (perf), over the recording.
    #[serde(default)]
    pub preemptions: u64,
    /// Switch-outs that blocked (perf), over the recording.
    #[serde(default)]
    pub blocks: u64,
}

/// A stack sample from perf.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Time.
    pub t: Ns,
    /// Process.
    pub pid: Pid,
    /// Thread.
    pub tid: Tid,
    /// The stack (root first); `None` when nothing could be unwound.
    pub stack: Option<StackId>,
}

/// A Python stack read from a Python thread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PythonSample {
    /// Time.
    pub t: Ns,
    /// Process.
    pub pid: Pid,
    /// Thread (OS thread id).
    pub tid: Tid,
    /// Python frames, root first.
    pub stack: Option<StackId>,
    /// The thread held the GIL.
    pub owns_gil: bool,
    /// py-spy considered the thread active (not idle/waiting).
    pub active: bool,
    /// How many reads this sample stands for: a waiting thread's reads with an unchanged
    /// stack are kept as one sample per second (`IDLE_SAMPLE_NS`), counted here.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repeats: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A context switch of one thread (perf `PERF_RECORD_SWITCH`), as the perf sampler reports it;
/// the builder aggregates them into [`SchedBin`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    /// Time.
    pub t: Ns,
    /// Process.
    pub pid: Pid,
    /// Thread.
    pub tid: Tid,
    /// True: the thread left the CPU; false: it got a CPU.
    pub out: bool,
    /// For a switch-out: the thread was preempted (still runnable, waiting for a core)
    /// rather than blocked.
    pub preempted: bool,
}

/// Longest recording a profile can hold: two years, in ns.
const MAX_WALL_NS: u64 = 2 * 366 * 24 * 3600 * 1_000_000_000;
/// How far after the recording's end a time may be (records drained after the last poll).
const LATE_NS: u64 = 60 * 1_000_000_000;

impl Profile {
    /// The process with this pid.
    pub fn process(&self, pid: Pid) -> Option<&Process> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    /// Total CPU of the tree, ns: its processes' rows and their exit teardown.
    pub fn cpu(&self) -> CpuTimes {
        let mut c = CpuTimes {
            user_ns: 0,
            sys_ns: self.meta.exit_teardown_ns.unwrap_or(0),
        };
        // Saturating: a corrupt or crafted file's counters must not overflow (the fuzz test
        // of tests/robust.rs found it in a debug build).
        for p in &self.processes {
            c.user_ns = c.user_ns.saturating_add(p.cpu.user_ns);
            c.sys_ns = c.sys_ns.saturating_add(p.cpu.sys_ns);
        }
        c
    }

    /// Total run-queue wait of the tree, ns.
    pub fn runq_ns(&self) -> u64 {
        self.processes
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.runq_ns))
    }

    /// Checks what a loaded file could get wrong and the analysis and report index by: every
    /// stack node's frame and parent, every sample's stack and process/thread, every time in
    /// order within the recording. The error names the first bad item.
    pub fn validate(&self) -> Result<(), String> {
        self.stacks.validate()?;
        let nodes = self.stacks.nodes.len();
        let threads: std::collections::HashSet<(Pid, Tid)> = self
            .processes
            .iter()
            .flat_map(|p| p.threads.iter().map(move |t| (p.pid, t.tid)))
            .collect();
        let known = |pid: Pid, tid: Tid| threads.contains(&(pid, tid));
        if self
            .meta
            .sample_rate_hz
            .is_some_and(|r| r == 0 || r > 1_000_000)
        {
            return Err(format!(
                "the sample rate {:?} Hz is impossible",
                self.meta.sample_rate_hz
            ));
        }
        // Times beyond the recording's end (with a margin for records drained after the
        // last poll) would make every timeline as long as they say.
        if self.meta.wall_ns > MAX_WALL_NS {
            return Err(format!(
                "a recording of {} ns is impossible",
                self.meta.wall_ns
            ));
        }
        let end = self.meta.wall_ns + LATE_NS;
        let late = |t: u64, what: &dyn Fn() -> String| {
            if t > end {
                Err(format!("{} at {t} ns, after the recording's end", what()))
            } else {
                Ok(())
            }
        };
        // Native and Python samples alike: a stack that exists, a thread of a process, a time
        // within the recording, in one pass over each.
        let native = self.samples.iter().map(|s| (s.t, s.pid, s.tid, s.stack));
        let python = self
            .python_samples
            .iter()
            .map(|s| (s.t, s.pid, s.tid, s.stack));
        let all = (native.enumerate().map(|(i, x)| ("sample", i, x)))
            .chain(python.enumerate().map(|(i, x)| ("Python sample", i, x)));
        for (kind, i, (t, pid, tid, stack)) in all {
            if stack.is_some_and(|id| id as usize >= nodes) {
                return Err(format!(
                    "{kind} {i} names stack {stack:?}, which does not exist"
                ));
            }
            if !known(pid, tid) {
                return Err(format!("{kind} {i} is of thread {pid}/{tid} of no process"));
            }
            late(t, &|| format!("{kind} {i}"))?;
        }
        let has_bins = self
            .processes
            .iter()
            .any(|p| p.threads.iter().any(|t| !t.sched.is_empty()));
        if has_bins && self.meta.sched_bin_ns == 0 {
            return Err("switch bins of width 0".into());
        }
        for p in &self.processes {
            late(p.start_ns, &|| format!("process {} starts", p.pid))?;
            late(p.end_ns.unwrap_or(0), &|| format!("process {} ends", p.pid))?;
            for t in &p.threads {
                let name = || format!("thread {}/{}", p.pid, t.tid);
                if t.points.windows(2).any(|w| w[1].t < w[0].t) {
                    return Err(format!("{}: its polls are out of order", name()));
                }
                if t.end_ns.is_some_and(|e| e < t.start_ns) {
                    return Err(format!("{} ends before it starts", name()));
                }
                late(t.start_ns, &|| format!("{} starts", name()))?;
                late(t.end_ns.unwrap_or(0), &|| format!("{} ends", name()))?;
                late(t.points.last().map_or(0, |p| p.t), &|| {
                    format!("{} is polled", name())
                })?;
                if t.sched.windows(2).any(|w| w[1].bin <= w[0].bin) {
                    return Err(format!("{}: its switch bins are out of order", name()));
                }
                let last_bin = t.sched.last().map_or(0, |b| u64::from(b.bin));
                late(last_bin.saturating_mul(self.meta.sched_bin_ns), &|| {
                    format!("{}'s switch bins", name())
                })?;
            }
        }
        Ok(())
    }

    /// Number of threads over all processes.
    pub fn thread_count(&self) -> usize {
        self.processes.iter().map(|p| p.threads.len()).sum()
    }
}
