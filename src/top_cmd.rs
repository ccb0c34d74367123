//! `cpuprof top`: a [`cpuprof_live::Watch`] shown full-screen ([`cpuprof_top::run`]) or, with
//! `--once`, one window printed as a table or JSON.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cpuprof_live::{Watch, WatchOptions};
use cpuprof_session::{Scope, Target};

use crate::cli::TopArgs;
use crate::signals;

/// How long `r` records the selected process.
const RECORD_SECS: u32 = 10;

/// Runs `top`; returns the exit code.
pub fn run(args: TopArgs) -> Result<i32> {
    if !args.once && !std::io::stdout().is_terminal() {
        bail!("cpuprof top needs a terminal; for scripts use --once (with --json - for JSON)");
    }
    let target = match (&args.pid, &args.cgroup) {
        (Some(pid), _) => Target::Pid(*pid),
        (None, Some(dir)) => Target::Watch(Scope::Cgroup(dir.clone())),
        (None, None) => Target::Watch(Scope::Machine),
    };
    let opts = WatchOptions {
        interval: args.interval,
        window: args.window,
        stacks: args.stacks,
    };
    let mut watch = Watch::start(target, opts)?;
    signals::install(None, false);
    if args.once {
        let code = once(&mut watch, &args);
        watch.stop()?;
        return code;
    }
    let mut record = |pid: u32| start_recording(pid);
    let result = cpuprof_top::run(&mut watch, args.interval, &mut record, &|| {
        signals::interrupts() > 0
    });
    watch.stop()?;
    result.map(|_| 0)
}

/// One window: waits for it to fill, then prints it.
fn once(watch: &mut Watch, args: &TopArgs) -> Result<i32> {
    // The window, and half an interval for its last poll to come in.
    let end = Instant::now() + args.window + args.interval / 2;
    while Instant::now() < end && signals::interrupts() == 0 {
        let left = end.saturating_duration_since(Instant::now());
        if watch.tick(left.min(Duration::from_millis(200))) {
            break;
        }
    }
    // The window's last poll has come in.
    watch.tick(Duration::ZERO);
    let snap = watch.snapshot();
    let text = match &args.json {
        Some(_) => serde_json::to_string_pretty(&snap)? + "\n",
        None => cpuprof_top::text::table(&snap),
    };
    match args.json.as_deref() {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?
        }
        _ => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(0)
}

/// `r`: `cpuprof record --pid PID --duration 10s` into an HTML report in the current
/// directory, in the background.
fn start_recording(pid: u32) -> Result<(Child, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find cpuprof's own executable")?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = std::env::current_dir()?.join(format!("cpuprof-top-{pid}-{stamp}.html"));
    let child = Command::new(exe)
        .args(["record", "--quiet", "--pid", &pid.to_string()])
        .args(["--duration", &format!("{RECORD_SECS}s"), "-o"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start cpuprof record")?;
    Ok((child, path))
}
