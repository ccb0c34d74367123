//! The Python sampler thread.
//!
//! Every tick it walks the pids of the live process tree, decides once per program image
//! (executable + command line, [`detect`](crate::detect)) whether a process is a Python
//! interpreter, opens a [`Reader`] for each one (cpuprof's walker, py-spy beside it; a forked
//! worker gets one from its parent's) and reads every thread's Python stack, publishing the
//! processes it reads to the native unwinder ([`PythonSampler::publishing_to`]).
//! A known process costs one `pread` of its main thread's `stat` per tick (kept open): an
//! `exec` shows there as new code and stack addresses, and only then are its executable and
//! command line read again.
//!
//! Failure handling: a freshly started interpreter cannot be read until it has initialised, so
//! opening is retried every tick for 300 ms, then every 100 ms until [`OPEN_GRACE`]; a process
//! that exits is dropped quietly (its samples so far are kept); a live process that stays
//! unreadable (a Python version py-spy does not know, a permission refusal) produces exactly one
//! [`Event::Notice`] and is skipped for the rest of the recording. One failed read is not a
//! failure: non-blocking reads tear sometimes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpuprof_collect::procfs::{schedstat, stat, ProcReader};
use cpuprof_model::{Event, Pid, Tid};
use py_spy::config::LockingStrategy;
use py_spy::{Config, StackTrace};

use crate::convert::{looks_idle, to_event, Frames};
use crate::detect::{self, Kind};
use crate::native_tid::{self, NativeTids};
use crate::pause::{pause, RunHistory};
use crate::reader::Reader;
use crate::{clock_ns, Error, PidSource};
use cpuprof_symbols::InterpretedPids;

/// Longest wait while no process of the tree is Python: the tree wakes the sampler when it
/// changes, this only bounds the wait for sources that cannot.
const IDLE_MAX: Duration = Duration::from_secs(1);
/// How long a Python process may stay unreadable after it was first seen before it is reported.
pub const OPEN_GRACE: Duration = Duration::from_secs(3);
/// How long a Python process that cannot be opened yet is retried every tick.
const RETRY_FAST_FOR: Duration = Duration::from_millis(300);
/// Consecutive failed reads of a live, once-readable process before it is reported.
const MAX_READ_FAILURES: u32 = 50;

/// How the Python sampler samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PythonOptions {
    /// Samples per second and thread.
    pub rate_hz: u32,
    /// Pause the target while reading a stack (consistent stacks, higher cost).
    pub blocking: bool,
}

impl Default for PythonOptions {
    /// 100 Hz, non-blocking (measured: docs/python.md).
    fn default() -> Self {
        PythonOptions {
            rate_hz: 100,
            blocking: false,
        }
    }
}

/// What one run of the sampler did (for tests and the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Ticks run.
    pub ticks: u64,
    /// `PythonSample` events sent.
    pub samples: u64,
    /// Python processes opened.
    pub processes: u64,
    /// Failed stack reads (including torn non-blocking reads).
    pub failed_reads: u64,
    /// Notices sent.
    pub notices: u64,
    /// Stack reads attempted (one per process and tick).
    pub reads: u64,
    /// Time spent reading stacks (pausing included), ns.
    pub read_ns: u64,
    /// Time targets spent stopped by blocking reads, ns (summed over processes).
    pub paused_ns: u64,
    /// Reads saved because no Python thread of the process had run since the last one.
    pub reused: u64,
    /// Reads done by cpuprof's own stack reader rather than py-spy's ([`walk`](crate::walk)).
    pub walked: u64,
    /// Processes read with their parent's analysis (forked workers; py-spy opened for them
    /// only when they start a thread of their own: counted in `processes` then).
    pub forked: u64,
}

/// The sampler thread: Python stacks of every Python process a [`PidSource`] names.
pub struct PythonSampler<S: PidSource> {
    source: S,
    options: PythonOptions,
    tx: Sender<Event>,
    stop: Arc<AtomicBool>,
    targets: HashMap<Pid, Target>,
    stats: SamplerStats,
    /// No process of the tree is Python (yet): wait for the tree to change.
    idle: bool,
    /// Reads each process's `stat` through a kept descriptor.
    reader: ProcReader,
    /// Samples of the current tick, sent as one batch (one wakeup of the receiver per tick).
    outbox: Vec<Event>,
    /// Where the tid is in a thread descriptor, per libc ([`native_tid`]): forked workers and
    /// every interpreter of a machine share one.
    libc_offsets: HashMap<String, Result<u64, String>>,
    /// The frames sent so far, shared by every sample that has them.
    frames: Frames,
    /// The processes whose stacks are being read, for the native unwinder.
    reading: InterpretedPids,
}

/// What the sampler knows of one pid, for one program image (executable + command line).
struct Target {
    /// Executable and command line ([`detect::image`]).
    image: String,
    /// Its `stat` when `image` was read (an exec changes the layout there), with the main
    /// thread's state updated at every tick's read.
    seen: Seen,
    state: State,
}

/// What one read of a process's `stat` gives the sampler.
#[derive(Clone, Copy)]
struct Seen {
    /// Code and stack addresses ([`stat::Stat::layout`]).
    layout: [u64; 3],
    /// Its main thread is running.
    main_running: bool,
    ppid: Pid,
}

enum State {
    /// Not Python: ignored until it execs something else.
    Ignored,
    /// Python, not readable yet (interpreter initialising).
    Opening {
        since: Instant,
        next_try: Instant,
        last_error: String,
    },
    /// Being sampled.
    Sampling {
        reader: Box<Reader>,
        failures: u32,
        /// CPU of its threads at the last pause (blocking mode).
        history: RunHistory,
        /// Which OS thread each Python thread runs on.
        threads: Box<ThreadMap>,
        /// The last read, while none of its threads has run since.
        last: Option<LastRead>,
    },
    /// Reported unreadable; skipped until it execs something else.
    GaveUp,
}

impl State {
    /// Being sampled by `reader`, nothing read yet.
    fn sampling(reader: Reader) -> State {
        State::Sampling {
            reader: Box::new(reader),
            failures: 0,
            history: RunHistory::default(),
            threads: Box::default(),
            last: None,
        }
    }
}

impl<S: PidSource> PythonSampler<S> {
    /// A sampler of the processes `source` names, sending to `tx` until `stop` is set.
    pub fn new(
        source: S,
        options: PythonOptions,
        tx: Sender<Event>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        PythonSampler {
            source,
            options,
            tx,
            stop,
            targets: HashMap::new(),
            stats: SamplerStats::default(),
            idle: true,
            reader: ProcReader::new(),
            outbox: Vec::new(),
            libc_offsets: HashMap::new(),
            frames: Frames::default(),
            reading: InterpretedPids::new(),
        }
    }

    /// Keeps `pids` up to date with the processes whose Python stacks are read (a read worked
    /// at least once and the process has not exec'd or been given up since).
    pub fn publishing_to(mut self, pids: InterpretedPids) -> Self {
        self.reading = pids;
        self
    }

    /// Runs the sampler on its own thread.
    pub fn spawn(self) -> Result<JoinHandle<SamplerStats>, Error> {
        std::thread::Builder::new()
            .name("cpuprof-python".into())
            .spawn(move || self.run())
            .map_err(Error::Spawn)
    }

    /// Samples until the stop flag is set, then returns what it did.
    pub fn run(mut self) -> SamplerStats {
        let period = Duration::from_nanos(1_000_000_000 / u64::from(self.options.rate_hz.max(1)));
        let mut jitter = Jitter::new();
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let seen = self.source.generation();
            self.tick();
            self.idle = self
                .targets
                .values()
                .all(|t| matches!(t.state, State::Ignored | State::GaveUp));
            if self.idle {
                // With no Python process to read, nothing can happen until the tree changes
                // (a new process, an exec): wait for that instead of waking up to look, since
                // every wakeup preempts a thread of the target on a busy machine.
                self.source.wait_for_change(seen, IDLE_MAX);
                next = Instant::now();
                continue;
            }
            next += period.mul_f64(jitter.next_factor());
            let now = Instant::now();
            if next > now {
                // Parked rather than asleep: unparking the thread ends the wait at once when
                // the recording stops (a wakeup before the time just makes a tick early).
                std::thread::park_timeout(next - now);
            } else {
                next = now;
            }
        }
        self.stats
    }

    fn tick(&mut self) {
        self.stats.ticks += 1;
        let pids = self.source.pids();
        let reader = &mut self.reader;
        let reading = &self.reading;
        self.targets.retain(|pid, _| {
            let keep = pids.contains(pid);
            if !keep {
                reader.forget(*pid, None);
                reading.remove(*pid);
            }
            keep
        });
        for pid in pids {
            // A process none of whose threads ran cannot have exec'd or exited either: its
            // `stat` need not be read.
            if self.reuse(pid) {
                continue;
            }
            // Gone or a zombie: nothing to read (its samples so far are kept).
            let Some(seen) = self.look(pid) else {
                self.targets.remove(&pid);
                self.reading.remove(pid);
                continue;
            };
            if let Some(t) = self.targets.get_mut(&pid) {
                t.seen.main_running = seen.main_running;
            }
            // A known process is looked at again only after an exec or while being opened.
            let settled = self.targets.get(&pid).is_some_and(|t| {
                t.seen.layout == seen.layout && !matches!(t.state, State::Opening { .. })
            });
            if settled {
                self.sample(pid);
                continue;
            }
            let Some(image) = detect::image(pid) else {
                self.targets.remove(&pid);
                self.reading.remove(pid);
                continue;
            };
            let target = self.targets.entry(pid).or_insert_with(|| Target {
                image: String::new(),
                seen,
                state: State::Ignored,
            });
            target.seen = seen;
            if target.image != image {
                self.reading.remove(pid);
                target.state = match detect::classify(pid, detect::image_exe(&image)) {
                    Kind::Python => State::Opening {
                        since: Instant::now(),
                        next_try: Instant::now(),
                        last_error: String::new(),
                    },
                    Kind::Other => State::Ignored,
                };
                target.image = image;
            }
            self.sample(pid);
        }
        if !self.outbox.is_empty() {
            let _ = self.tx.send(Event::Batch(std::mem::take(&mut self.outbox)));
        }
    }

    /// Samples `pid` again from its last read when that still holds, and says whether it
    /// did. A stack changes only while its thread runs: when none of the process's Python
    /// threads used CPU since the last read, that read still holds (an idle pool parent, a
    /// worker waiting for its next task).
    fn reuse(&mut self, pid: Pid) -> bool {
        let Some(Target {
            state: State::Sampling { last, .. },
            ..
        }) = self.targets.get_mut(&pid)
        else {
            return false;
        };
        let Some(l) = last.as_ref() else {
            return false;
        };
        let now = clock_ns();
        let holds = now.saturating_sub(l.t) < REUSE_MAX_NS
            && l.cpu
                .iter()
                .all(|&(tid, c)| thread_cpu(&mut self.reader, pid, tid) == Some(c));
        if !holds {
            *last = None;
            return false;
        }
        self.stats.reused += 1;
        self.stats.samples += l.events.len() as u64;
        self.outbox.extend(l.events.iter().map(|e| l.again(e, now)));
        true
    }

    /// What this tick's read of `pid`'s main thread's `stat` says; `None` when it is gone or
    /// a zombie. The main thread's own file (`task/PID/stat`) says all this needs — state,
    /// parent, the address-space layout (shared by every thread) — without what the process's
    /// file adds by walking all its threads (their CPU times and faults summed): 3.9 µs a read
    /// against 5.7 on a 4-thread process (docs/benchmarks.md, twelfth session).
    fn look(&mut self, pid: Pid) -> Option<Seen> {
        let text = self.reader.read_kept(pid, Some(pid), "stat").ok()?;
        // The clock-tick rate only scales CPU times, which are not used here.
        let s = stat::parse(text, 100)?;
        (s.state != 'Z').then_some(Seen {
            layout: s.layout,
            // The process's `stat` is its main thread's.
            main_running: s.state == 'R',
            ppid: s.ppid,
        })
    }

    fn sample(&mut self, pid: Pid) {
        let opening = self
            .targets
            .get(&pid)
            .is_some_and(|t| matches!(t.state, State::Opening { .. }));
        if opening {
            if let Some(reader) = self.forked_reader(pid) {
                self.stats.forked += 1;
                if let Some(t) = self.targets.get_mut(&pid) {
                    t.state = State::sampling(reader);
                }
            }
        }
        // A forked child's unnamed threads: what its parent knows of them now.
        let ppid = self.targets.get(&pid).map_or(pid, |t| t.seen.ppid);
        if ppid != pid {
            if let [Some(child), Some(parent)] = self.targets.get_disjoint_mut([&pid, &ppid]) {
                if let (State::Sampling { reader, .. }, State::Sampling { reader: known, .. }) =
                    (&mut child.state, &parent.state)
                {
                    if reader.lacks_names() {
                        reader.learn_names(known.thread_names());
                    }
                }
            }
        }
        let Some(target) = self.targets.get_mut(&pid) else {
            return;
        };
        let config = spy_config();
        let blocking = self.options.blocking;
        match &mut target.state {
            State::Ignored | State::GaveUp => {}
            State::Opening { next_try, .. } if *next_try > Instant::now() => {}
            State::Opening {
                since,
                next_try,
                last_error,
            } => {
                match Reader::open(pid, &config) {
                    Ok(reader) => {
                        self.stats.processes += 1;
                        target.state = State::sampling(reader);
                        self.sample(pid);
                    }
                    Err(e) => {
                        *last_error = error_chain(&e);
                        // Every tick at first (short-lived interpreters), then every 100 ms.
                        if since.elapsed() > RETRY_FAST_FOR {
                            *next_try = Instant::now() + Duration::from_millis(100);
                        }
                        if since.elapsed() >= OPEN_GRACE && alive(pid) {
                            let msg = format!(
                            "python: cannot read the Python stacks of pid {pid} ({}): {last_error}{}",
                            detect::image_exe(&target.image),
                            advice(last_error)
                        );
                            target.state = State::GaveUp;
                            self.notice(msg);
                        }
                    }
                }
            }
            State::Sampling {
                reader,
                failures,
                history,
                threads,
                last,
            } => {
                *last = None;
                let before = clock_ns();
                let paused = if blocking { pause(pid, history) } else { None };
                let (result, how) = reader.read(&config);
                let walked = how.walked;
                let after = clock_ns();
                self.stats.reads += 1;
                self.stats.walked += u64::from(walked);
                self.stats.processes += u64::from(how.opened);
                self.stats.read_ns += after - before;
                if paused.is_some() {
                    self.stats.paused_ns += after - before;
                }
                let t = before + (after - before) / 2;
                match result {
                    Ok(mut traces) => {
                        *failures = 0;
                        self.reading.insert(pid);
                        let proc_reader = &mut self.reader;
                        let main_running = target.seen.main_running;
                        let mut running = |tid: Tid| {
                            if tid == pid {
                                return main_running;
                            }
                            proc_reader
                                .read_kept(pid, Some(tid), "stat")
                                .ok()
                                .and_then(|t| stat::parse(t, 100))
                                .is_some_and(|s| s.state == 'R')
                        };
                        if walked {
                            // py-spy sets these from the OS thread's state; the walker leaves
                            // them to us (before 3.11 `threads.map` does, with the tid it finds).
                            for trace in &mut traces {
                                if let Some(tid) = trace.os_thread_id.filter(|&t| t != 0) {
                                    trace.active = running(tid as Tid) && !looks_idle(trace);
                                }
                            }
                        }
                        let unmapped = threads.map(
                            pid,
                            reader,
                            &mut self.libc_offsets,
                            &mut running,
                            &mut traces,
                        );
                        if let Some(why) = unmapped {
                            let msg = format!(
                                "python: cannot tell which OS threads run the Python threads of \
                                 pid {pid} ({}, Python {}): {why}; its Python stacks are not \
                                 recorded",
                                detect::image_exe(&target.image),
                                reader.version()
                            );
                            self.stats.notices += 1;
                            let _ = self.tx.send(Event::Notice(msg));
                        }
                        if let Some(p) = &paused {
                            for trace in &mut traces {
                                let running =
                                    trace.os_thread_id.is_some_and(|t| p.was_running(t as u32));
                                trace.active = running && !looks_idle(trace);
                            }
                        }
                        drop(paused);
                        // A read is kept for reuse only while no thread is running: a busy
                        // process's next stack differs anyway.
                        let keep = !traces.iter().any(|t| t.active);
                        let mut read = LastRead {
                            t: before,
                            cpu: Vec::new(),
                            events: Vec::new(),
                        };
                        for trace in &traces {
                            if let Some(ev) = to_event(pid, t, trace, &mut self.frames) {
                                self.stats.samples += 1;
                                if keep {
                                    read.events.push(ev.clone());
                                }
                                self.outbox.push(ev);
                            }
                        }
                        if !keep {
                            return;
                        }
                        // What each thread had used when its stack was read (read after: a
                        // thread that ran meanwhile shows as changed at the next tick).
                        let cpu: Option<Vec<(Tid, u64)>> = traces
                            .iter()
                            .filter_map(|t| t.os_thread_id.and_then(|id| Tid::try_from(id).ok()))
                            .map(|tid| Some((tid, thread_cpu(&mut self.reader, pid, tid)?)))
                            .collect();
                        if let Some(cpu) = cpu.filter(|c| !c.is_empty()) {
                            read.cpu = cpu;
                            *last = Some(read);
                        }
                    }
                    Err(e) => {
                        self.stats.failed_reads += 1;
                        *failures += 1;
                        if *failures >= MAX_READ_FAILURES && alive(pid) {
                            let err = error_chain(&e);
                            let msg = format!(
                                "python: stopped reading the Python stacks of pid {pid} ({}) after {MAX_READ_FAILURES} failed reads: {err}{}",
                                detect::image_exe(&target.image),
                                advice(&err)
                            );
                            target.state = State::GaveUp;
                            self.reading.remove(pid);
                            self.notice(msg);
                        }
                    }
                }
            }
        }
    }

    /// A reader for `pid` made from its parent's, when `pid` is a fork of a process being
    /// read that has not exec'd since ([`Reader::forked`]).
    fn forked_reader(&self, pid: Pid) -> Option<Reader> {
        let child = self.targets.get(&pid)?;
        let parent = self.targets.get(&child.seen.ppid)?;
        if parent.image != child.image || parent.seen.layout != child.seen.layout {
            return None;
        }
        match &parent.state {
            State::Sampling { reader, .. } => Reader::forked(pid, reader),
            _ => None,
        }
    }

    fn notice(&mut self, msg: String) {
        self.stats.notices += 1;
        let _ = self.tx.send(Event::Notice(msg));
    }
}

/// Longest a read is reused while its threads do not run: a thread a C extension attaches to
/// the interpreter, or a name set from a thread that is not Python's, shows within this.
const REUSE_MAX_NS: u64 = 1_000_000_000;

/// A process's last stack read, kept while none of its Python threads runs.
struct LastRead {
    /// When it was read (monotonic ns).
    t: u64,
    /// Each Python thread's CPU then, ns (`schedstat`).
    cpu: Vec<(Tid, u64)>,
    /// The samples it gave.
    events: Vec<Event>,
}

impl LastRead {
    /// Sample `e` again at `t`: the same stack, not running (no thread ran since).
    fn again(&self, e: &Event, t: u64) -> Event {
        match e.clone() {
            Event::PythonSample {
                pid,
                tid,
                thread_name,
                frames,
                owns_gil,
                ..
            } => Event::PythonSample {
                t,
                pid,
                tid,
                thread_name,
                frames,
                owns_gil,
                active: false,
            },
            other => other,
        }
    }
}

/// A thread's CPU so far, ns (`schedstat`, through a kept descriptor); `None` if it is gone.
fn thread_cpu(reader: &mut ProcReader, pid: Pid, tid: Tid) -> Option<u64> {
    let text = reader.read_kept(pid, Some(tid), "schedstat").ok()?;
    schedstat::parse(text).map(|s| s.cpu_ns)
}

/// Reads in a row in which no Python thread could be given its OS thread before the process
/// is reported (a thread starting or ending is not a failure).
const UNMAPPED_LIMIT: u32 = 20;

/// Which OS thread each Python thread of one process runs on.
#[derive(Debug, Default)]
struct ThreadMap {
    /// Interpreters before 3.11: `pthread_t` to tid through the thread descriptor.
    native: Option<NativeTids>,
    /// Why `native` cannot be had.
    unavailable: Option<String>,
    /// The OS thread each Python thread id was last seen on.
    last_tid: HashMap<u64, Tid>,
    /// Reads in a row with threads and none mapped.
    unmapped: u32,
    /// Reported once.
    reported: bool,
}

impl ThreadMap {
    /// Gives every trace its OS thread (py-spy has it from 3.11 on; before, the thread
    /// descriptor has it) and drops the name py-spy cached for a Python thread id that now
    /// runs on another OS thread (Python reuses ids; py-spy caches names by id). Returns why,
    /// once, when the process's threads cannot be mapped at all.
    ///
    /// py-spy tells a thread that waits from one that runs by the OS thread's state, which it
    /// cannot read for a trace it has no OS thread for: `running` reads it for those.
    fn map(
        &mut self,
        pid: Pid,
        reader: &mut Reader,
        offsets: &mut HashMap<String, Result<u64, String>>,
        running: &mut dyn FnMut(Tid) -> bool,
        traces: &mut [StackTrace],
    ) -> Option<String> {
        for trace in traces.iter_mut() {
            // A 3.11+ thread state being torn down reads native id 0: no thread.
            if trace.os_thread_id == Some(0) {
                trace.os_thread_id = None;
                continue;
            }
            if trace.os_thread_id.is_none() {
                if self.native.is_none() && self.unavailable.is_none() {
                    match native_tids(pid, offsets) {
                        Ok(n) => self.native = Some(n),
                        Err(e) => self.unavailable = Some(e),
                    }
                }
                if let Some(n) = self.native.as_mut() {
                    trace.os_thread_id = n.tid(trace.thread_id).map(u64::from);
                    if let Some(tid) = trace.os_thread_id {
                        trace.active = running(tid as Tid) && !looks_idle(trace);
                    }
                }
            }
            if let Some(tid) = trace.os_thread_id.and_then(|t| Tid::try_from(t).ok()) {
                let before = self.last_tid.insert(trace.thread_id, tid);
                if before.is_some_and(|b| b != tid) {
                    reader.forget_names();
                    trace.thread_name = None;
                }
            }
        }
        let mapped = traces.iter().any(|t| t.os_thread_id.is_some());
        self.unmapped = if traces.is_empty() || mapped {
            0
        } else {
            self.unmapped + 1
        };
        let give_up = self.unavailable.is_some() || self.unmapped >= UNMAPPED_LIMIT;
        if mapped || !give_up || self.reported {
            return None;
        }
        self.reported = true;
        Some(
            self.unavailable
                .clone()
                .unwrap_or_else(|| "its thread descriptors name none of its threads".to_string()),
        )
    }
}

/// The `pthread_t` → tid reader for `pid`, from its libc (looked up once per libc).
fn native_tids(
    pid: Pid,
    offsets: &mut HashMap<String, Result<u64, String>>,
) -> Result<NativeTids, String> {
    let libc = native_tid::libc_of(pid)
        .ok_or("it maps no glibc (a static or musl build: no thread descriptor to read)")?;
    let offset = offsets
        .entry(libc.clone())
        .or_insert_with(|| {
            // A process in another mount namespace (a container) sees its own files.
            native_tid::tid_offset(&libc)
                .or_else(|_| native_tid::tid_offset(&format!("/proc/{pid}/root{libc}")))
        })
        .clone()?;
    Ok(NativeTids::new(pid, offset))
}

/// The py-spy configuration: Python frames only, every thread (idle ones too), thread names.
/// Never py-spy's ptrace lock: blocking mode pauses with [`pause`] (its module says why).
fn spy_config() -> Config {
    Config {
        blocking: LockingStrategy::NonBlocking,
        native: false,
        include_idle: true,
        gil_only: false,
        collect_thread_names: true,
        ..Config::default()
    }
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: Pid) -> bool {
    detect::exe(pid).is_some()
}

/// An anyhow error and its causes on one line.
fn error_chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// What to do about an error, when we know.
fn advice(err: &str) -> &'static str {
    let lower = err.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("operation not permitted") {
        " (reading another process's memory needs root or CAP_SYS_PTRACE; check /proc/sys/kernel/yama/ptrace_scope)"
    } else {
        ""
    }
}

/// Exponential-ish jitter around the period (a factor in 0.5..1.5), so that ticks do not
/// alias with periodic work in the target. xorshift: no dependency for eight lines.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = clock_ns() | 1;
        Jitter(seed)
    }

    fn next_factor(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        0.5 + (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
