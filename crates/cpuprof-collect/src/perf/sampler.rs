//! The sampler thread: opens the events, drains the ring buffers, unwinds and names each
//! sample, and sends [`Event`]s until the stop flag is set.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpuprof_model::{Event, Frame, FrameKey, FrameKind, Pid, Switch, Tid};
use cpuprof_symbols::{Mapping, Symbolizer};

use super::attr::{self, PerfEventAttr, SamplingAttr};
use super::cpus;
use super::error::PerfError;
use super::members::Members;
use super::on_cpu::OnCpu;
use super::records::{self, Record};
use super::ring::Ring;
use crate::clock::thread_cpu_ns;
use crate::tree::LiveTree;

/// Default sampling rate (per thread, per second of CPU): see docs/stacks.md for the
/// measurement behind it.
pub const DEFAULT_RATE_HZ: u32 = 250;
/// Default bytes of user stack copied per sample: nearly the most a sample record can hold
/// (its size field is 16 bits). Every sample reserves this much ring space whatever the
/// stack's real depth. OpenBLAS keeps a ~16 KiB kernel buffer and ~40 KiB of job arrays on
/// the stack: with 32 KiB, matmul's and Python's main-thread stacks stopped inside OpenBLAS
/// and rarely unwound completely. Deeper stacks are completed from the thread's recent full
/// stacks (see `cpuprof_symbols`).
pub const DEFAULT_STACK_BYTES: u32 = 64_000;
/// Most ring-buffer data pages per CPU (4 KiB pages: 16 MiB, ~250 samples of 64 KB: a
/// quarter second at 1000 Hz while the sampler thread waits for a core).
const RING_PAGES_MAX: usize = 4096;
/// Seconds of records a ring holds at the least while the sampler thread waits for a core (four
/// drain periods). The size is rounded up to a power of two: at the default rate and stack size
/// 0.2 s gives 4 MiB (0.23 s), where 0.25 s gave 8 MiB, which the kernel allocates and clears
/// when the ring is mapped, 1.7 ms a CPU here, before the target may start.
const RING_SECONDS: f64 = 0.2;
/// Switch records per second and CPU the ring makes room for (an oversubscribed OpenBLAS
/// pool yields ~50 000 per second and CPU; a record is 40 bytes).
const RING_SWITCH_BYTES_PER_S: f64 = 2_000_000.0;
/// How long the sampler thread sleeps between drains of the rings. Every wakeup costs the
/// machine a context switch and a timer (a VM exit each on a virtual machine), and may preempt
/// a target thread that others spin on: at 10 ms the sampler woke 100 times a second and used
/// 0.038 CPU s in a 2 s NumPy recording, at 50 ms 0.030 s. Stacks cut by the copy size are still
/// completed from the live thread as often (see `cpuprof_symbols::live_stack`): 540 of 541 and
/// 544 of 544 main-thread samples rooted. The rings hold [`RING_SECONDS`], far more.
const DRAIN_PERIOD: Duration = Duration::from_millis(50);
/// A ring with more than this share of its size unread is drained again at once.
const BEHIND_FRACTION: u64 = 4;
/// How often attach mode looks for new threads in the tree.
const SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// Kernel addresses start here on x86_64.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// Sampler settings.
#[derive(Debug, Clone, Copy)]
pub struct PerfOptions {
    /// Samples per second of CPU time of each thread.
    pub rate_hz: u32,
    /// Bytes of user stack copied with each sample.
    pub stack_bytes: u32,
    /// Record context switches (exact on/off-CPU intervals, preemptions).
    pub context_switches: bool,
    /// Sample with one event per CPU for the whole machine and keep the tree's records
    /// (needs CAP_PERFMON or `perf_event_paranoid` <= 0), falling back to events per task
    /// when that is refused. A per-task event samples a thread only after a whole period of
    /// its own CPU time, so tasks shorter than that are never seen (docs/stacks.md).
    pub machine_wide: bool,
}

impl Default for PerfOptions {
    fn default() -> Self {
        PerfOptions {
            rate_hz: DEFAULT_RATE_HZ,
            stack_bytes: DEFAULT_STACK_BYTES,
            context_switches: true,
            machine_wide: true,
        }
    }
}

/// What to sample.
#[derive(Debug, Clone)]
pub enum PerfTarget {
    /// A launched process, still paused before `exec`: it and everything it starts. Per-task
    /// events are inherited and count from its `exec`.
    Launch(Pid),
    /// Running processes: the tree's processes and their new children. Per-task events are
    /// opened for every thread, and for new threads as the procfs poller finds them.
    Attach(LiveTree),
}

/// What the sampler did, for the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerfStats {
    /// Samples decoded and unwound.
    pub samples: u64,
    /// Frames in those samples.
    pub frames: u64,
    /// Context switches.
    pub switches: u64,
    /// Samples the kernel dropped.
    pub lost: u64,
    /// Threads given their own events (per-task events in attach mode).
    pub threads: u64,
    /// Sampled with one event per CPU for the whole machine (else per task).
    pub machine_wide: bool,
    /// Libraries parsed.
    pub libraries: u64,
    /// Frames found by stack scanning (code without unwind information).
    pub scanned: u64,
    /// Stacks cut by the stack-copy size and completed from the thread's last full stack.
    pub stitched: u64,
    /// Stacks cut by the stack-copy size and completed from the running thread's own stack.
    pub live: u64,
    /// CPU time of the sampler thread, ns.
    pub cpu_ns: u64,
}

/// The perf sampler: open it before the target runs, then [`spawn`](PerfSampler::spawn) it.
pub struct PerfSampler {
    rings: Vec<(u32, Ring)>,
    attr: PerfEventAttr,
    /// Open events by tid (attach) or by the launched pid; per CPU under key 0 when
    /// machine-wide.
    events: HashMap<Tid, Vec<OwnedFd>>,
    /// The tree's processes, when the events see the whole machine.
    members: Option<Members>,
    tree: Option<LiveTree>,
    symbolizer: Symbolizer,
    stats: PerfStats,
    /// A restriction to tell the user once (user-space-only sampling).
    notice: Option<String>,
    /// Switch records of the current drain, sent as one event.
    switches: Vec<Switch>,
    /// Samples and other events of the current drain, sent as one batch.
    outbox: Vec<Event>,
    /// Per ring (CPU): the task that last switched in on it.
    on_cpu: OnCpu,
    /// Switch records are on.
    context_switches: bool,
    /// The leaf of a sample taken in the kernel (or of one with no user stack).
    kernel_frame: FrameKey,
}

impl PerfSampler {
    /// Opens the ring buffers and the events. `Err` means no perf at all: turn it into one
    /// `Event::Notice` ([`PerfError::notice`]) and record procfs data only.
    pub fn open(target: PerfTarget, opts: &PerfOptions) -> Result<PerfSampler, PerfError> {
        if disabled_by_env() {
            return Err(PerfError::Disabled);
        }
        let target_pid = match &target {
            PerfTarget::Launch(pid) => *pid,
            PerfTarget::Attach(tree) => tree.processes().first().copied().unwrap_or(0),
        };
        // Unprivileged users under perf_event_paranoid = 2 may only sample user space: retry
        // that way and say so, rather than giving up on stacks.
        let cpus = cpus::online();
        let first = cpus.first().copied().unwrap_or(0) as i32;
        let user_only = match attr::open(&PerfEventAttr::ring_owner(), 0, first) {
            Ok(_) => false,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                attr::open(&PerfEventAttr::ring_owner().user_only(), 0, first).is_ok()
            }
            Err(_) => false,
        };
        let restrict = |a: PerfEventAttr| if user_only { a.user_only() } else { a };
        let mut rings = Vec::new();
        for cpu in cpus {
            let owner = attr::open(&restrict(PerfEventAttr::ring_owner()), 0, cpu as i32).map_err(
                |source| PerfError::Refused {
                    pid: target_pid,
                    source,
                },
            )?;
            rings.push((cpu, map_ring(owner, cpu, ring_pages(opts))?));
        }
        let launch = matches!(target, PerfTarget::Launch(_));
        let sampling = SamplingAttr {
            period_ns: super::period::period_ns(opts.rate_hz),
            stack_bytes: opts.stack_bytes,
            inherit: launch,
            enable_on_exec: launch,
            context_switches: opts.context_switches,
        };
        // A CPU-wide event counts from now: the launched child is paused before `exec`.
        let attr_cpu_wide = restrict(PerfEventAttr::sampling(SamplingAttr {
            inherit: false,
            enable_on_exec: false,
            ..sampling
        }));
        let mut sampler = PerfSampler {
            rings,
            attr: restrict(PerfEventAttr::sampling(sampling)),
            notice: user_only.then(|| {
                // The value read now, not the one this rule is usually met with.
                let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into());
                format!(
                    "native stacks cover user-space CPU only (perf_event_paranoid = {paranoid} \
                     without CAP_PERFMON): time in the kernel is not sampled; `sudo sysctl \
                     kernel.perf_event_paranoid=1` samples it too"
                )
            }),
            events: HashMap::new(),
            members: None,
            tree: None,
            symbolizer: Symbolizer::new(),
            stats: PerfStats::default(),
            switches: Vec::new(),
            outbox: Vec::new(),
            on_cpu: OnCpu::default(),
            context_switches: opts.context_switches,
            kernel_frame: Arc::new(Frame {
                kind: FrameKind::Kernel,
                name: "[kernel]".into(),
                module: None,
                line: None,
                short_file: None,
            }),
        };
        if opts.machine_wide && sampler.open_machine_wide(&attr_cpu_wide).is_ok() {
            sampler.members = Some(Members::new(match &target {
                PerfTarget::Launch(pid) => vec![*pid],
                PerfTarget::Attach(tree) => tree.processes(),
            }));
            if let PerfTarget::Attach(tree) = target {
                sampler.tree = Some(tree);
            }
            sampler.stats.machine_wide = true;
            return Ok(sampler);
        }
        match target {
            PerfTarget::Launch(pid) => sampler.open_task(pid).map_err(|e| match e {
                e if e.raw_os_error() == Some(libc::ESRCH) => PerfError::TargetGone(pid),
                source => PerfError::Refused { pid, source },
            })?,
            PerfTarget::Attach(tree) => {
                let threads = tree.threads();
                let mut refused = None;
                for &(_, tid) in &threads {
                    if let Err(e) = sampler.open_task(tid) {
                        if e.raw_os_error() != Some(libc::ESRCH) {
                            refused.get_or_insert(e);
                        }
                    }
                }
                if sampler.events.is_empty() && !threads.is_empty() {
                    return Err(match refused {
                        Some(source) => PerfError::Refused {
                            pid: target_pid,
                            source,
                        },
                        None => PerfError::TargetGone(target_pid),
                    });
                }
                sampler.tree = Some(tree);
            }
        }
        Ok(sampler)
    }

    /// Whether its records give every task's on-CPU intervals from its first switch-in to its
    /// exit: one event per CPU (forks followed from the first task) with switch records.
    pub fn sees_every_switch(&self) -> bool {
        self.stats.machine_wide && self.context_switches
    }

    /// Stacks of these processes are not continued past CPython's frame evaluation: the Python
    /// sampler records their Python frames ([`cpuprof_symbols::InterpretedPids`]).
    pub fn leave_interpreter_to(&mut self, pids: cpuprof_symbols::InterpretedPids) {
        self.symbolizer.leave_interpreter_to(pids);
    }

    /// Runs [`run`](PerfSampler::run) on a new thread.
    pub fn spawn(self, tx: Sender<Event>, stop: Arc<AtomicBool>) -> JoinHandle<PerfStats> {
        std::thread::Builder::new()
            .name("cpuprof-perf".into())
            .spawn(move || self.run(&tx, &stop))
            .expect("spawning the perf sampler thread")
    }

    /// Drains the ring buffers until `stop` is set, then once more; returns the counters.
    pub fn run(mut self, tx: &Sender<Event>, stop: &AtomicBool) -> PerfStats {
        if let Some(n) = self.notice.take() {
            let _ = tx.send(Event::Notice(n));
        }
        let mut last_scan = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let busy = self.drain(tx);
            if stopping {
                break;
            }
            if self.tree.is_some() && last_scan.elapsed() >= SCAN_INTERVAL {
                self.scan_tree();
                last_scan = Instant::now();
            }
            if !busy {
                // Parked rather than asleep: the recorder unparks this thread when the
                // recording stops, so the last drain does not wait out the period.
                std::thread::park_timeout(DRAIN_PERIOD);
            }
        }
        self.events.clear();
        let s = self.symbolizer.stats();
        self.stats.libraries = s.libraries;
        self.stats.scanned = s.scans;
        self.stats.stitched = s.stitched;
        self.stats.live = s.live;
        self.stats.cpu_ns = thread_cpu_ns();
        self.stats
    }

    /// Opens `attr` on every CPU for `pid` (-1: every task), each writing into its CPU's ring.
    fn open_per_cpu(&self, attr: &PerfEventAttr, pid: i32) -> std::io::Result<Vec<OwnedFd>> {
        let mut fds = Vec::with_capacity(self.rings.len());
        for (cpu, ring) in &self.rings {
            let fd = attr::open(attr, pid, *cpu as i32)?;
            attr::set_output(&fd, ring.owner())?;
            fds.push(fd);
        }
        Ok(fds)
    }

    /// Opens one event per CPU for every task on it, their timers staggered: CPU k's first
    /// sample comes k/n of a period after CPU 0's.
    ///
    /// Opened together, the CPUs' `cpu-clock` timers fire within microseconds of each other
    /// for the whole recording, and a sample's own cost (the interrupt, the stack copy) delays
    /// the thread it lands on just before the other CPUs sample theirs. A partner that waits
    /// for that thread is then caught waiting every time: in a 2-thread LLVM OpenMP program of
    /// 10 µs regions the main thread was sampled at the join barrier 186 times out of 193
    /// where per-task events (and `perf record`) put half its samples in the region's work.
    /// Spread over the period, one CPU's sample is long over when the next CPU takes its own.
    ///
    /// All of them are started before the target runs: each carries its CPU's fork, comm and
    /// mmap records too, and a fork missed on a CPU whose event was still stopped leaves the
    /// child out of the tree (a 0.8 s matmul worker had no sample at all when the later CPUs
    /// were started after the target: that cost the target's start one period at most).
    fn open_machine_wide(&mut self, attr: &PerfEventAttr) -> std::io::Result<()> {
        let fds = self.open_per_cpu(&attr.disabled(), -1)?;
        let period = Duration::from_nanos(attr.period_ns());
        let start = Instant::now();
        for (k, fd) in fds.iter().enumerate() {
            let due = start + period.mul_f64(k as f64 / fds.len() as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            attr::enable(fd)?;
        }
        self.events.insert(0, fds);
        Ok(())
    }

    /// Opens one event per CPU for task `tid`.
    fn open_task(&mut self, tid: Tid) -> std::io::Result<()> {
        let fds = self.open_per_cpu(&self.attr, tid as i32)?;
        self.events.insert(tid, fds);
        self.stats.threads += 1;
        Ok(())
    }

    /// Attach mode: events for threads that appeared, none for threads that left.
    fn scan_tree(&mut self) {
        let Some(tree) = &self.tree else { return };
        if let Some(members) = &mut self.members {
            members.extend(tree.processes());
            return;
        }
        let now: BTreeSet<Tid> = tree.threads().into_iter().map(|(_, t)| t).collect();
        self.events.retain(|tid, _| now.contains(tid));
        for tid in now {
            if !self.events.contains_key(&tid) {
                // A thread that ended meanwhile (ESRCH) is simply not sampled.
                let _ = self.open_task(tid);
            }
        }
    }

    /// Reads every ring; true when a ring was a quarter full (read again at once).
    fn drain(&mut self, tx: &Sender<Event>) -> bool {
        let mut rings = std::mem::take(&mut self.rings);
        let mut busy = false;
        // Every ring up to one moment, so that forks are known before their children's
        // records on other CPUs are read (see `members`).
        let heads: Vec<u64> = rings.iter().map(|(_, r)| r.head()).collect();
        if let Some(members) = &mut self.members {
            for ((_, ring), &head) in rings.iter_mut().zip(&heads) {
                ring.scan(head, |bytes| {
                    if let Some((ppid, pid)) = records::fork(bytes) {
                        members.fork(ppid, pid);
                    }
                });
            }
        }
        for (i, ((_, ring), &head)) in rings.iter_mut().zip(&heads).enumerate() {
            busy |= ring.pending() > ring.size() / BEHIND_FRACTION;
            ring.drain_to(head, |bytes| {
                if let Some(r) = records::parse(bytes) {
                    let r = self.on_cpu.resolve(i, r);
                    self.handle(r);
                }
            });
        }
        self.rings = rings;
        if let Some(members) = &mut self.members {
            members.end_drain();
        }
        // One message per drain: the receiving thread wakes once, not once per sample.
        if !self.switches.is_empty() {
            let switches = std::mem::take(&mut self.switches);
            self.outbox.push(Event::Switches(switches));
        }
        if !self.outbox.is_empty() {
            let _ = tx.send(Event::Batch(std::mem::take(&mut self.outbox)));
        }
        busy
    }

    /// True when `pid`'s records are the target's (always, for per-task events).
    fn keeps(&self, pid: Pid) -> bool {
        self.members.as_ref().is_none_or(|m| m.contains(pid))
    }

    fn handle(&mut self, record: Record<'_>) {
        let pid = match record {
            Record::Sample { pid, .. }
            | Record::Mmap { pid, .. }
            | Record::Comm { pid, .. }
            | Record::Exit { pid, .. }
            | Record::Switch { pid, .. } => pid,
            Record::Fork { ppid, .. } => ppid,
            Record::Lost(_) | Record::Other(_) => 0,
        };
        if pid != 0 && !self.keeps(pid) {
            return;
        }
        match record {
            Record::Sample {
                ip,
                pid,
                tid,
                time,
                regs,
                stack,
            } => {
                if !is_task(pid, tid) {
                    return;
                }
                let mut frames = match regs {
                    Some(regs) => self.symbolizer.unwind(pid, tid, regs, stack),
                    None => Vec::new(),
                };
                if ip >= KERNEL_START || frames.is_empty() {
                    frames.push(self.kernel_frame.clone());
                }
                self.stats.samples += 1;
                self.stats.frames += frames.len() as u64;
                self.outbox.push(Event::Sample {
                    t: time,
                    pid,
                    tid,
                    frames,
                });
            }
            Record::Mmap {
                pid,
                start,
                len,
                pgoff,
                dev,
                inode,
                exec,
                path,
            } => {
                let (path, deleted) = match path.strip_suffix(" (deleted)") {
                    Some(p) => (p.to_string(), true),
                    None => (path, false),
                };
                self.symbolizer.add_mapping(
                    pid,
                    Mapping {
                        start,
                        end: start.saturating_add(len),
                        offset: pgoff,
                        exec,
                        dev,
                        inode,
                        path,
                        deleted,
                    },
                );
            }
            Record::Comm {
                pid,
                exec: true,
                comm,
                time,
                ..
            } => {
                self.symbolizer.exec(pid);
                self.outbox.push(Event::Exec {
                    t: time,
                    pid,
                    comm,
                    command: Vec::new(),
                    exe: None,
                });
            }
            Record::Fork {
                pid,
                ppid,
                ptid,
                time,
            } if pid != ppid => {
                self.symbolizer.fork(ppid, pid);
                self.outbox.push(Event::Forked {
                    t: time,
                    pid,
                    ppid,
                    parent_tid: ptid,
                });
            }
            Record::Exit { pid, tid, time } => {
                if is_task(pid, tid) {
                    self.outbox.push(Event::ThreadExited { t: time, pid, tid });
                }
                self.symbolizer.thread_exit(tid);
                if pid == tid {
                    self.symbolizer.exit(pid);
                    if let Some(m) = &mut self.members {
                        m.exit(pid);
                    }
                }
            }
            Record::Switch {
                pid,
                tid,
                time,
                out,
                preempted,
            } => {
                if !is_task(pid, tid) {
                    return;
                }
                self.stats.switches += 1;
                self.switches.push(Switch {
                    t: time,
                    pid,
                    tid,
                    out,
                    preempted,
                });
            }
            Record::Lost(n) => {
                self.stats.lost += n;
                self.outbox.push(Event::Lost(n));
            }
            _ => {}
        }
    }
}

/// False for the idle task (pid 0) and for a thread that has already let go of its tid: the
/// kernel reports `-1` for the last switch-out of an exiting thread, which made a thread
/// 4294967295 with a few switches in the summary's table.
fn is_task(pid: Pid, tid: Tid) -> bool {
    pid != 0 && pid != u32::MAX && tid != u32::MAX
}

/// Data pages per ring for `opts`: [`RING_SECONDS`] of samples and switches, a power of two.
/// The kernel allocates and clears every page when the ring is mapped, and frees them at the
/// end: a 16 MiB ring per CPU cost ~5 ms of each recording's wall time.
fn ring_pages(opts: &PerfOptions) -> usize {
    let per_s =
        f64::from(opts.rate_hz) * f64::from(opts.stack_bytes + 256) + RING_SWITCH_BYTES_PER_S;
    let pages = (per_s * RING_SECONDS / 4096.0).ceil() as usize;
    pages.next_power_of_two().clamp(8, RING_PAGES_MAX)
}

/// Maps a ring buffer, halving its size while the kernel refuses (locked-memory limits of
/// unprivileged users).
fn map_ring(owner: OwnedFd, cpu: u32, mut pages: usize) -> Result<Ring, PerfError> {
    loop {
        // `Ring::map` consumes the fd on success only; retry with a duplicate.
        let fd = owner
            .try_clone()
            .map_err(|source| PerfError::Mmap { cpu, source })?;
        match Ring::map(fd, pages) {
            Ok(r) => return Ok(r),
            Err(e) if pages > 8 && matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOMEM)) => {
                pages /= 2;
            }
            Err(source) => return Err(PerfError::Mmap { cpu, source }),
        }
    }
}

/// `CPUPROF_DISABLE_PERF` set (not empty, not 0): record as if perf were refused.
pub(super) fn disabled_by_env() -> bool {
    std::env::var_os("CPUPROF_DISABLE_PERF").is_some_and(|v| !v.is_empty() && v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_dead_tasks_are_not_threads() {
        assert!(is_task(10, 11));
        assert!(!is_task(0, 0));
        assert!(!is_task(10, u32::MAX));
        assert!(!is_task(u32::MAX, u32::MAX));
    }

    #[test]
    fn rings_hold_a_fifth_of_a_second_up_to_16_mib() {
        let at = |rate_hz| {
            ring_pages(&PerfOptions {
                rate_hz,
                ..Default::default()
            })
        };
        assert_eq!(at(DEFAULT_RATE_HZ), 1024); // 4 MiB: 0.2 s is 3.7 MB
        assert_eq!(at(1000), 4096);
        assert_eq!(at(10_000), RING_PAGES_MAX);
        assert_eq!(at(1), 128); // the switch records alone: 512 KiB (0.2 s is 0.41 MB)
    }
}
