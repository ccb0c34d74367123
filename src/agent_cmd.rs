//! `cpuprof agent`: flags and signals around [`cpuprof_agent::run`].

use anyhow::Result;
use cpuprof_agent::AgentOptions;
use cpuprof_session::{Scope, Target};

use crate::cli::AgentArgs;
use crate::signals;

/// Runs `agent` until SIGINT, SIGTERM or SIGHUP; returns the exit code.
pub fn run(args: AgentArgs) -> Result<i32> {
    let target = match (&args.pid, &args.cgroup) {
        (Some(pid), _) => Target::Pid(*pid),
        (None, Some(dir)) => Target::Watch(Scope::Cgroup(dir.clone())),
        (None, None) => Target::Watch(Scope::Machine),
    };
    signals::install(None, false);
    let opts = AgentOptions {
        listen: args.listen,
        target,
        matcher: args.matcher,
        max_processes: args.max_processes as usize,
        interval: args.interval,
        window: args.window,
    };
    let ready =
        |addr| eprintln!("cpuprof agent: serving http://{addr}/metrics and /debug/pprof/profile");
    cpuprof_agent::run(opts, &ready, &|| signals::interrupts() > 0)?;
    Ok(0)
}
