//! The agent's metrics: counters accumulated per process across refreshes, gauges of the
//! latest window, rendered in the Prometheus text format (0.0.4) or OpenMetrics 1.0.
//!
//! Names follow Prometheus's conventions: base units (seconds, cores as a count of CPUs),
//! `_total` on counters, `cpuprof_` as the namespace. Cardinality is bounded: the
//! `max_processes` busiest processes of the window get series of their own, the rest are
//! summed into one `pid=""`, `comm="(other)"` series; an exited process's series go with it.
//! A counter of a pid only grows: it is the sum of the watch's [`Increment`]s.
//!
//! The encoder is a few lines here rather than a client crate's: the client crates register
//! long-lived metric objects that a program updates, where these are collected from a
//! snapshot at each refresh with label sets that come and go with processes.

use std::collections::HashMap;
use std::fmt::Write;

use cpuprof_live::{Increment, Snapshot};
use cpuprof_model::Pid;

/// A process's counters, seconds since the agent started watching it.
#[derive(Debug, Clone, Default)]
struct Counters {
    user_s: f64,
    sys_s: f64,
    runq_s: f64,
}

/// What the agent knows of its own cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfFigures {
    /// Its CPU, s.
    pub cpu_s: f64,
    /// Its resident set now, bytes.
    pub rss_bytes: u64,
}

/// Counters per process, and the latest rendering.
#[derive(Debug, Default)]
pub struct Metrics {
    max_processes: usize,
    counters: HashMap<Pid, Counters>,
    other: Counters,
}

/// The two formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for (OpenMetrics only when named, as Prometheus
    /// does when it prefers it).
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A label value escaped for both formats: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    format: Format,
    counter: bool,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let name = match (self.counter, self.format) {
            (true, _) => format!("{}_total", self.name),
            (false, _) => self.name.to_string(),
        };
        self.out.push_str(&name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A process's labels as a series takes them (more may be pushed after).
fn borrowed<'a>(labels: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

fn family<'a>(
    out: &'a mut String,
    format: Format,
    name: &'static str,
    counter: bool,
    unit: Option<&str>,
    help: &str,
) -> Family<'a> {
    let kind = if counter { "counter" } else { "gauge" };
    // The text format names a counter's samples in its metadata (`x_total`), OpenMetrics
    // names the family (`x`, its samples `x_total`).
    let meta_name = match (counter, format) {
        (true, Format::Text) => format!("{name}_total"),
        _ => name.to_string(),
    };
    let _ = writeln!(out, "# HELP {meta_name} {help}");
    let _ = writeln!(out, "# TYPE {meta_name} {kind}");
    if let (Format::OpenMetrics, Some(u)) = (format, unit) {
        let _ = writeln!(out, "# UNIT {name} {u}");
    }
    Family {
        out,
        name,
        format,
        counter,
    }
}

impl Metrics {
    /// Metrics for at most `max_processes` processes of their own.
    pub fn new(max_processes: usize) -> Self {
        Metrics {
            max_processes,
            ..Default::default()
        }
    }

    /// Takes in a refresh: the counters grow by `increments`; processes not in `snap` are
    /// gone (their series end).
    pub fn update(&mut self, snap: &Snapshot, increments: &[Increment]) {
        let alive: std::collections::HashSet<Pid> = snap.processes.iter().map(|p| p.pid).collect();
        for inc in increments {
            let c = match alive.contains(&inc.pid) {
                true => self.counters.entry(inc.pid).or_default(),
                false => &mut self.other,
            };
            c.user_s += inc.user_ns as f64 / 1e9;
            c.sys_s += inc.sys_ns as f64 / 1e9;
            c.runq_s += inc.runq_ns as f64 / 1e9;
        }
        // A process that ended: what it used stays in the sum of the rest.
        let gone: Vec<Pid> = self
            .counters
            .keys()
            .copied()
            .filter(|p| !alive.contains(p))
            .collect();
        for pid in gone {
            if let Some(c) = self.counters.remove(&pid) {
                self.other.user_s += c.user_s;
                self.other.sys_s += c.sys_s;
                self.other.runq_s += c.runq_s;
            }
        }
    }

    /// Every metric, in `format`.
    pub fn render(&self, snap: &Snapshot, me: SelfFigures, format: Format) -> String {
        let mut out = String::new();
        let shown: Vec<&cpuprof_live::snapshot::ProcessRow> =
            snap.processes.iter().take(self.max_processes).collect();
        // Counters of processes alive but not shown are part of "(other)".
        let mut other = self.other.clone();
        for (pid, c) in &self.counters {
            if !shown.iter().any(|p| p.pid == *pid) {
                other.user_s += c.user_s;
                other.sys_s += c.sys_s;
                other.runq_s += c.runq_s;
            }
        }
        // Each shown process's own labels, in the order every series lists them.
        let rows: Vec<(Vec<(&str, String)>, &cpuprof_live::snapshot::ProcessRow)> = shown
            .iter()
            .map(|p| {
                let labels = vec![
                    ("pid", p.pid.to_string()),
                    ("comm", p.name.clone()),
                    ("cgroup", p.cgroup.clone()),
                ];
                (labels, *p)
            })
            .collect();
        let other_labels: [(&str, &str); 3] = [("pid", ""), ("comm", "(other)"), ("cgroup", "")];

        let mut f = family(
            &mut out,
            format,
            "cpuprof_process_cpu_seconds",
            true,
            Some("seconds"),
            "CPU time of the process since cpuprof began watching it, by mode.",
        );
        for (labels, p) in &rows {
            let c = self.counters.get(&p.pid).cloned().unwrap_or_default();
            for (mode, v) in [("user", c.user_s), ("system", c.sys_s)] {
                let mut ls = borrowed(labels);
                ls.push(("mode", mode));
                f.sample(&ls, v);
            }
        }
        for (mode, v) in [("user", other.user_s), ("system", other.sys_s)] {
            let mut ls = other_labels.to_vec();
            ls.push(("mode", mode));
            f.sample(&ls, v);
        }

        let mut f = family(
            &mut out,
            format,
            "cpuprof_process_runqueue_wait_seconds",
            true,
            Some("seconds"),
            "Time the process's threads were runnable but waited for a core.",
        );
        for (labels, p) in &rows {
            let c = self.counters.get(&p.pid).cloned().unwrap_or_default();
            let ls = borrowed(labels);
            f.sample(&ls, c.runq_s);
        }
        f.sample(&other_labels, other.runq_s);

        let gauges: [(&'static str, Option<&str>, &str); 3] = [
            (
                "cpuprof_process_cpu_budget_cores",
                None,
                "Cores the process may use: online CPUs, its affinity and its cgroup's quota.",
            ),
            (
                "cpuprof_process_cpu_cores",
                None,
                "Cores the process used, averaged over the last window.",
            ),
            (
                "cpuprof_process_demand_ratio",
                Some("ratio"),
                "The process's runnable demand (CPU + run-queue wait per second) over its budget, last window.",
            ),
        ];
        for (i, (name, unit, help)) in gauges.iter().enumerate() {
            let mut f = family(&mut out, format, name, false, *unit, help);
            for (labels, p) in &rows {
                let ls = borrowed(labels);
                let demand = if p.runq_wait_share < 1.0 {
                    p.cpu_cores / (1.0 - p.runq_wait_share)
                } else {
                    p.cpu_cores
                };
                let v = match i {
                    0 => p.budget_cores,
                    1 => p.cpu_cores,
                    _ => demand / p.budget_cores.max(1e-9),
                };
                f.sample(&ls, v);
            }
        }

        let mut f = family(
            &mut out,
            format,
            "cpuprof_process_threads",
            false,
            None,
            "The process's threads at the latest poll, by state.",
        );
        for (labels, p) in &rows {
            for (state, n) in [
                ("running", p.threads.running),
                ("runnable", p.threads.runnable),
                ("sleeping", p.threads.sleeping),
            ] {
                let mut ls = borrowed(labels);
                ls.push(("state", state));
                f.sample(&ls, f64::from(n));
            }
        }

        let mut f = family(
            &mut out,
            format,
            "cpuprof_pool_threads",
            false,
            None,
            "Threads of each thread pool of the process (BLAS, OpenMP, Rayon, ...), by runtime.",
        );
        for (labels, p) in &rows {
            for pool in &p.pools {
                let mut ls = borrowed(labels);
                ls.push(("runtime", &pool.runtime));
                f.sample(&ls, pool.threads as f64);
            }
        }

        let mut f = family(
            &mut out,
            format,
            "cpuprof_finding_active",
            false,
            None,
            "1 while the last window has this finding for the process (docs/findings.md).",
        );
        for (labels, p) in &rows {
            for finding in &p.findings {
                let mut ls = borrowed(labels);
                ls.push(("id", &finding.id));
                ls.push(("severity", &finding.severity));
                f.sample(&ls, 1.0);
            }
        }
        let mut f = family(
            &mut out,
            format,
            "cpuprof_finding_estimated_waste_cores",
            false,
            None,
            "CPU the finding's fix is estimated to save, in cores over the last window.",
        );
        for (labels, p) in &rows {
            for finding in &p.findings {
                let mut ls = borrowed(labels);
                ls.push(("id", &finding.id));
                f.sample(&ls, finding.est_saving_cpu_s / snap.window_s.max(1e-9));
            }
        }

        let m = &snap.machine;
        let machine: [(&'static str, Option<&str>, &str, f64); 4] = [
            (
                "cpuprof_machine_cpu_budget_cores",
                None,
                "Cores the watched processes may use together.",
                m.budget_cores,
            ),
            (
                "cpuprof_machine_cores_busy",
                None,
                "Cores busy with anything (/proc/stat), over the last window.",
                m.cores_busy,
            ),
            (
                "cpuprof_machine_cpu_pressure_some_ratio",
                Some("ratio"),
                "Share of the last 10 s in which some task waited for a core (PSI some avg10).",
                m.psi_some.map_or(f64::NAN, |v| v / 100.0),
            ),
            (
                "cpuprof_machine_processes",
                None,
                "Processes watched.",
                m.processes as f64,
            ),
        ];
        for (name, unit, help, v) in machine {
            family(&mut out, format, name, false, unit, help).sample(&[], v);
        }
        family(
            &mut out,
            format,
            "cpuprof_agent_cpu_seconds",
            true,
            Some("seconds"),
            "CPU time the agent itself used.",
        )
        .sample(&[], me.cpu_s);
        family(
            &mut out,
            format,
            "cpuprof_agent_resident_memory_bytes",
            false,
            Some("bytes"),
            "The agent's resident set.",
        )
        .sample(&[], me.rss_bytes as f64);
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpuprof_live::snapshot::{FindingRow, ProcessRow};

    fn snap(pids: &[Pid]) -> Snapshot {
        Snapshot {
            window_s: 3.0,
            processes: pids
                .iter()
                .map(|&pid| ProcessRow {
                    pid,
                    name: format!("p\"{pid}\n"),
                    cpu_cores: 1.0,
                    budget_cores: 2.0,
                    runq_wait_share: 0.5,
                    findings: vec![FindingRow {
                        id: "oversubscription".into(),
                        severity: "error".into(),
                        title: String::new(),
                        detail: String::new(),
                        fix: String::new(),
                        est_saving_wall_s: 0.0,
                        est_saving_cpu_s: 1.5,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn inc(pid: Pid, ms: u64) -> Increment {
        Increment {
            pid,
            user_ns: ms * 1_000_000,
            sys_ns: 0,
            runq_ns: ms * 1_000_000,
        }
    }

    #[test]
    fn counters_grow_per_process_and_the_rest_is_summed() {
        let mut m = Metrics::new(1);
        let s = snap(&[10, 20]);
        m.update(&s, &[inc(10, 100), inc(20, 50), inc(30, 7)]);
        m.update(&s, &[inc(10, 100)]);
        let text = m.render(&s, SelfFigures::default(), Format::Text);
        assert!(
            text.contains(
                "cpuprof_process_cpu_seconds_total{pid=\"10\",comm=\"p\\\"10\\n\",cgroup=\"\",mode=\"user\"} 0.2"
            ),
            "{text}"
        );
        // 20 is alive but not among the busiest 1, 30 is gone: both in (other).
        assert!(text.contains(
            "cpuprof_process_cpu_seconds_total{pid=\"\",comm=\"(other)\",cgroup=\"\",mode=\"user\"} 0.057"
        ));
        assert!(text.contains("cpuprof_finding_active{pid=\"10\""));
        assert!(text.contains("id=\"oversubscription\",severity=\"error\"} 1"));
        assert!(text.contains("cpuprof_finding_estimated_waste_cores{pid=\"10\""));
        // demand: 1 core at a 50% wait share = 2 cores wanted, over 2.
        assert!(text.contains(
            "cpuprof_process_demand_ratio{pid=\"10\",comm=\"p\\\"10\\n\",cgroup=\"\"} 1"
        ));
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE cpuprof_process_cpu_seconds_total counter"));
        // The process ended: its series go, its CPU stays in the sum.
        m.update(&snap(&[]), &[]);
        let text = m.render(&snap(&[]), SelfFigures::default(), Format::OpenMetrics);
        assert!(!text.contains("pid=\"10\""));
        assert!(text.contains("mode=\"user\"} 0.257"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# UNIT cpuprof_process_cpu_seconds seconds"));
    }

    #[test]
    fn openmetrics_only_when_asked() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
