//! The summary printed on stderr at the end of a recording (and by `cpuprof report`): the
//! findings first, then what `time` would say plus cores busy against the budget and run-queue
//! wait, then a small table of processes and their busiest threads.

use std::fmt::Write;

use cpuprof_model::{secs, Analysis, ExitAccounting, Finding, Process, Profile, Severity, Thread};

use crate::escape::{command_line, printable};
use crate::stacks;
use crate::summary::avg_cores_busy;

/// Processes listed in the table; the rest are summed on one line.
pub const MAX_PROCESSES: usize = 12;
/// Threads listed under each process; the rest are summed on one line.
pub const MAX_THREADS: usize = 4;

/// The findings, most costly first (estimated wall saving, then CPU saving, then severity).
pub fn findings_by_cost(analysis: &Analysis) -> Vec<&Finding> {
    let mut v: Vec<&Finding> = analysis.findings.iter().collect();
    v.sort_by(|a, b| {
        b.est_saving_wall_s
            .total_cmp(&a.est_saving_wall_s)
            .then(b.est_saving_cpu_s.total_cmp(&a.est_saving_cpu_s))
            .then(b.severity.cmp(&a.severity))
    });
    v
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn severity(&self, s: Severity) -> String {
        let code = match s {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "1;36",
        };
        self.paint(code, s.as_str())
    }
}

/// Seconds, with fewer decimals as they grow.
pub fn fmt_s(s: f64) -> String {
    if s.abs() < 10.0 {
        format!("{s:.2} s")
    } else if s.abs() < 100.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

fn num(s: f64) -> String {
    if s.abs() < 100.0 {
        format!("{s:.2}")
    } else {
        format!("{s:.0}")
    }
}

/// The terminal summary; ANSI colours when `color`.
pub fn render(profile: &Profile, analysis: &Analysis, color: bool) -> String {
    let st = Style { color };
    let mut o = String::new();
    let findings = findings_by_cost(analysis);
    if !findings.is_empty() {
        let _ = writeln!(o, "{}", st.bold("cpuprof found:"));
        for f in findings {
            let _ = writeln!(
                o,
                "  {} {}",
                st.severity(f.severity),
                st.bold(&printable(&f.title))
            );
            if f.est_saving_wall_s > 0.0 || f.est_saving_cpu_s > 0.0 {
                let _ = writeln!(
                    o,
                    "    fixing it saves about {} of wall time and {} of CPU",
                    fmt_s(f.est_saving_wall_s),
                    fmt_s(f.est_saving_cpu_s)
                );
            }
            for line in f.detail.lines() {
                let _ = writeln!(o, "    {}", printable(line));
            }
            for (i, line) in f.fix.lines().enumerate() {
                let head = if i == 0 { "fix:" } else { "    " };
                let _ = writeln!(o, "    {} {}", st.bold(head), printable(line));
            }
        }
        o.push('\n');
    }
    header(profile, &st, &mut o);
    o.push('\n');
    table(profile, analysis, &st, &mut o);
    o
}

fn header(profile: &Profile, st: &Style, o: &mut String) {
    let meta = &profile.meta;
    let cpu = profile.cpu();
    let how = match (meta.exit_code, meta.signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) if meta.attached => format!("attached to pid {}", meta.pid),
        (None, None) => "still running".to_string(),
    };
    let _ = writeln!(
        o,
        "{} {}  {}",
        st.bold("cpuprof:"),
        printable(&command_line(&meta.command)),
        st.dim(&format!("({how})"))
    );
    let budget = profile.machine.cpu_budget();
    let busy = avg_cores_busy(profile);
    let _ = writeln!(o, "  wall        {}", fmt_s(secs(meta.wall_ns)));
    let _ = writeln!(
        o,
        "  CPU         {}  (user {}, sys {})",
        fmt_s(secs(cpu.total_ns())),
        fmt_s(secs(cpu.user_ns)),
        fmt_s(secs(cpu.sys_ns))
    );
    let over = if busy > budget * 1.001 {
        "  (over budget)"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "  cores busy  {busy:.2} of {} on average{over}",
        fmt_budget(budget)
    );
    let runq = secs(profile.runq_ns());
    let share = if cpu.total_ns() > 0 {
        format!(" ({:.0}% of CPU time)", 100.0 * runq / secs(cpu.total_ns()))
    } else {
        String::new()
    };
    let _ = writeln!(o, "  run queue   {} waiting for a core{share}", fmt_s(runq));
    let samples = stacks::samples(profile).len();
    let rate = meta
        .sample_rate_hz
        .map(|r| format!(" at {r} Hz"))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "  samples     {samples}{rate} ({} lost)",
        meta.lost_samples
    );
    let exits = match meta.exit_accounting {
        ExitAccounting::Taskstats => "exact figures of every task at its exit (taskstats)",
        ExitAccounting::PerfSwitches => {
            "every task's CPU from its on-CPU intervals (perf switch and exit records)"
        }
        ExitAccounting::LastPoll => "tasks that ended counted to their last poll",
    };
    let teardown = meta
        .exit_teardown_ns
        .filter(|&t| t >= 5_000_000)
        .map(|t| format!("; {} more in exit teardown", fmt_s(secs(t))))
        .unwrap_or_default();
    let _ = writeln!(o, "  exits       {exits}{teardown}");
    if let Some(own) = meta.recorder_cpu {
        let _ = writeln!(
            o,
            "  overhead    {} of CPU used by cpuprof itself ({:.1}% of the budget)",
            fmt_s(secs(own.total_ns())),
            100.0 * secs(own.total_ns()) / (secs(meta.wall_ns) * budget).max(1e-9)
        );
    }
    for n in &profile.notices {
        let _ = writeln!(o, "  {} {}", st.bold("note:"), printable(n));
    }
}

/// "2" for whole budgets, "1.5" otherwise.
pub fn fmt_budget(b: f64) -> String {
    if (b - b.round()).abs() < 1e-9 {
        format!("{b:.0}")
    } else {
        format!("{b:.2}")
    }
}

fn wall_of(start: u64, end: Option<u64>, profile: &Profile) -> f64 {
    secs(end.unwrap_or(profile.meta.wall_ns).saturating_sub(start))
}

fn table(profile: &Profile, analysis: &Analysis, st: &Style, o: &mut String) {
    let _ = writeln!(
        o,
        "{}",
        st.bold(&format!(
            "  {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
            "PID/TID", "CPU s", "user s", "sys s", "runq s", "wall s", "command / thread"
        ))
    );
    let mut procs: Vec<&Process> = profile.processes.iter().collect();
    procs.sort_by(|a, b| b.cpu_ns().cmp(&a.cpu_ns()).then(a.pid.cmp(&b.pid)));
    for p in procs.iter().take(MAX_PROCESSES) {
        let _ = writeln!(
            o,
            "  {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
            p.pid,
            num(secs(p.cpu_ns())),
            num(secs(p.cpu.user_ns)),
            num(secs(p.cpu.sys_ns)),
            num(secs(p.runq_ns)),
            num(wall_of(p.start_ns, p.end_ns, profile)),
            truncate(&printable(&command_line(&p.command)), 60)
        );
        let mut threads: Vec<&Thread> = p.threads.iter().collect();
        threads.sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(a.tid.cmp(&b.tid)));
        for t in threads.iter().take(MAX_THREADS) {
            let class = analysis
                .threads
                .get(&t.tid)
                .map(|c| match &c.runtime {
                    Some(r) => format!("  [{} {}]", printable(r), c.role.as_str()),
                    None => format!("  [{}]", c.role.as_str()),
                })
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}    {}{}",
                t.tid,
                num(secs(t.cpu_ns)),
                num(secs(t.user_ns)),
                num(secs(t.sys_ns)),
                num(secs(t.runq_ns)),
                num(wall_of(t.start_ns, t.end_ns, profile)),
                printable(&t.name),
                st.dim(&class)
            );
        }
        if threads.len() > MAX_THREADS {
            let rest = &threads[MAX_THREADS..];
            let _ = writeln!(
                o,
                "  {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}    {}",
                "",
                num(secs(rest.iter().map(|t| t.cpu_ns).sum())),
                "",
                "",
                num(secs(rest.iter().map(|t| t.runq_ns).sum())),
                "",
                st.dim(&format!("... {} more threads", rest.len()))
            );
        }
    }
    if procs.len() > MAX_PROCESSES {
        let rest = &procs[MAX_PROCESSES..];
        let _ = writeln!(
            o,
            "  {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
            "",
            num(secs(rest.iter().map(|p| p.cpu_ns()).sum())),
            "",
            "",
            num(secs(rest.iter().map(|p| p.runq_ns).sum())),
            "",
            st.dim(&format!("... {} more processes", rest.len()))
        );
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};

    #[test]
    fn findings_come_first_then_times_then_table() {
        let text = render(&profile(), &analysis(), false);
        let f = text.find("3 threads on 2 cores").unwrap();
        let fix = text.find("fix: OPENBLAS_NUM_THREADS=1").unwrap();
        let wall = text.find("wall        2.00 s").unwrap();
        let table = text.find("PID/TID").unwrap();
        assert!(f < fix && fix < wall && wall < table, "{text}");
        assert!(text.contains("CPU         2.00 s  (user 2.00 s, sys 0.00 s)"));
        assert!(text.contains("cores busy  1.00 of 2 on average"));
        assert!(text.contains("run queue   0.50 s waiting for a core (25% of CPU time)"));
        assert!(text.contains("samples     6 at 3 Hz (0 lost)"));
        assert!(
            !text.contains("overhead"),
            "no line for profiles without the recorder's CPU"
        );
        let mut p = profile();
        p.meta.recorder_cpu = Some(cpuprof_model::CpuTimes {
            user_ns: 30_000_000,
            sys_ns: 10_000_000,
        });
        let with = render(&p, &analysis(), false);
        assert!(
            with.contains("overhead    0.04 s of CPU used by cpuprof itself (1.0% of the budget)"),
            "{with}"
        );
        assert!(text.contains("[OpenBLAS blas-worker]"));
        assert!(!text.contains('\x1b'));
        // The busiest thread is listed before the other one.
        let w = text.find("worker <b>").unwrap();
        assert!(text[w..].contains("    python  [python]"), "{text}");
    }

    #[test]
    fn control_characters_from_the_target_are_escaped() {
        let mut p = profile();
        p.processes[0].threads[1].name = "evil\x1b[2J".into();
        let text = render(&p, &analysis(), true);
        assert!(text.contains("evil\\x1b[2J"));
        assert!(!text.contains("\x1b[2J"));
    }

    #[test]
    fn most_costly_finding_first() {
        let mut a = analysis();
        let mut big = a.findings[0].clone();
        big.title = "big".into();
        big.est_saving_wall_s = 9.0;
        a.findings.push(big);
        let text = render(&profile(), &a, false);
        assert!(text.find("big").unwrap() < text.find("3 threads").unwrap());
    }
}
