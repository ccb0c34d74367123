//! The procfs poller: walks the target's process tree at a steady interval.
//!
//! Every poll it finds the tree's new processes ([`discover`]: children of known processes,
//! and in launch mode cpuprof's own, since orphans are re-parented to it), reads each
//! thread's `schedstat`, `stat` and `status` (a thread that has not run since keeps the last
//! two: `Poller::read_thread`), and emits one [`Event::ThreadPoint`] per thread,
//! [`Event::ProcessStart`]/[`Event::ProcessInfo`]/[`Event::ProcessEnd`] per process and
//! [`Event::ThreadEnd`] when a thread goes. It keeps the shared [`LiveTree`] current.
//!
//! CPU that happened out of sight — after the last poll of something that ended, or in a
//! process that lived shorter than an interval — is recovered from the kernel's own
//! accounting ([`account`]); in launch mode the poller also reaps (`wait4`) the target and
//! orphans, so their rusage closes the books: the profile's total equals the tree's rusage.
//!
//! The poller sleeps on a pidfd of the target, so the target's exit is seen at once (exact
//! wall time, final counters read from the zombie before it is reaped).
//!
//! Watching a scope (the machine, a cgroup: `cpuprof top`), a process whose own `stat` says
//! nothing moved since the last poll ([`decide::quiet`]) costs that one read: its threads
//! are read again once it runs. Most processes of a machine sleep; reading every thread of
//! each at every poll was most of a live view's cost.

pub mod account;
mod decide;
pub mod discover;
mod process;
mod reap;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use cpuprof_model::{CpuTimes, Event, Pid, Tid};

use crate::clock::monotonic_ns;
use crate::procfs::{self, cmdline, environ, proc_maps, schedstat, stat, status, ProcReader};
use crate::tree::LiveTree;
use account::Vanished;
use process::ProcState;

/// Which processes the recording follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A child cpuprof launched: the poller reaps it (and orphans) and reports its exit.
    Launched(Pid),
    /// A running process cpuprof attached to: counters start from zero at the first poll.
    Attached(Pid),
    /// Every process of a scope as processes come and go (`cpuprof top`, `cpuprof agent`):
    /// no root, so the recording ends only when stopped; counters start from zero at the
    /// first poll, as when attached.
    Watched(Scope),
}

pub use discover::Scope;

impl Target {
    /// The root pid (`None` for a scope, which has none).
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Target::Launched(p) | Target::Attached(p) => Some(*p),
            Target::Watched(_) => None,
        }
    }
}

/// How the poller ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    /// Time of the last poll (monotonic ns): the end of the recording.
    pub end_ns: u64,
    /// The target ended (rather than the recording being stopped).
    pub target_ended: bool,
}

/// Read `status` (context switches) every this many polls.
const STATUS_EVERY: u64 = 4;

/// A thread's last `stat` read ([`Poller::read_thread`]).
struct LastStat {
    /// Its timeslices and CPU (ns) when it was read (`schedstat`).
    ran: (u64, u64),
    stat: stat::Stat,
    /// Its `status` was read since (its switch counts are current while it does not run).
    status_read: bool,
}

/// The procfs poller. Build with [`Poller::new`], run with [`Poller::spawn`].
pub struct Poller {
    target: Target,
    interval: Duration,
    tx: Sender<Event>,
    tree: LiveTree,
    stop: Arc<AtomicBool>,
    reader: ProcReader,
    ticks: u64,
    page_kb: u64,
    procs: BTreeMap<Pid, ProcState>,
    self_pid: Pid,
    polls: u64,
    reaped_total: Option<CpuTimes>,
    unseen_total: u64,
    outbox: Vec<Event>,
    discovery: discover::Discovery,
    carry: BTreeMap<Pid, i64>,
    exit: Option<reap::ExitStatus>,
    root_gone: bool,
    /// Threads to unpark once the poller has stopped.
    wake_at_end: Vec<std::thread::Thread>,
    /// The kernel's exit accounting gives every task's final figures (crate::exits): CPU
    /// of unseen children is then not theirs to estimate.
    exits_exact: bool,
    /// Each thread's last `stat` read, with the timeslices and CPU it had run then. A thread
    /// that ran neither since has the same `stat` (see [`Poller::read_thread`]).
    last_stat: std::collections::HashMap<(Pid, Tid), LastStat>,
}

impl Poller {
    /// A poller for `target` sending to `tx`, publishing to `tree`, until `stop` is set (it
    /// sets `stop` itself when the target ends, so the other collectors stop too).
    pub fn new(
        target: Target,
        interval: Duration,
        tx: Sender<Event>,
        tree: LiveTree,
        stop: Arc<AtomicBool>,
    ) -> Self {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        Poller {
            target,
            interval: interval.max(Duration::from_millis(1)),
            tx,
            tree,
            stop,
            reader: ProcReader::new(),
            ticks: procfs::clock_ticks(),
            page_kb: page / 1024,
            procs: BTreeMap::new(),
            self_pid: std::process::id(),
            polls: 0,
            reaped_total: None,
            unseen_total: 0,
            outbox: Vec::new(),
            discovery: discover::Discovery::default(),
            carry: BTreeMap::new(),
            exit: None,
            root_gone: false,
            wake_at_end: Vec::new(),
            exits_exact: false,
            last_stat: std::collections::HashMap::new(),
        }
    }

    /// Unparks `thread` when the poller stops (after its last events were sent): a thread
    /// that waits parked between looks at the channel learns at once that it is over.
    pub fn wake_at_end(&mut self, thread: std::thread::Thread) {
        self.wake_at_end.push(thread);
    }

    /// Tells the poller that every task's final figures come from the kernel's exit
    /// accounting ([`crate::exits`]), so it does not report CPU of unseen children.
    pub fn exits_exact(&mut self, exact: bool) {
        self.exits_exact = exact;
    }

    /// Polls once now (the first poll takes baselines in attach mode). Call it before
    /// releasing a launched child so that the tree is known from the start.
    pub fn poll_now(&mut self) {
        let t = monotonic_ns();
        self.poll(t);
    }

    /// Runs the poller on its own thread.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<PollOutcome>> {
        std::thread::Builder::new()
            .name("cpuprof-procfs".into())
            .spawn(move || self.run())
    }

    /// Polls until the target ends or `stop` is set, then flushes.
    pub fn run(mut self) -> PollOutcome {
        let pidfd = self.target.pid().and_then(reap::PidFd::open);
        let interval = self.interval.as_nanos() as u64;
        let mut next = monotonic_ns();
        let mut last;
        loop {
            last = monotonic_ns();
            self.poll(last);
            if self.root_gone || self.stop.load(Ordering::Relaxed) {
                break;
            }
            next += interval;
            let now = monotonic_ns();
            if next <= now {
                next = now + interval;
            }
            // Sleep until the next tick, waking early when the target exits or on stop.
            loop {
                let now = monotonic_ns();
                if now >= next || self.stop.load(Ordering::Relaxed) {
                    break;
                }
                // One wakeup per poll (rounded up: rounded down, the wait ends just short of
                // `next` and a second one of 1 ms follows, doubling the wakeups); at most
                // 100 ms so that `stop` is seen soon.
                let wait = (next - now).div_ceil(1_000_000).clamp(1, 100) as i32;
                if pidfd.as_ref().is_some_and(|fd| fd.wait_exited(wait)) {
                    break;
                } else if pidfd.is_none() {
                    std::thread::sleep(Duration::from_millis(wait as u64));
                }
            }
        }
        self.finish(last)
    }

    /// Queues an event; [`Self::flush`] sends the queue at the end of each poll, so that the
    /// receiving thread wakes once per poll rather than once per event.
    fn send(&mut self, e: Event) {
        self.outbox.push(e);
    }

    fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.outbox);
        // The receiver only goes away when the recording is over; nothing to do then.
        let _ = self.tx.send(Event::Batch(batch));
    }

    fn finish(mut self, last: u64) -> PollOutcome {
        if let Some(r) = self.reaped_total {
            self.send(Event::TreeRusage(r));
        }
        if let Some(e) = self.exit.take() {
            self.send(Event::Exit {
                code: e.code,
                signal: e.signal,
            });
        }
        if self.unseen_total >= 10_000_000 && !self.exits_exact {
            self.send(Event::Notice(format!(
                "{:.2} s of CPU used by child processes that lived shorter than one polling \
                 interval is counted in their parent processes",
                self.unseen_total as f64 / 1e9
            )));
        }
        self.flush();
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.wake_at_end {
            t.unpark();
        }
        PollOutcome {
            end_ns: last,
            target_ended: self.root_gone,
        }
    }

    /// One poll at time `t`.
    fn poll(&mut self, t: u64) {
        self.poll_tree(t);
        self.flush();
    }

    fn poll_tree(&mut self, t: u64) {
        let first = self.polls == 0;
        self.polls += 1;
        let mut queue: Vec<Pid> = self.procs.keys().copied().collect();
        if let Some(root) = self.target.pid() {
            if !self.root_gone && !self.procs.contains_key(&root) && first {
                queue.push(root);
            }
        }
        let adopter = matches!(self.target, Target::Launched(_)).then_some(self.self_pid);
        // Forked children the exit watcher saw (crate::exits): orphans included.
        queue.extend(self.tree.take_announced());
        let known: BTreeSet<Pid> = queue.iter().copied().collect();
        let scope = match &self.target {
            Target::Watched(scope) => Some(scope),
            _ => None,
        };
        queue.extend(self.discovery.scan(
            &mut self.reader,
            self.ticks,
            &|p| known.contains(&p),
            adopter,
            scope,
        ));
        let mut visited: BTreeSet<Pid> = BTreeSet::new();
        let mut alive: BTreeMap<Pid, CpuTimes> = BTreeMap::new();
        for pid in queue {
            if !visited.insert(pid) {
                continue;
            }
            let before = self.procs.get(&pid).map(|p| p.children).unwrap_or_default();
            if self.scan_process(pid, t, first) {
                let after = self.procs[&pid].children;
                alive.insert(pid, account::sub(after, before));
            }
        }
        // Reap what cpuprof is the parent of (after the zombies' final counters were read).
        let mut reaped: BTreeMap<Pid, CpuTimes> = BTreeMap::new();
        if matches!(self.target, Target::Launched(_)) {
            for r in reap::reap_all() {
                add_opt(&mut self.reaped_total, r.rusage);
                if Some(r.pid) == self.target.pid() {
                    self.exit = Some(r.status);
                    self.root_gone = true;
                }
                alive.remove(&r.pid);
                if !self.procs.contains_key(&r.pid) {
                    // An orphan that lived and died between two polls.
                    self.send(Event::ProcessStart {
                        t,
                        pid: r.pid,
                        ppid: self.self_pid,
                        command: vec![],
                        exe: None,
                    });
                    self.send(Event::ProcessEnd {
                        t,
                        pid: r.pid,
                        cpu: Some(r.rusage),
                    });
                    continue;
                }
                reaped.insert(r.pid, r.rusage);
            }
        } else if let (false, Some(root)) = (first, self.target.pid()) {
            if !alive.contains_key(&root) || self.procs.get(&root).is_some_and(|p| p.zombie) {
                self.root_gone = true;
            }
        }
        let gone: Vec<Pid> = self
            .procs
            .keys()
            .copied()
            .filter(|p| !alive.contains_key(p))
            .collect();
        let vanished: Vec<Vanished> = gone
            .iter()
            .map(|&pid| {
                let p = &self.procs[&pid];
                Vanished {
                    pid,
                    ppid: p.ppid,
                    known: p.known_at(t),
                    reaped: reaped.get(&pid).copied(),
                }
            })
            .collect();
        let shares = account::attribute(&vanished, &alive, &mut self.carry);
        for (pid, share) in &shares {
            if alive.contains_key(pid) {
                self.unseen_total += share.total_ns();
                if let Some(p) = self.procs.get_mut(pid) {
                    account::add(&mut p.unseen_children, *share);
                    let cpu = Some(p.reported_cpu());
                    self.outbox.push(Event::ProcessInfo {
                        pid: *pid,
                        command: None,
                        exe: None,
                        libraries: vec![],
                        env: BTreeMap::new(),
                        rss_kb: 0,
                        cpu,
                    });
                }
            }
        }
        for pid in gone {
            let Some(p) = self.procs.remove(&pid) else {
                continue;
            };
            let mut cpu = p.reported_cpu();
            if let Some(s) = shares.get(&pid) {
                account::add(&mut cpu, *s);
            }
            self.tree.remove(pid);
            self.reader.forget(pid, None);
            self.last_stat.retain(|k, _| k.0 != pid);
            self.send(Event::ProcessEnd {
                t,
                pid,
                cpu: Some(cpu),
            });
        }
    }

    /// Reads one process and its threads; false if it is gone.
    fn scan_process(&mut self, pid: Pid, t: u64, first: bool) -> bool {
        self.try_scan_process(pid, t, first).is_some()
    }

    fn try_scan_process(&mut self, pid: Pid, t: u64, first: bool) -> Option<()> {
        let pst = stat::parse(self.reader.read_kept(pid, None, "stat").ok()?, self.ticks)?;
        let seen = decide::seen(
            self.procs
                .get(&pid)
                .map(|p| decide::Known {
                    starttime: p.starttime,
                    comm: &p.comm,
                    layout: p.layout,
                })
                .as_ref(),
            &pst,
        );
        if seen == decide::Seen::Reused {
            return None; // the old process is gone; the new one is picked up next poll
        }
        let is_new = seen == decide::Seen::New;
        // Not after an exec: the new program's libraries and command line are read now.
        let same = matches!(seen, decide::Seen::Same { exec: false });
        if same && !first && matches!(self.target, Target::Watched(_)) {
            if let Some(known) = self.procs.get_mut(&pid) {
                if decide::quiet(known, &pst) {
                    known.read_at = t;
                    return Some(());
                }
            }
        }
        let baseline = first && !matches!(self.target, Target::Launched(_));
        let snap = self.read_process(pid, pst, is_new);
        let zombie = snap.stat.state == 'Z';
        let rss_kb = snap.stat.rss_pages * self.page_kb;
        let tids = snap.tids.clone();
        let up = decide::process(pid, t, self.procs.get(&pid), snap, seen, baseline);
        for tid in &up.forget {
            self.reader.forget(pid, Some(*tid));
            self.last_stat.remove(&(pid, *tid));
        }
        for e in up.events {
            self.send(e);
        }
        if up.exec && !zombie {
            self.tree.exec_seen();
        }
        let refresh = up.refresh_info;
        self.procs.insert(pid, up.state);
        self.tree.set(pid, tids.iter().copied());
        let cpu = Some(self.procs[&pid].reported_cpu());
        let event = if refresh && !zombie {
            let command = self.read_cmdline(pid);
            if command.is_empty() {
                // Caught mid-exec: the kernel sets the new `comm` before the new arguments
                // exist, so the exec is seen but the command line reads empty. Read again at
                // the next poll rather than keep the old program's command for seconds.
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.info_read_ns = 0;
                }
            }
            Event::ProcessInfo {
                pid,
                command: (!command.is_empty()).then_some(command),
                exe: read_exe(pid),
                libraries: self
                    .reader
                    .read_proc(pid, None, "maps")
                    .map(proc_maps::libraries)
                    .unwrap_or_default(),
                env: self
                    .reader
                    .read_proc(pid, None, "environ")
                    .map(environ::parse)
                    .unwrap_or_default(),
                rss_kb,
                cpu,
            }
        } else {
            Event::ProcessInfo {
                pid,
                command: None,
                exe: None,
                libraries: vec![],
                env: BTreeMap::new(),
                rss_kb,
                cpu,
            }
        };
        self.send(event);
        Some(())
    }

    /// Reads what one poll needs of a process whose `stat` was just read: its threads'
    /// files, and a new process's command line and executable.
    fn read_process(
        &mut self,
        pid: Pid,
        stat: stat::Stat,
        is_new: bool,
    ) -> decide::ProcessSnapshot {
        let start = is_new.then(|| (self.read_cmdline(pid), read_exe(pid)));
        // No new thread anywhere since the last poll: the threads are last poll's, less
        // those whose files no longer read (saves a directory read per process and poll).
        let tids: Vec<Tid> = match self.procs.get(&pid) {
            Some(p) if !is_new && self.discovery.nothing_created() => {
                p.threads.keys().copied().collect()
            }
            _ => procfs::tasks(pid).unwrap_or_default(),
        };
        let mut threads = BTreeMap::new();
        for &tid in &tids {
            let known = self
                .procs
                .get(&pid)
                .is_some_and(|p| p.threads.contains_key(&tid));
            if let Some(ts) = self.read_thread(pid, tid, known) {
                threads.insert(tid, ts);
            }
        }
        decide::ProcessSnapshot {
            stat,
            tids,
            threads,
            start,
        }
    }

    /// Reads one thread's files; `None` if it is gone. `status` is the costliest file (it
    /// also reports memory): a known thread's context switches are read every few polls.
    ///
    /// A known thread that ran no timeslice and no CPU since its last `stat` read keeps that
    /// `stat`, and the switch counts read after it last ran: its times, faults, name and
    /// state cannot have moved without running (another thread may rename it through
    /// `/proc`; the name shows at its next timeslice). One read instead of two or three for
    /// every sleeping thread: an idle pool's workers, a Python pool's handler threads, most
    /// threads of a machine watched. The one state it misses is a sleeper woken but not run
    /// yet, shown as sleeping while it waits for a core (a state that is only shown, in
    /// `cpuprof top`: the run-queue wait every figure uses comes from `schedstat`, read every
    /// poll).
    fn read_thread(&mut self, pid: Pid, tid: Tid, known: bool) -> Option<decide::ThreadSnapshot> {
        let schedstat = self
            .reader
            .read_kept(pid, Some(tid), "schedstat")
            .ok()
            .and_then(schedstat::parse);
        let ran = schedstat.map(|s| (s.timeslices, s.cpu_ns));
        let kept =
            (self.last_stat.get_mut(&(pid, tid))).filter(|last| known && Some(last.ran) == ran);
        // Switch counts read since the thread last ran are still current.
        let switches_current = kept.as_ref().is_some_and(|k| k.status_read);
        let due = !known || (!switches_current && self.polls.is_multiple_of(STATUS_EVERY));
        let stat = match kept {
            Some(k) => {
                k.status_read |= due;
                k.stat.clone()
            }
            None => {
                // A thread still unreadable is gone: `?` below.
                let st = stat::parse(
                    self.reader.read_kept(pid, Some(tid), "stat").ok()?,
                    self.ticks,
                )?;
                if let Some(ran) = ran {
                    let last = LastStat {
                        ran,
                        stat: st.clone(),
                        status_read: due,
                    };
                    self.last_stat.insert((pid, tid), last);
                }
                st
            }
        };
        let status = due.then(|| {
            self.reader
                .read_kept(pid, Some(tid), "status")
                .map(status::parse)
                .unwrap_or_default()
        });
        Some(decide::ThreadSnapshot {
            schedstat,
            stat,
            status,
        })
    }

    fn read_cmdline(&mut self, pid: Pid) -> Vec<String> {
        self.reader
            .read_proc(pid, None, "cmdline")
            .map(cmdline::parse)
            .unwrap_or_default()
    }
}

fn read_exe(pid: Pid) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string())
}

fn add_opt(total: &mut Option<CpuTimes>, c: CpuTimes) {
    account::add(total.get_or_insert_with(CpuTimes::default), c);
}
