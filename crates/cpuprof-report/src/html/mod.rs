//! The HTML report: one self-contained page (no network, scripts and styles inlined) with the
//! header numbers, the findings and their fixes, a timeline of every process and thread, a
//! flamegraph that can be narrowed to a process, a thread or a time range, and sortable tables.
//!
//! The header and findings are rendered here as escaped HTML, so they read even with scripts
//! disabled. The timeline, flamegraph and tables are drawn by the inlined script from one JSON
//! block of aggregated data ([`data`]). Everything that comes from the target is either
//! escaped here ([`crate::escape::html`]) or inserted by the script as text, never as markup;
//! the JSON block has `<`, `>` and `&` escaped so it cannot close its `<script>` element; and a
//! Content-Security-Policy forbids any network access from the page.

pub mod data;
pub mod flame;
pub mod markup;
pub mod timeline;

use std::fmt::Write;

use cpuprof_model::{secs, Analysis, Profile};

use crate::escape::command_line;
use crate::summary::avg_cores_busy;
use crate::terminal::{findings_by_cost, fmt_budget, fmt_s};
use markup::{Markup, Trusted};

/// The page's Content-Security-Policy: nothing may be loaded from anywhere.
pub const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

pub(crate) const CSS: &str = include_str!("../../assets/report.css");
const JS: &[&str] = &[
    include_str!("../../assets/common.js"),
    include_str!("../../assets/timeline.js"),
    include_str!("../../assets/flame.js"),
    include_str!("../../assets/tables.js"),
    include_str!("../../assets/main.js"),
];

/// The report page.
pub fn render(profile: &Profile, analysis: &Analysis) -> String {
    let data = data::build(profile, analysis);
    let json = data.to_string();
    let cmd = command_line(&profile.meta.command);
    let mut o = Markup::with_capacity(json.len() + 64 * 1024);
    o.raw(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"",
    )
    .raw(CSP)
    .raw(
        "\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>cpuprof: ",
    )
    .text(&cmd)
    .raw("</title>\n<style>\n")
    .trusted(Trusted::asset(CSS))
    .raw("</style>\n</head>\n<body>\n");
    header(profile, &cmd, &mut o);
    findings(analysis, &mut o);
    o.raw(SECTIONS);
    footer(profile, &mut o);
    o.raw(
        "<div id=\"tooltip\" hidden></div>\n\
         <script type=\"application/json\" id=\"cpuprof-data\">",
    )
    .trusted(Trusted::json_for_script(&json))
    .raw("</script>\n<script>\n(function () {\n'use strict';\n");
    for js in JS {
        o.trusted(Trusted::asset(js)).raw("\n");
    }
    o.raw("})();\n</script>\n</body>\n</html>\n");
    o.finish()
}

/// The report's default file name: `cpuprof-<program>-<YYYYmmdd-HHMMSS>.html`, the program's
/// base name reduced to safe characters and the recording's start time in UTC.
pub fn default_file_name(profile: &Profile) -> String {
    let prog = profile
        .meta
        .command
        .first()
        .map(|c| c.rsplit('/').next().unwrap_or(c))
        .unwrap_or("target");
    let mut safe: String = prog
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        safe.insert_str(0, "target");
    }
    format!(
        "cpuprof-{safe}-{}.html",
        utc_stamp(profile.meta.start_unix_ms / 1000)
    )
}

/// `YYYYmmdd-HHMMSS` of a Unix time, UTC (civil-from-days, H. Hinnant's algorithm).
fn utc_stamp(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let rem = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn stat(o: &mut Markup, class: &'static str, key: &'static str, value: &str, small: &str) {
    o.raw("<div class=\"stat ")
        .raw(class)
        .raw("\"><span class=\"k\">")
        .raw(key)
        .raw("</span><span class=\"v\">")
        .text(value);
    if !small.is_empty() {
        o.raw(" <small>").text(small).raw("</small>");
    }
    o.raw("</span></div>\n");
}

fn header(profile: &Profile, cmd: &str, o: &mut Markup) {
    let meta = &profile.meta;
    let cpu = profile.cpu();
    let budget = profile.machine.cpu_budget();
    let busy = avg_cores_busy(profile);
    o.raw("<header>\n<h1>cpuprof <code>")
        .text(cmd)
        .raw("</code></h1>\n<div class=\"stats\">\n");
    let ended = match (meta.exit_code, meta.signal) {
        (_, Some(s)) => format!("killed by signal {s}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) if meta.attached => format!("attached to pid {}", meta.pid),
        (None, None) => "running".into(),
    };
    stat(o, "", "wall", &fmt_s(secs(meta.wall_ns)), &ended);
    stat(
        o,
        "",
        "CPU",
        &fmt_s(secs(cpu.total_ns())),
        &format!(
            "user {} · sys {}",
            fmt_s(secs(cpu.user_ns)),
            fmt_s(secs(cpu.sys_ns))
        ),
    );
    stat(
        o,
        if busy > budget * 1.001 { "over" } else { "" },
        "cores busy (average)",
        &format!("{busy:.2}"),
        &format!("of {} budget", fmt_budget(budget)),
    );
    let runq = secs(profile.runq_ns());
    let share = if cpu.total_ns() > 0 {
        format!("{:.0}% of CPU time", 100.0 * runq / secs(cpu.total_ns()))
    } else {
        String::new()
    };
    stat(o, "", "run-queue wait", &fmt_s(runq), &share);
    let samples = crate::stacks::samples(profile).len();
    let rate = meta
        .sample_rate_hz
        .map(|r| format!("at {r} Hz · "))
        .unwrap_or_default();
    stat(
        o,
        "",
        "samples",
        &samples.to_string(),
        &format!("{rate}{} lost", meta.lost_samples),
    );
    stat(
        o,
        "",
        "processes · threads",
        &format!("{} · {}", profile.processes.len(), profile.thread_count()),
        "",
    );
    o.raw("</div>\n");
    let m = &profile.machine;
    let quota = match m.quota_cpus() {
        Some(q) => format!("cgroup quota {q:.2} CPUs"),
        None => "no cgroup CPU quota".into(),
    };
    let mut machine = format!(
        "Machine: {} CPUs online, {} in the target's affinity, {quota}",
        m.online_cpus, m.affinity_cpus
    );
    if !m.cpu_model.is_empty() {
        let _ = write!(machine, " · {}", m.cpu_model);
    }
    if !m.kernel.is_empty() {
        let _ = write!(machine, " · Linux {}", m.kernel);
    }
    o.raw("<p class=\"machine\">").text(&machine).raw("</p>\n");
    if !profile.notices.is_empty() {
        o.raw("<ul class=\"notices\">\n");
        for n in &profile.notices {
            o.raw("<li>").text(n).raw("</li>\n");
        }
        o.raw("</ul>\n");
    }
    o.raw("</header>\n");
}

fn findings(analysis: &Analysis, o: &mut Markup) {
    o.raw("<section id=\"findings\">\n<h2>Findings</h2>\n");
    let list = findings_by_cost(analysis);
    if list.is_empty() {
        o.raw("<p class=\"nofinding\">No problem found: the threads fit the CPU budget.</p>\n");
    }
    for (i, f) in list.iter().enumerate() {
        let sev = f.severity.as_str();
        o.raw("<div class=\"finding ")
            .raw(sev)
            .raw("\" data-id=\"")
            .text(&f.id)
            .raw("\">\n<div><span class=\"sev\">")
            .raw(sev)
            .raw("</span><span class=\"title\">")
            .text(&f.title)
            .raw("</span></div>\n");
        if f.est_saving_wall_s > 0.0 || f.est_saving_cpu_s > 0.0 {
            o.raw("<div class=\"saving\">")
                .text(&format!(
                    "Fixing it saves about {} of wall time and {} of CPU.",
                    fmt_s(f.est_saving_wall_s),
                    fmt_s(f.est_saving_cpu_s)
                ))
                .raw("</div>\n");
        }
        o.raw("<div class=\"detail\">")
            .text(&f.detail)
            .raw("</div>\n");
        if !f.fix.is_empty() {
            let id = format!("fix-{i}");
            o.raw("<div class=\"fixbox\"><pre id=\"")
                .text(&id)
                .raw("\">")
                .text_lines(&f.fix)
                .raw("</pre><button type=\"button\" class=\"copy\" data-target=\"")
                .text(&id)
                .raw("\" title=\"copy the fix\">copy</button></div>\n");
        }
        o.raw("</div>\n");
    }
    o.raw("</section>\n");
}

const SECTIONS: &str = r#"<section id="timeline-section">
<h2>Timeline</h2>
<div class="toolbar">
<span class="legend"><span class="sw run"></span>running</span>
<span class="legend"><span class="sw wait"></span>runnable, waiting for a core</span>
<span class="legend"><span class="sw sleep"></span>sleeping</span>
<span class="legend"><span class="sw budget"></span>CPU budget</span>
<button type="button" id="tl-expand">expand all</button>
<button type="button" id="tl-collapse">collapse all</button>
<button type="button" id="tl-zoomsel">zoom to selection</button>
<button type="button" id="tl-clearsel">clear selection</button>
<button type="button" id="tl-reset">reset zoom</button>
<span id="tl-info" class="legend"></span>
</div>
<p class="legend">Click a process to show its threads. Drag to select a time range (the flamegraph follows), wheel to zoom, double-click to reset.</p>
<div id="timeline"></div>
</section>
<section id="flame-section">
<h2>Flamegraph</h2>
<div class="toolbar">
<label>show <select id="flame-scope"></select></label>
<label><input type="checkbox" id="flame-range"> only the time range selected on the timeline</label>
<input type="search" id="flame-search" placeholder="search (regex)" aria-label="search functions">
<button type="button" id="flame-reset">reset zoom</button>
<span class="legend"><span class="sw py"></span>Python</span>
<span class="legend"><span class="sw nat"></span>native</span>
<span class="legend"><span class="sw spin"></span>spin-wait</span>
<span class="legend"><span class="sw match"></span>search match</span>
<span id="flame-match" class="legend"></span>
</div>
<p id="flame-info" class="legend"></p>
<div id="flame-wrap"><canvas id="flame"></canvas></div>
</section>
<section id="tables">
<h2>Processes</h2>
<div id="proc-table"></div>
<h2>Threads</h2>
<div id="thread-table"></div>
</section>
"#;

fn footer(profile: &Profile, o: &mut Markup) {
    let meta = &profile.meta;
    let version = if meta.cpuprof_version.is_empty() {
        env!("CARGO_PKG_VERSION").to_string()
    } else {
        meta.cpuprof_version.clone()
    };
    o.raw("<footer>")
        .text(&format!(
            "cpuprof {version} · procfs every {} · stacks from {} · this page works offline and \
             loads nothing from the network.",
            fmt_s(secs(meta.interval_ns)),
            crate::stacks::source(profile).as_str()
        ))
        .raw("</footer>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};

    #[test]
    fn page_is_self_contained_and_escapes_the_target() {
        let mut p = profile();
        let evil = "<b>x</b>&\"'</script><script>alert(1)</script>";
        p.meta.command = vec!["python".into(), evil.into()];
        p.processes[0].threads[1].name = evil.into();
        p.processes[0].command = vec!["python".into(), evil.into()];
        let mut a = analysis();
        a.findings[0].title = evil.into();
        let page = render(&p, &a);
        assert!(!page.contains("<b>"), "unescaped markup");
        assert_eq!(page.matches("<script").count(), 2);
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(page.contains(CSP));
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt;&amp;&quot;&#39;&lt;/script&gt;"));
        // The data block parses back to the same names.
        let start = page.find("id=\"cpuprof-data\">").unwrap() + "id=\"cpuprof-data\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        let v: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(v["lanes"][1]["name"], evil);
    }

    #[test]
    fn default_name_has_program_and_utc_time() {
        let mut p = profile();
        p.meta.command = vec!["/usr/bin/python3".into(), "x.py".into()];
        p.meta.start_unix_ms = 1_795_905_296_000; // 2026-11-28 22:34:56 UTC (date -u -d @1795905296)
        assert_eq!(
            default_file_name(&p),
            "cpuprof-python3-20261128-223456.html"
        );
        p.meta.command = vec!["../<evil>".into()];
        p.meta.start_unix_ms = 0;
        assert_eq!(default_file_name(&p), "cpuprof-_evil_-19700101-000000.html");
    }

    #[test]
    fn findings_have_a_copyable_fix() {
        let page = render(&profile(), &analysis());
        assert!(page.contains("<pre id=\"fix-0\">OPENBLAS_NUM_THREADS=1</pre>"));
        assert!(page.contains("data-target=\"fix-0\""));
    }
}
