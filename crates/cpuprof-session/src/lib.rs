//! One recording, as a library: the pipeline `record` and `sweep` run (and a live view or a
//! continuous agent would).
//!
//! [`Session::launch`] starts the target paused (or checks the process to attach to) and opens
//! the collectors — procfs poller, exit accounting, perf sampler, Python sampler — all sending
//! [`Event`]s into one [`ProfileBuilder`]; [`Session::release`] lets the target run;
//! [`Session::tick`] takes in what the collectors sent, so [`Session::profile`] is a live
//! snapshot at any time; [`Session::finish`] joins everything and returns the profile with
//! Python stacks merged and its analysis. Signals, the status line and the outputs belong to
//! the caller.
//!
//! The collectors share one stop flag: the procfs poller sets it when the target ends,
//! [`Session::stop`] from outside (a deadline, an interrupt).
#![deny(missing_docs)]

use std::ffi::OsString;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use cpuprof_collect::cgroup::CgroupWatch;
use cpuprof_collect::clock::monotonic_ns;
use cpuprof_collect::exits::ExitWatcher;
use cpuprof_collect::launcher::{self, Launch, PausedChild};
use cpuprof_collect::perf::PerfOptions;
use cpuprof_collect::poller::{Poller, Target as PollTarget};
use cpuprof_collect::tree::LiveTree;
use cpuprof_model::{Analysis, Event, ExitAccounting, Meta, Profile, ProfileBuilder};
use cpuprof_python::PythonOptions;

/// How often the target's cgroup is re-read (it may move itself into a container's group).
const CGROUP_CHECK_NS: u64 = 250_000_000;

/// What to record.
#[derive(Debug, Clone)]
pub enum Target {
    /// Run this command (and follow its descendants).
    Command(Vec<OsString>),
    /// Attach to this process and its descendants.
    Pid(u32),
    /// Every process of a scope (the machine, a cgroup), as processes come and go, until
    /// stopped: what `cpuprof top` and `cpuprof agent` watch through [`Session::window`].
    Watch(Scope),
}

pub use cpuprof_collect::poller::Scope;

/// Where the final figures of tasks that end come from (docs/summary-json.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExitSource {
    /// taskstats when allowed, else perf's switch records, else the last poll.
    #[default]
    Auto,
    /// perf's switch and exit records.
    Perf,
    /// The last poll.
    LastPoll,
}

/// How to record.
#[derive(Debug)]
pub struct Options {
    /// How often every thread's counters are read.
    pub interval: Duration,
    /// Native stacks and context switches through perf (`None`: procfs only).
    pub perf: Option<PerfOptions>,
    /// Python stacks through the Python sampler (`None`: none).
    pub python: Option<PythonOptions>,
    /// Where the figures of tasks that end come from.
    pub exit_accounting: ExitSource,
    /// The launched target gets a process group of its own (see `src/signals.rs`).
    pub own_group: bool,
    /// Extra environment of the launched target (a sweep's candidate setting).
    pub env: Vec<(OsString, OsString)>,
    /// The launched target's standard output and error (default: cpuprof's).
    pub stdout: Option<File>,
    /// See [`Options::stdout`].
    pub stderr: Option<File>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: Duration::from_millis(50),
            perf: Some(PerfOptions::default()),
            python: Some(PythonOptions::default()),
            exit_accounting: ExitSource::Auto,
            own_group: false,
            env: Vec::new(),
            stdout: None,
            stderr: None,
        }
    }
}

/// A finished recording.
#[derive(Debug)]
pub struct Recording {
    /// The profile, Python stacks merged.
    pub profile: Profile,
    /// What the analysis found in it.
    pub analysis: Analysis,
    /// Recording stopped before the target ended (a deadline, an interrupt).
    pub stopped_early: bool,
}

/// One recording in progress.
pub struct Session {
    origin: u64,
    attached: bool,
    pid: u32,
    stop: Arc<AtomicBool>,
    tree: LiveTree,
    rx: Receiver<Event>,
    builder: ProfileBuilder,
    cgroup: CgroupWatch,
    machine: cpuprof_model::Machine,
    child: Option<PausedChild>,
    poller: Option<Poller>,
    poll_handle: Option<JoinHandle<cpuprof_collect::poller::PollOutcome>>,
    perf_handle: Option<JoinHandle<cpuprof_collect::perf::PerfStats>>,
    python_handle: Option<JoinHandle<cpuprof_python::SamplerStats>>,
    exits_handle: Option<JoinHandle<()>>,
    next_cgroup_check: u64,
    stopped_early: bool,
}

impl Session {
    /// Starts a recording: the target paused (launch) or checked (attach), every collector
    /// running. Call while the process is single-threaded when launching (the fork happens
    /// here), then [`Session::release`].
    pub fn launch(target: Target, opts: Options) -> Result<Session> {
        let origin = monotonic_ns();
        // The kernel's wait for perf's scheduler hooks passes while the rest gets ready.
        let warm_up = opts
            .perf
            .as_ref()
            .map(|_| cpuprof_collect::perf::WarmUp::start());
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Event>();
        let tree = LiveTree::default();

        let (poll_target, child) = match &target {
            Target::Pid(pid) => {
                cpuprof_collect::attach::check_attachable(*pid)?;
                (PollTarget::Attached(*pid), None)
            }
            Target::Watch(scope) => (PollTarget::Watched(scope.clone()), None),
            Target::Command(cmd) => {
                launcher::become_subreaper()?;
                let launch = Launch {
                    own_group: opts.own_group,
                    env: opts.env.clone(),
                    stdout: opts.stdout.as_ref().map(|f| f.try_clone()).transpose()?,
                    stderr: opts.stderr.as_ref().map(|f| f.try_clone()).transpose()?,
                };
                let child = PausedChild::spawn_with(cmd, launch)?;
                (PollTarget::Launched(child.pid()), Some(child))
            }
        };
        // After the fork: the target keeps the limit it was started with.
        launcher::raise_open_files_limit();
        let attached = !matches!(poll_target, PollTarget::Launched(_));
        // A scope has no root: its budget is the machine's as cpuprof sees it, or the
        // watched group's.
        let pid = poll_target.pid().unwrap_or(0);
        let mut machine = cpuprof_collect::budget::read_machine(match pid {
            0 => std::process::id(),
            p => p,
        });
        if let Target::Watch(scope) = &target {
            machine.cgroup = match scope {
                Scope::Machine => None,
                Scope::Cgroup(dir) => Some(
                    cpuprof_collect::cgroup::read_dir(dir)
                        .with_context(|| format!("{} is not a cgroup directory", dir.display()))?,
                ),
            };
        }
        let command = match &target {
            Target::Watch(Scope::Machine) => vec!["(every process)".to_string()],
            Target::Watch(Scope::Cgroup(dir)) => vec![format!("(cgroup {})", dir.display())],
            // Attach mode records the target's command line as the command.
            Target::Pid(pid) => std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|t| cpuprof_collect::procfs::cmdline::parse(&t))
                .unwrap_or_default(),
            Target::Command(cmd) => cmd
                .iter()
                .map(|a| cpuprof_collect::procfs::cmdline::arg_text(a.as_encoded_bytes()))
                .collect(),
        };
        let mut meta = Meta::new(command);
        meta.pid = pid;
        meta.attached = attached;
        meta.start_unix_ms = start_unix_ms;
        meta.interval_ns = opts.interval.as_nanos() as u64;
        // The rate really used: off the scheduler tick's beat (perf::effective_rate).
        meta.sample_rate_hz = opts
            .perf
            .as_ref()
            .map(|p| cpuprof_collect::perf::effective_rate(p.rate_hz));
        meta.cpuprof_version = env!("CARGO_PKG_VERSION").to_string();
        let mut builder = ProfileBuilder::new(meta, machine.clone(), origin);
        let cgroup = CgroupWatch::new(pid, machine.cgroup.clone());

        let mut poller = Poller::new(
            poll_target,
            opts.interval,
            tx.clone(),
            tree.clone(),
            stop.clone(),
        );
        poller.poll_now(); // the tree is known before the target runs

        // The kernel's exit notifications, registered before the target runs.
        let (exits, refused) = match opts.exit_accounting {
            // A scope's tasks end as they please: their last poll is enough for a window.
            _ if pid == 0 => (None, None),
            ExitSource::Auto => match ExitWatcher::open(pid, tree.clone()) {
                Ok(w) => (Some(w), None),
                Err(notice) => (None, Some(notice)),
            },
            ExitSource::Perf | ExitSource::LastPoll => (None, None),
        };
        let exits_handle = match exits {
            Some(w) => Some(
                w.spawn(tx.clone(), stop.clone())
                    .context("cannot start the exit accounting thread")?,
            ),
            None => None,
        };

        // perf before the target runs (launch) or right after attaching.
        let mut sees_every_switch = false;
        // The processes whose Python frames the Python sampler reads (perf leaves their
        // interpreter frames to it).
        let interpreted = cpuprof_collect::perf::InterpretedPids::new();
        let perf_handle = match &opts.perf {
            None => None,
            Some(perf_opts) => {
                use cpuprof_collect::perf::{PerfSampler, PerfTarget};
                let perf_target = match attached {
                    true => PerfTarget::Attach(tree.clone()),
                    false => PerfTarget::Launch(pid),
                };
                match PerfSampler::open(perf_target, perf_opts) {
                    Ok(mut sampler) => {
                        sees_every_switch = sampler.sees_every_switch();
                        if opts.python.is_some() {
                            sampler.leave_interpreter_to(interpreted.clone());
                        }
                        Some(sampler.spawn(tx.clone(), stop.clone()))
                    }
                    // No perf: one notice line, and procfs data only.
                    Err(e) => tx.send(Event::Notice(e.notice())).ok().and(None),
                }
            }
        };
        drop(warm_up);

        // Which source gives the final figures of tasks that end (docs/summary-json.md).
        let accounting = if exits_handle.is_some() {
            ExitAccounting::Taskstats
        } else if sees_every_switch && opts.exit_accounting != ExitSource::LastPoll {
            ExitAccounting::PerfSwitches
        } else {
            ExitAccounting::LastPoll
        };
        if let Some(notice) = refused {
            let instead = match accounting {
                ExitAccounting::PerfSwitches => "they come from perf's switch and exit records",
                _ => {
                    "they come from their last poll: up to one polling interval of each task's \
                     CPU shows in its parent instead"
                }
            };
            tx.send(Event::Notice(format!("{notice}; {instead}"))).ok();
        }
        if opts.exit_accounting == ExitSource::Perf && accounting != ExitAccounting::PerfSwitches {
            tx.send(Event::Notice(
                "--exit-accounting perf needs perf sampling with switch records on every CPU \
                 (no --no-stacks, --no-switches or --per-task-events; perf allowed): figures of \
                 tasks that ended come from their last poll"
                    .into(),
            ))
            .ok();
        }
        poller.exits_exact(accounting.is_exact());
        builder.handle(Event::ExitAccounting(accounting));

        let python_handle = match opts.python {
            Some(py) => Some(
                cpuprof_python::PythonSampler::new(tree.clone(), py, tx.clone(), stop.clone())
                    .publishing_to(interpreted)
                    .spawn()?,
            ),
            None => None,
        };
        drop(tx);

        Ok(Session {
            origin,
            attached,
            pid,
            stop,
            tree,
            rx,
            builder,
            cgroup,
            machine,
            child,
            poller: Some(poller),
            poll_handle: None,
            perf_handle,
            python_handle,
            exits_handle,
            next_cgroup_check: 0,
            stopped_early: false,
        })
    }

    /// Lets the target run (launch mode; attach: starts polling). The calling thread is the
    /// one [`Session::tick`] parks: the poller wakes it when the target ends.
    pub fn release(&mut self) -> Result<()> {
        let mut poller = self
            .poller
            .take()
            .context("the recording was already released")?;
        poller.wake_at_end(std::thread::current());
        self.poll_handle = Some(
            poller
                .spawn()
                .context("cannot start the procfs poller thread")?,
        );
        if let Some(c) = self.child.as_mut() {
            if let Err(e) = c.release() {
                self.stop.store(true, Ordering::Relaxed);
                if let Some(h) = self.poll_handle.take() {
                    let _ = h.join();
                }
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The target's pid (the root of the recorded tree).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Recording with `--pid` rather than launching.
    pub fn attached(&self) -> bool {
        self.attached
    }

    /// `CLOCK_MONOTONIC` ns at the start of the recording.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The processes and threads of the target now.
    pub fn tree(&self) -> &LiveTree {
        &self.tree
    }

    /// The profile so far: a live snapshot.
    pub fn profile(&self) -> &Profile {
        self.builder.profile()
    }

    /// The last `len` of the recording up to its latest poll, as a profile of its own
    /// ([`Profile::window`]), which `cpuprof_analysis::analyze` reads as it reads a whole
    /// recording.
    pub fn window(&self, len: Duration) -> Profile {
        let to = self.builder.last_poll();
        let from = to.saturating_sub(len.as_nanos() as u64);
        self.builder.profile().window(from, to)
    }

    /// Recording time (ns from its start) of the latest poll taken in.
    pub fn last_poll(&self) -> u64 {
        self.builder.last_poll()
    }

    /// Forgets what ended more than `keep` before the latest poll (a watch that runs for
    /// days keeps what its windows need, not its whole history).
    pub fn forget_older_than(&mut self, keep: Duration) {
        let t = self
            .builder
            .last_poll()
            .saturating_sub(keep.as_nanos() as u64);
        self.builder.forget_before(t);
    }

    /// Waits up to `wait` (parked; the poller unparks this thread when the target ends) and
    /// takes in what the collectors sent. Returns `true` once the recording is over (the
    /// target ended or [`Session::stop`] was called): then call [`Session::finish`].
    pub fn tick(&mut self, wait: Duration) -> bool {
        std::thread::park_timeout(wait);
        let disconnected = loop {
            match self.rx.try_recv() {
                Ok(ev) => self.builder.handle(ev),
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        let now = monotonic_ns();
        if now >= self.next_cgroup_check {
            self.cgroup.refresh();
            self.next_cgroup_check = now + CGROUP_CHECK_NS;
        }
        // The poller sets `stop` when the target ends and is then finishing its last poll.
        disconnected || self.stop.load(Ordering::Relaxed)
    }

    /// Stops recording before the target ends.
    pub fn stop(&mut self) {
        self.stopped_early |= !self.stop.swap(true, Ordering::Relaxed);
    }

    /// Joins the collectors and returns the finished, analysed recording.
    pub fn finish(mut self) -> Result<Recording> {
        self.stop.store(true, Ordering::Relaxed);
        let outcome = match self.poll_handle.take() {
            Some(h) => Some(
                h.join()
                    .map_err(|_| anyhow::anyhow!("the procfs poller panicked"))?,
            ),
            None => None,
        };
        // The samplers wait between ticks parked: wake them to see `stop` now.
        if let Some(h) = &self.perf_handle {
            h.thread().unpark();
        }
        if let Some(h) = &self.python_handle {
            h.thread().unpark();
        }
        self.tree.wake();
        if let Some(h) = self.perf_handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the perf sampler panicked"))?;
        }
        if let Some(h) = self.python_handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the Python sampler panicked"))?;
        }
        if let Some(h) = self.exits_handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the exit accounting thread panicked"))?;
        }
        for ev in self.rx.try_iter() {
            self.builder.handle(ev);
        }
        let mut end_machine = self.machine.clone();
        end_machine.cgroup = self.cgroup.finish();
        self.builder.handle(Event::Machine(end_machine));
        let end_ns = outcome.map_or_else(monotonic_ns, |o| o.end_ns);
        let mut profile = self.builder.finish(end_ns);
        profile.meta.recorder_cpu = Some(cpuprof_collect::rusage::own_cpu());
        profile.meta.recorder_max_rss_kb = Some(cpuprof_collect::rusage::own_max_rss_kb());
        cpuprof_python::merge(&mut profile);
        let analysis = cpuprof_analysis::analyze(&profile);
        Ok(Recording {
            profile,
            analysis,
            stopped_early: self.stopped_early,
        })
    }
}
