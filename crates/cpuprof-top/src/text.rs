//! `cpuprof top --once` without `--json`: the refresh as a plain table (like `top -b -n 1`),
//! then each finding with its fix.

use std::fmt::Write;

use cpuprof_live::Snapshot;
use cpuprof_report::escape::{command_line, printable};

/// The refresh as text.
pub fn table(s: &Snapshot) -> String {
    let m = &s.machine;
    let mut out = String::new();
    let psi = m.psi_some.map_or("n/a".to_string(), |v| format!("{v:.1}%"));
    let _ = writeln!(
        out,
        "budget {:.1} cores, busy {:.2}, CPU pressure {psi}, {} processes, over the last {:.1} s",
        m.budget_cores, m.cores_busy, m.processes, s.window_s
    );
    let _ = writeln!(
        out,
        "{:>7}  {:>10}  {:>4}  {:>9}  {:<24}  {:<18}  COMMAND",
        "PID", "CPU/BUDGET", "WAIT", "THR R/Q/S", "POOLS", "FINDING"
    );
    for p in &s.processes {
        let pools = p
            .pools
            .iter()
            .map(crate::ui::pool_text)
            .collect::<Vec<_>>()
            .join(" ");
        let finding = p.findings.first().map_or("", |f| f.id.as_str());
        let command = match command_line(&p.command) {
            c if c.is_empty() => printable(&p.name),
            c => printable(&c),
        };
        let _ = writeln!(
            out,
            "{:>7}  {:>5.2}/{:<4.1}  {:>4}  {:>9}  {:<24}  {:<18}  {}",
            p.pid,
            p.cpu_cores,
            p.budget_cores,
            crate::ui::wait_text(p.runq_wait_share, p.cpu_cores),
            format!(
                "{}/{}/{}",
                p.threads.running, p.threads.runnable, p.threads.sleeping
            ),
            pools,
            finding,
            command
        );
    }
    for p in s.processes.iter().filter(|p| !p.top_functions.is_empty()) {
        let top: Vec<String> = p
            .top_functions
            .iter()
            .map(|f| format!("{} {:.0}%", printable(&f.name), f.share * 100.0))
            .collect();
        let _ = writeln!(
            out,
            "\n{} {} top functions: {}",
            p.pid,
            printable(&p.name),
            top.join(", ")
        );
    }
    for p in s.processes.iter().filter(|p| !p.findings.is_empty()) {
        for f in &p.findings {
            let _ = writeln!(
                out,
                "\n{} {} [{}]: {}\n  {}\n  fix: {}",
                p.pid,
                printable(&p.name),
                f.severity,
                printable(&f.title),
                printable(&f.detail),
                printable(&f.fix)
            );
        }
    }
    if let Some(h) = &s.hidden {
        let _ = writeln!(out, "\n{}", printable(h));
    }
    out
}
