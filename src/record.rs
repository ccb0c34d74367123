//! `cpuprof record`: one recording ([`cpuprof_session::Session`]) wired to the terminal and
//! the outputs.
//!
//! Check the outputs → launch paused (or check the `--pid`) with every collector running →
//! signals → release → take in events (status line, `--duration`, interrupts) → finish →
//! outputs and the exit code.

use std::time::Duration;

use anyhow::Result;
use cpuprof_collect::clock::monotonic_ns;
use cpuprof_collect::launcher;
use cpuprof_session::{Options, Session, Target};

use crate::cli::RecordArgs;
use crate::outputs::{self, Outputs};
use crate::signals;
use crate::status_line::StatusLine;

/// How often the main thread takes in what the collectors sent (and updates the status line).
const MAIN_TICK_NS: u64 = 200_000_000;

/// Runs `record`; returns cpuprof's exit code (the target's, in launch mode).
pub fn run(args: RecordArgs) -> Result<i32> {
    // Every output path is checked before anything runs: a recording cannot be made again.
    let out = Outputs {
        save: args.save.clone(),
        json: args.out.json.clone(),
        html: args.out.output.clone(),
        collapsed: args.out.collapsed.clone(),
        speedscope: args.out.speedscope.clone(),
        perfetto: args.out.perfetto.clone(),
        pprof: args.out.pprof.clone(),
        firefox: args.out.firefox.clone(),
        quiet: args.out.quiet,
        rescue: true,
    };
    out.check()?;
    // Without a terminal, the target gets a process group of its own, and cpuprof passes
    // signals on (src/signals.rs).
    let own_group = args.pid.is_none() && !launcher::has_controlling_terminal();
    let target = match args.pid {
        Some(pid) => Target::Pid(pid),
        None => Target::Command(args.cmd.clone()),
    };
    let mut session = Session::launch(target, session_options(&args, own_group))?;
    let attached = session.attached();
    signals::install((!attached).then_some(session.pid()), own_group);
    session.release()?;

    let mut status = StatusLine::new(args.out.quiet);
    let origin = session.origin();
    let deadline = args.duration.map(|d| origin + d.as_nanos() as u64);
    loop {
        // Look at the channel a few times a second rather than at every message: each wakeup
        // of this thread would preempt a thread of the target. The poller unparks it when
        // the target ends, so nothing waits out the period then.
        let wait = deadline.map_or(MAIN_TICK_NS, |d| {
            d.saturating_sub(monotonic_ns())
                .clamp(1_000_000, MAIN_TICK_NS)
        });
        if session.tick(Duration::from_nanos(wait)) {
            break;
        }
        let now = monotonic_ns();
        status.update(now, origin, session.tree(), session.profile());
        let interrupted = signals::interrupts() >= if attached { 1 } else { 2 };
        if deadline.is_some_and(|d| now >= d) || interrupted {
            session.stop();
        }
    }
    status.clear();
    let rec = session.finish()?;

    let mut out = out;
    // Interactive runs get a report by default; scripts and tests only what they ask for.
    if out.html.is_none() && !args.out.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        out.html = Some(cpuprof_report::html::default_file_name(&rec.profile).into());
    }
    let written = outputs::write_all(&out, &rec.profile, &rec.analysis);
    let code = exit_code(&rec.profile.meta, attached, rec.stopped_early);
    let code = crate::cli::gate(args.out.fail_on, &rec.analysis, code);
    // An output that could not be written is an error unless the target's own failure says
    // more (its code is kept).
    Ok(if !written.ok() && code == 0 {
        outputs::OUTPUT_FAILED
    } else {
        code
    })
}

/// The session's options from `record`'s flags.
pub fn session_options(args: &RecordArgs, own_group: bool) -> Options {
    Options {
        interval: args.interval,
        perf: (!args.no_stacks).then(|| args.perf_options()),
        python: Some(args.python_options()),
        exit_accounting: args.exit_accounting.into(),
        own_group,
        ..Options::default()
    }
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
