//! `cpuprof record`: the wiring of one recording.
//!
//! Launch paused (or check the `--pid`) → start the collectors → release the target → feed
//! every event into the [`ProfileBuilder`] → stop → merge Python stacks → analyse → outputs.
//! The collectors share one stop flag: the procfs poller sets it when the target ends;
//! `--duration` and interrupts set it from here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use cpuprof_collect::cgroup::CgroupWatch;
use cpuprof_collect::clock::monotonic_ns;
use cpuprof_collect::exits::ExitWatcher;
use cpuprof_collect::launcher::{self, PausedChild};
use cpuprof_collect::poller::{Poller, Target};
use cpuprof_collect::tree::LiveTree;
use cpuprof_model::{Event, ExitAccounting, Meta, ProfileBuilder};

use crate::cli::{ExitSource, RecordArgs};
use crate::outputs::{self, Outputs};
use crate::signals;
use crate::status_line::StatusLine;

/// How often the main thread takes in what the collectors sent (and updates the status line).
const MAIN_TICK_NS: u64 = 200_000_000;
/// How often the target's cgroup is re-read (it may move itself into a container's group).
const CGROUP_CHECK_NS: u64 = 250_000_000;

/// Runs `record`; returns cpuprof's exit code (the target's, in launch mode).
pub fn run(args: RecordArgs) -> Result<i32> {
    // Every output path is checked before anything runs: a recording cannot be made again.
    let out = Outputs {
        save: args.save.clone(),
        json: args.json.clone(),
        html: args.output.clone(),
        collapsed: args.collapsed.clone(),
        quiet: args.quiet,
        rescue: true,
    };
    out.check()?;
    let origin = monotonic_ns();
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Event>();
    let tree = LiveTree::default();

    // Without a terminal, the target gets a process group of its own, and cpuprof passes
    // signals on (src/signals.rs).
    let own_group = args.pid.is_none() && !launcher::has_controlling_terminal();
    // Launch paused, or check the process to attach to. The fork happens while cpuprof is
    // still single-threaded.
    let (target, mut child) = match args.pid {
        Some(pid) => {
            cpuprof_collect::attach::check_attachable(pid)?;
            (Target::Attached(pid), None)
        }
        None => {
            launcher::become_subreaper()?;
            let child = PausedChild::spawn(&args.cmd, own_group)?;
            (Target::Launched(child.pid()), Some(child))
        }
    };
    // After the fork: the target keeps the limit it was started with.
    launcher::raise_open_files_limit();
    let attached = matches!(target, Target::Attached(_));
    signals::install((!attached).then_some(target.pid()), own_group);

    let machine = cpuprof_collect::budget::read_machine(target.pid());
    let command = if attached {
        // Attach mode records the target's command line as the command.
        std::fs::read(format!("/proc/{}/cmdline", target.pid()))
            .map(|t| cpuprof_collect::procfs::cmdline::parse(&t))
            .unwrap_or_default()
    } else {
        args.cmd
            .iter()
            .map(|a| cpuprof_collect::procfs::cmdline::arg_text(a.as_encoded_bytes()))
            .collect()
    };
    let mut meta = Meta::new(command);
    meta.pid = target.pid();
    meta.attached = attached;
    meta.start_unix_ms = start_unix_ms;
    meta.interval_ns = args.interval.as_nanos() as u64;
    // The rate really used: off the scheduler tick's beat (perf::effective_rate).
    meta.sample_rate_hz =
        (!args.no_stacks).then(|| cpuprof_collect::perf::effective_rate(args.rate));
    meta.cpuprof_version = env!("CARGO_PKG_VERSION").to_string();
    let mut builder = ProfileBuilder::new(meta, machine.clone(), origin);
    let mut cgroup = CgroupWatch::new(target.pid(), machine.cgroup.clone());

    let mut poller = Poller::new(
        target,
        args.interval,
        tx.clone(),
        tree.clone(),
        stop.clone(),
    );
    poller.poll_now(); // the tree is known before the target runs

    // The kernel's exit notifications, registered before the target runs.
    let (exits, refused) = match args.exit_accounting {
        ExitSource::Auto => match ExitWatcher::open(target.pid(), tree.clone()) {
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

    // ---- perf sampler: start here (before the child is released / right after attach),
    //      with target.pid(), tree.clone(), tx.clone(), stop.clone(). ----
    let mut sees_every_switch = false;
    let perf_handle = if args.no_stacks {
        None
    } else {
        use cpuprof_collect::perf::{PerfSampler, PerfTarget};
        let perf_target = match attached {
            true => PerfTarget::Attach(tree.clone()),
            false => PerfTarget::Launch(target.pid()),
        };
        match PerfSampler::open(perf_target, &args.perf_options()) {
            Ok(sampler) => {
                sees_every_switch = sampler.sees_every_switch();
                Some(sampler.spawn(tx.clone(), stop.clone()))
            }
            // No perf: one notice line, and procfs data only.
            Err(e) => tx.send(Event::Notice(e.notice())).ok().and(None),
        }
    };

    // Which source gives the final figures of tasks that end (docs/summary-json.md).
    let accounting = if exits_handle.is_some() {
        ExitAccounting::Taskstats
    } else if sees_every_switch && args.exit_accounting != ExitSource::LastPoll {
        ExitAccounting::PerfSwitches
    } else {
        ExitAccounting::LastPoll
    };
    if let Some(notice) = refused {
        let instead = match accounting {
            ExitAccounting::PerfSwitches => "they come from perf's switch and exit records",
            _ => {
                "they come from their last poll: up to one polling interval of each task's CPU \
                 shows in its parent instead"
            }
        };
        tx.send(Event::Notice(format!("{notice}; {instead}"))).ok();
    }
    if args.exit_accounting == ExitSource::Perf && accounting != ExitAccounting::PerfSwitches {
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

    // ---- Python sampler: start here, with tree.clone(), tx.clone(), stop.clone(). ----
    let python_handle = cpuprof_python::PythonSampler::new(
        tree.clone(),
        args.python_options(),
        tx.clone(),
        stop.clone(),
    )
    .spawn()?;

    poller.wake_at_end(std::thread::current());
    let poll_handle = poller
        .spawn()
        .context("cannot start the procfs poller thread")?;
    if let Some(c) = child.as_mut() {
        if let Err(e) = c.release() {
            stop.store(true, Ordering::Relaxed);
            let _ = poll_handle.join();
            return Err(e.into());
        }
    }
    drop(tx);

    let mut status = StatusLine::new(args.quiet);
    let deadline = args.duration.map(|d| origin + d.as_nanos() as u64);
    let mut stopped_early = false;
    let mut next_cgroup_check = 0;
    loop {
        // Look at the channel a few times a second rather than at every message: each wakeup
        // of this thread would preempt a thread of the target. The poller unparks it when
        // the target ends, so nothing waits out the period then.
        let wait = deadline.map_or(MAIN_TICK_NS, |d| {
            d.saturating_sub(monotonic_ns())
                .clamp(1_000_000, MAIN_TICK_NS)
        });
        std::thread::park_timeout(Duration::from_nanos(wait));
        let disconnected = loop {
            match rx.try_recv() {
                Ok(ev) => builder.handle(ev),
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if disconnected {
            break;
        }
        let now = monotonic_ns();
        status.update(now, origin, &tree, builder.profile());
        if now >= next_cgroup_check {
            cgroup.refresh();
            next_cgroup_check = now + CGROUP_CHECK_NS;
        }
        let interrupted = signals::interrupts() >= if attached { 1 } else { 2 };
        if deadline.is_some_and(|d| now >= d) || interrupted {
            stopped_early |= !stop.swap(true, Ordering::Relaxed);
        }
        // The poller sets `stop` when the target ends and is then finishing its last poll:
        // join it now rather than wait for another message.
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    status.clear();
    let outcome = poll_handle
        .join()
        .map_err(|_| anyhow::anyhow!("the procfs poller panicked"))?;
    // The samplers wait between ticks parked: wake them to see `stop` now.
    if let Some(h) = &perf_handle {
        h.thread().unpark();
    }
    python_handle.thread().unpark();
    tree.wake();

    // ---- join the perf and Python samplers here (stop is set). ----
    if let Some(h) = perf_handle {
        h.join()
            .map_err(|_| anyhow::anyhow!("the perf sampler panicked"))?;
    }
    python_handle
        .join()
        .map_err(|_| anyhow::anyhow!("the Python sampler panicked"))?;
    if let Some(h) = exits_handle {
        h.join()
            .map_err(|_| anyhow::anyhow!("the exit accounting thread panicked"))?;
    }

    for ev in rx.try_iter() {
        builder.handle(ev);
    }
    let mut end_machine = machine;
    end_machine.cgroup = cgroup.finish();
    builder.handle(Event::Machine(end_machine));
    let mut profile = builder.finish(outcome.end_ns);
    profile.meta.recorder_cpu = Some(cpuprof_collect::rusage::own_cpu());
    profile.meta.recorder_max_rss_kb = Some(cpuprof_collect::rusage::own_max_rss_kb());

    // ---- Python stack merge here: cpuprof_python::merge(&mut profile); ----
    cpuprof_python::merge(&mut profile);

    let analysis = cpuprof_analysis::analyze(&profile);
    let mut out = out;
    // Interactive runs get a report by default; scripts and tests only what they ask for.
    if out.html.is_none() && !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        out.html = Some(cpuprof_report::html::default_file_name(&profile).into());
    }
    let written = outputs::write_all(&out, &profile, &analysis);
    let code = exit_code(&profile.meta, attached, stopped_early);
    let code = crate::cli::gate(args.fail_on, &analysis, code);
    // An output that could not be written is an error unless the target's own failure says
    // more (its code is kept).
    Ok(if !written.ok() && code == 0 {
        outputs::OUTPUT_FAILED
    } else {
        code
    })
}

/// cpuprof's exit code: the target's (128+N for signal N) in launch mode; 0 when attached or
/// when recording stopped before the target ended (130 after an interrupt).
fn exit_code(meta: &cpuprof_model::Meta, attached: bool, stopped_early: bool) -> i32 {
    if attached || stopped_early {
        return if signals::interrupts() > 0 && !attached {
            130
        } else {
            0
        };
    }
    match (meta.exit_code, meta.signal) {
        (_, Some(sig)) => 128 + sig,
        (Some(code), None) => code,
        (None, None) => 0,
    }
}
