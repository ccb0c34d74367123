//! Command-line flags (clap derive) and their conversion into the options the commands use.
//!
//! `cpuprof -- CMD` is `cpuprof record -- CMD`: the record flags are accepted both at the top
//! level and after `record`. The trailing command conflicts with `--pid`; one of the two is
//! required.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// cpuprof: CPU time against wall time for every process and thread of a program, its
/// stacks, and oversubscribed thread pools.
#[derive(Debug, Parser)]
#[command(
    name = "cpuprof",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  cpuprof -- python script.py\n  cpuprof record --pid 4242 --duration 30\n  cpuprof report profile.cpuprof"
)]
pub struct Cli {
    /// What to do (default: record).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Record flags, when no subcommand is given.
    #[command(flatten)]
    pub record: RecordArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command (or attach to a process) and record it.
    Record(RecordArgs),
    /// Print the summary of a saved profile again.
    Report(ReportArgs),
    /// Run a command under alternative thread-pool settings, measure each, and recommend the
    /// fastest (docs/sweep.md).
    Sweep(SweepArgs),
    /// Watch the machine (or a process tree, or a cgroup) live: each process's CPU against
    /// its budget, run-queue wait, pools and findings now (docs/top.md).
    Top(TopArgs),
    /// Run continuously and serve Prometheus metrics and pprof profiles over HTTP (for a
    /// fleet's scrapers; docs/agent.md).
    Agent(AgentArgs),
}

/// Flags of `agent`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cpuprof agent\n  cpuprof agent --listen 0.0.0.0:9464 --match 'python|java'\n  curl -s localhost:9464/metrics\n  go tool pprof -top 'http://localhost:9464/debug/pprof/profile?seconds=10'"
)]
pub struct AgentArgs {
    /// Address to serve on (a bare port means loopback: 9464 = 127.0.0.1:9464). Other
    /// hosts can reach it only when this names an address of theirs, e.g. 0.0.0.0:9464.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,

    /// Watch this process and its descendants only.
    #[arg(long, value_name = "PID", conflicts_with = "cgroup")]
    pub pid: Option<u32>,

    /// Watch the processes of this cgroup directory (v1 or v2) and of the groups below it.
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,

    /// Export only processes whose command line (or name) matches this regular expression.
    #[arg(long = "match", value_name = "REGEX")]
    pub matcher: Option<regex::Regex>,

    /// Processes with series of their own (the busiest); the rest are summed into one.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_processes: u32,

    /// How often every thread is read and the metrics refreshed.
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,

    /// The window the findings and the gauges are over.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    pub window: Duration,
}

/// `9464` (loopback) or `ADDR:PORT`.
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("'{s}' is not PORT or ADDRESS:PORT (e.g. 127.0.0.1:9464)"))
}

/// Flags of `top`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cpuprof top\n  cpuprof top --pid 4242\n  cpuprof top --cgroup /sys/fs/cgroup/cpu/my-container\n  cpuprof top --once --json -"
)]
pub struct TopArgs {
    /// Watch this process and its descendants only.
    #[arg(long, value_name = "PID", conflicts_with = "cgroup")]
    pub pid: Option<u32>,

    /// Watch the processes of this cgroup directory (v1 or v2) and of the groups below it.
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,

    /// How often to read every thread and refresh (seconds, or with a unit: 500ms, 2s).
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,

    /// The window the figures and findings are over.
    #[arg(long, value_name = "TIME", default_value = "3s", value_parser = parse_duration)]
    pub window: Duration,

    /// Watch for one window, print it and exit (no terminal view).
    #[arg(long)]
    pub once: bool,

    /// With --once: write the refresh as JSON here (`cpuprof-top/1`; '-' = standard output)
    /// instead of a table.
    #[arg(long, value_name = "PATH", requires = "once")]
    pub json: Option<PathBuf>,

    /// Sample native stacks of the watched processes (perf) for the selected process's top
    /// functions. Off by default: it costs the watched processes.
    #[arg(long)]
    pub stacks: bool,
}

/// Flags of `sweep`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cpuprof sweep -- python train.py\n  cpuprof sweep --set OPENBLAS_NUM_THREADS=1,2,4 --runs 5 -- ./job\n  cpuprof sweep --json sweep.json -o sweep.html -- make -j4 check"
)]
pub struct SweepArgs {
    /// Candidate values of an environment variable: VAR=a,b,c (repeatable; several make a
    /// grid). Without it, candidates come from a first recording's findings.
    #[arg(long = "set", value_name = "VAR=VALUES", value_parser = parse_set)]
    pub sets: Vec<(String, Vec<String>)>,

    /// Measured runs per candidate (more when the spread is wide, up to --max-runs).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,

    /// Most runs per candidate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_runs: u32,

    /// Start no run after this long (seconds, or with a unit: 90s, 10m).
    #[arg(long, value_name = "TIME", default_value = "10m", value_parser = parse_duration)]
    pub max_time: Duration,

    /// Most candidates (the program as it is counts).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..))]
    pub max_candidates: u32,

    /// Write the sweep as JSON here (`cpuprof-sweep/1`; '-' = standard output).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write the sweep as an HTML page here.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Where each run's output goes (default: a new directory in $TMPDIR).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// How often every thread's counters are read.
    #[arg(long, value_name = "TIME", default_value = "50ms", value_parser = parse_interval)]
    pub interval: Duration,

    /// No progress bar and no table.
    #[arg(short, long)]
    pub quiet: bool,

    /// The command to sweep, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<std::ffi::OsString>,
}

fn parse_set(s: &str) -> Result<(String, Vec<String>), String> {
    cpuprof_sweep::candidates::parse_set(s)
}

/// Flags of `record`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["pid", "cmd"]))]
pub struct RecordArgs {
    /// Watch this running process and its descendants instead of running a command; it is
    /// left running when recording stops.
    #[arg(long, value_name = "PID", conflicts_with = "cmd")]
    pub pid: Option<u32>,

    /// Stop recording after this long (seconds, or with a unit: 500ms, 30s, 2m).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// How often to read every thread's counters (ms, or with a unit: 50ms, 0.1s).
    #[arg(long, value_name = "TIME", default_value = "50ms", value_parser = parse_interval)]
    pub interval: Duration,

    /// Save the whole recording to this file (`cpuprof report FILE` reads it).
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,

    /// The outputs.
    #[command(flatten)]
    pub out: OutputArgs,

    /// Pause each Python process while reading its stacks (consistent stacks, costlier;
    /// see docs/python.md).
    #[arg(long, conflicts_with = "python_nonblocking")]
    pub python_blocking: bool,

    /// Read Python stacks without pausing the process (the default).
    #[arg(long)]
    pub python_nonblocking: bool,

    /// Python stack samples per second and thread.
    #[arg(long, value_name = "HZ", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub python_rate: u32,

    /// Native stack samples per second of CPU time of each thread (perf cpu-clock). cpuprof
    /// moves it by a few percent so that samples do not keep step with the kernel's
    /// scheduler tick (250 becomes 255); the summary shows the rate used.
    #[arg(long, value_name = "HZ", default_value_t = cpuprof_collect::perf::DEFAULT_RATE_HZ, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub rate: u32,

    /// Record no native stacks or context switches (no perf events).
    #[arg(long)]
    pub no_stacks: bool,

    /// Open perf events on each of the target's tasks instead of one per CPU for the whole
    /// machine. Per-task events need no privilege beyond ptrace access to the target, but
    /// sample a thread only after a whole period of its own CPU: tasks shorter than that are
    /// never sampled (docs/stacks.md). cpuprof uses them anyway when per-CPU events are
    /// refused (no CAP_PERFMON, `perf_event_paranoid` > 0).
    #[arg(long, conflicts_with = "no_stacks")]
    pub per_task_events: bool,

    /// Record no context switches: the timeline's running and waiting time then come from
    /// procfs at each poll. The kernel's switch records cost the target ~0.8 µs per context
    /// switch; an oversubscribed OpenBLAS pool switches tens of thousands of times per second
    /// (docs/benchmarks.md).
    #[arg(long, conflicts_with = "no_stacks")]
    pub no_switches: bool,

    /// Where the final figures of tasks that end come from: `auto` = the kernel's exit
    /// notifications (taskstats: exact for every task, however short; needs root or
    /// CAP_NET_ADMIN) when it may, else perf's switch and exit records when perf sees every
    /// switch, else the last poll; `perf` = perf's records (CPU exact, run-queue wait after
    /// preemptions only); `last-poll` = the last poll (up to one interval of each task's CPU
    /// then shows in its parent's row).
    #[arg(long, value_name = "SOURCE", value_enum, default_value_t = ExitSource::Auto)]
    pub exit_accounting: ExitSource,

    /// The command to run, after `--` (any bytes: it is passed on as given).
    #[arg(last = true, value_name = "COMMAND", num_args = 1.., value_parser = clap::value_parser!(std::ffi::OsString))]
    pub cmd: Vec<std::ffi::OsString>,
}

/// `--exit-accounting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExitSource {
    /// Taskstats when it may, else perf's records, else the last poll.
    Auto,
    /// perf's switch and exit records.
    Perf,
    /// The last poll.
    LastPoll,
}

impl From<ExitSource> for cpuprof_session::ExitSource {
    fn from(s: ExitSource) -> Self {
        match s {
            ExitSource::Auto => cpuprof_session::ExitSource::Auto,
            ExitSource::Perf => cpuprof_session::ExitSource::Perf,
            ExitSource::LastPoll => cpuprof_session::ExitSource::LastPoll,
        }
    }
}

impl RecordArgs {
    /// The Python sampler's options.
    pub fn python_options(&self) -> cpuprof_python::PythonOptions {
        cpuprof_python::PythonOptions {
            rate_hz: self.python_rate,
            blocking: self.python_blocking && !self.python_nonblocking,
        }
    }

    /// The perf sampler's options.
    pub fn perf_options(&self) -> cpuprof_collect::perf::PerfOptions {
        cpuprof_collect::perf::PerfOptions {
            rate_hz: self.rate,
            machine_wide: !self.per_task_events,
            context_switches: !self.no_switches,
            ..Default::default()
        }
    }
}

/// Flags of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A profile saved with `--save`.
    #[arg(value_name = "PROFILE")]
    pub path: PathBuf,

    /// The outputs.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The outputs of `record` and `report`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Write the summary JSON here ('-' = standard output).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write the HTML report here (`record` without it, when stderr is a terminal:
    /// cpuprof-PROGRAM-YYYYmmdd-HHMMSS.html in the current directory).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Write folded stacks (`process;thread;frame;...;leaf COUNT`, for inferno/FlameGraph) here.
    #[arg(long, value_name = "PATH")]
    pub collapsed: Option<PathBuf>,

    /// Write the stacks in speedscope's format here (one profile per thread, weighted by its
    /// CPU time; open it at speedscope.app or with the `speedscope` command).
    #[arg(long, value_name = "PATH")]
    pub speedscope: Option<PathBuf>,

    /// Write the Trace Event Format here (Perfetto's UI, chrome://tracing): each thread's
    /// running and runnable time as slices, cores busy and run-queue wait as counters, the
    /// findings as instant events.
    #[arg(long, value_name = "PATH")]
    pub perfetto: Option<PathBuf>,

    /// Write the stacks in pprof's format here (gzipped protobuf: `go tool pprof`, Pyroscope,
    /// Parca, Grafana), sample types samples/count and cpu/nanoseconds, labelled with pid,
    /// tid, thread name and runtime.
    #[arg(long, value_name = "PATH")]
    pub pprof: Option<PathBuf>,

    /// Write the Firefox Profiler's processed format here (open it at profiler.firefox.com):
    /// every process and thread, stack samples with their thread's CPU since the previous
    /// one (CPU against wall time in its activity graph), the findings as markers.
    #[arg(long, value_name = "PATH")]
    pub firefox: Option<PathBuf>,

    /// Print no summary or status line (errors only).
    #[arg(short, long)]
    pub quiet: bool,

    /// Exit with code 3 when a finding of this severity or worse is present (for CI;
    /// docs/findings.md). A target that failed keeps its own exit code.
    #[arg(long, value_name = "SEVERITY", value_enum)]
    pub fail_on: Option<FailOn>,
}

/// The severities `--fail-on` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any finding.
    Info,
    /// A warning or an error.
    Warning,
    /// An error.
    Error,
}

impl From<FailOn> for cpuprof_model::Severity {
    fn from(f: FailOn) -> Self {
        match f {
            FailOn::Info => cpuprof_model::Severity::Info,
            FailOn::Warning => cpuprof_model::Severity::Warning,
            FailOn::Error => cpuprof_model::Severity::Error,
        }
    }
}

/// Exit code of `--fail-on` when a finding of that severity or worse is present.
pub const FINDINGS_EXIT_CODE: i32 = 3;

/// The exit code after `--fail-on`: [`FINDINGS_EXIT_CODE`] instead of a success when a
/// finding is at least `fail_on`; any other code (the target failed) is kept.
pub fn gate(fail_on: Option<FailOn>, analysis: &cpuprof_model::Analysis, code: i32) -> i32 {
    match (fail_on.map(cpuprof_model::Severity::from), analysis.worst()) {
        (Some(limit), Some(worst)) if code == 0 && worst >= limit => FINDINGS_EXIT_CODE,
        _ => code,
    }
}

/// Parses `1.5`, `500ms`, `30s`, `2m` (a bare number is `default_unit`).
fn parse_time(s: &str, default_unit: f64) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, default_unit)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a time (examples: 500ms, 30s, 2m)"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("'{s}' must be more than zero"));
    }
    Duration::try_from_secs_f64(v * unit).map_err(|_| format!("'{s}' is too long"))
}

/// Longest `--duration`: a year (an attach that long is a service, not a recording).
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest `--interval`: a poll a minute still shows a timeline.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_time(s, 1.0)?;
    if d > MAX_DURATION {
        return Err(format!("'{s}' is longer than a year"));
    }
    Ok(d)
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_time(s, 1e-3)?;
    if d < Duration::from_millis(1) {
        return Err(format!("'{s}' is shorter than 1ms"));
    }
    if d > MAX_INTERVAL {
        return Err(format!("'{s}' is longer than 60s"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fail_on_gate() {
        use cpuprof_model::{Analysis, Finding, Severity};
        let with = |severity| Analysis {
            findings: vec![Finding {
                id: "x".into(),
                severity,
                title: String::new(),
                detail: String::new(),
                fix: String::new(),
                setting: Default::default(),
                est_saving_cpu_s: 0.0,
                est_saving_wall_s: 0.0,
                pids: vec![],
                tids: vec![],
            }],
            ..Default::default()
        };
        assert_eq!(gate(Some(FailOn::Warning), &with(Severity::Error), 0), 3);
        assert_eq!(gate(Some(FailOn::Error), &with(Severity::Warning), 0), 0);
        assert_eq!(gate(None, &with(Severity::Error), 0), 0);
        assert_eq!(gate(Some(FailOn::Warning), &with(Severity::Error), 7), 7);
        assert_eq!(gate(Some(FailOn::Warning), &Analysis::default(), 0), 0);
        assert!(Cli::try_parse_from(["cpuprof", "--fail-on", "fatal", "--", "ls"]).is_err());
        assert!(Cli::try_parse_from(["cpuprof", "--fail-on", "info", "--", "ls"]).is_ok());
        assert!(Cli::try_parse_from(["cpuprof", "report", "--fail-on", "error", "p"]).is_ok());
    }

    #[test]
    fn times() {
        assert_eq!(parse_interval("50").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_interval("0.1s").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("-1").is_err());
        assert!(parse_interval("0.1ms").is_err());
        assert!(parse_duration("abc").is_err());
        // Out of range: an error, never a panic.
        assert!(parse_duration("1e20").unwrap_err().contains("too long"));
        assert!(parse_duration("600000m").unwrap_err().contains("year"));
        assert!(parse_duration("525000m").is_ok());
        assert!(parse_interval("1e20").is_err());
        assert!(parse_interval("61s").unwrap_err().contains("60s"));
        assert!(parse_duration("inf").is_err());
        assert!(parse_duration("nan").is_err());
    }

    #[test]
    fn default_subcommand_and_conflicts() {
        let c = Cli::try_parse_from(["cpuprof", "--", "sleep", "1"]).unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.record.cmd, vec!["sleep", "1"]);
        let c = Cli::try_parse_from(["cpuprof", "record", "--pid", "5"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Record(RecordArgs { pid: Some(5), .. }))
        ));
        assert!(Cli::try_parse_from(["cpuprof", "--pid", "5", "--", "ls"]).is_err());
        assert!(Cli::try_parse_from(["cpuprof", "record"]).is_err());
        assert!(Cli::try_parse_from(["cpuprof"]).is_err());
        let c = Cli::try_parse_from(["cpuprof", "report", "x.cpuprof", "--json", "-"]).unwrap();
        assert!(matches!(c.command, Some(Command::Report(_))));
    }
}
