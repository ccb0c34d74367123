//! `cpuprof sweep`'s results: the table on the terminal and the HTML page (the report's style).
//!
//! Settings and the command are the user's text: printable-escaped on the terminal, HTML-
//! escaped on the page.

use std::fmt::Write;

use cpuprof_model::sweep::{setting_label, Stat, Sweep, SweepCandidate};

use crate::escape::{command_line, printable};
use crate::html::markup::{Markup, Trusted};

fn stat(s: &Stat) -> String {
    if !s.median.is_finite() {
        return "—".into();
    }
    if (s.high - s.low).abs() < 5e-4 {
        return format!("{:.2}", s.median);
    }
    format!("{:.2} [{:.2}–{:.2}]", s.median, s.low, s.high)
}

fn ratio(c: &SweepCandidate) -> String {
    c.wall_ratio
        .map(|r| format!("{r:.2}×"))
        .unwrap_or_else(|| "—".into())
}

fn runs(c: &SweepCandidate) -> String {
    if c.failed_runs.is_empty() {
        c.runs.to_string()
    } else {
        let codes: Vec<String> = c
            .failed_runs
            .iter()
            .map(|f| match (f.exit_code, f.signal) {
                (_, Some(s)) => format!("signal {s}"),
                (Some(e), None) => format!("exit {e}"),
                _ => "failed".into(),
            })
            .collect();
        format!("{} ({} failed: {})", c.runs, c.failed, codes.join(", "))
    }
}

/// The table and the recommendation, for the terminal.
pub fn terminal(s: &Sweep) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "cpuprof sweep: {} on {:.2} CPUs, {} candidates{}",
        printable(&command_line(&s.command)),
        s.cpu_budget,
        s.candidates.len(),
        if s.stopped_early {
            " (stopped early: what was measured so far)"
        } else {
            ""
        }
    );
    let rows: Vec<[String; 7]> = s
        .candidates
        .iter()
        .map(|c| {
            [
                printable(&setting_label(&c.setting)),
                runs(c),
                stat(&c.wall_s),
                ratio(c),
                stat(&c.cpu_s),
                stat(&c.runq_wait_s),
                if c.findings.is_empty() {
                    "none".into()
                } else {
                    c.findings.join(", ")
                },
            ]
        })
        .collect();
    let head = [
        "setting",
        "runs",
        "wall s [95%]",
        "vs as is",
        "CPU s [95%]",
        "run-queue wait s",
        "findings",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            if i == 0 || i == 6 {
                l.push_str(&format!(" {c}{}", " ".repeat(pad)));
            } else {
                l.push_str(&format!(" {}{c}", " ".repeat(pad)));
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(o, "{}", line(head.to_vec()));
    for r in &rows {
        let _ = writeln!(o, "{}", line(r.iter().map(String::as_str).collect()));
    }
    match &s.recommended {
        Some(r) => {
            let _ = writeln!(
                o,
                "\n  recommended: {} — {}; saves {:.2} s of wall time and {:.2} s of CPU (medians)",
                printable(&setting_label(&r.setting)),
                r.reason,
                r.saving_wall_s,
                r.saving_cpu_s
            );
            if let Some(py) = &r.python {
                let _ = writeln!(o, "  in Python:");
                for line in py.lines() {
                    let _ = writeln!(o, "    {}", printable(line));
                }
            }
        }
        None => {
            let _ = writeln!(o, "\n  nothing could be measured");
        }
    }
    for f in &s.analysis {
        let measured = f
            .measured_saving_wall_s
            .map(|m| format!("measured {m:+.2} s"))
            .unwrap_or_else(|| "not measured".into());
        // A fix with no setting (onnxruntime's session option) is in the program's code.
        let fix = if f.setting.is_empty() {
            "in the program's code (no setting a sweep can apply)".to_string()
        } else {
            setting_label(&f.setting)
        };
        let _ = writeln!(
            o,
            "  finding {}: {} — fix {}: estimated {:.2} s, {measured}",
            f.id,
            printable(&f.title),
            printable(&fix),
            f.est_saving_wall_s
        );
    }
    let _ = writeln!(
        o,
        "  {:.1} s in all; cpuprof's own CPU {:.3} s per run; the program's output: {}",
        s.elapsed_s,
        s.recorder_cpu_per_run_s,
        s.candidates
            .first()
            .map(|c| {
                let p = std::path::Path::new(&c.output);
                printable(&p.parent().unwrap_or(p).display().to_string())
            })
            .unwrap_or_default()
    );
    o
}

/// The sweep as a page in the report's style.
pub fn page(s: &Sweep) -> String {
    let cmd = command_line(&s.command);
    let mut o = Markup::default();
    o.raw(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"",
    )
    .raw(crate::html::CSP)
    .raw(
        "\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>cpuprof sweep: ",
    )
    .text(&cmd)
    .raw("</title>\n<style>\n")
    .trusted(Trusted::asset(crate::html::CSS))
    .raw("</style>\n</head>\n<body>\n<header>\n<h1>cpuprof sweep <code>")
    .text(&cmd)
    .raw("</code></h1>\n<p>")
    .text(&format!(
        "{} candidates on {:.2} CPUs, {:.1} s{}",
        s.candidates.len(),
        s.cpu_budget,
        s.elapsed_s,
        if s.stopped_early {
            " — stopped early: what was measured so far"
        } else {
            ""
        }
    ))
    .raw("</p>\n</header>\n<section id=\"sweep-recommendation\">\n<h2>Recommendation</h2>\n");
    match &s.recommended {
        Some(r) => {
            o.raw("<div class=\"finding info\"><p><b>")
                .text(&setting_label(&r.setting))
                .raw("</b> — ")
                .text(&format!(
                    "{}; saves {:.2} s of wall time and {:.2} s of CPU (medians).",
                    r.reason, r.saving_wall_s, r.saving_cpu_s
                ))
                .raw("</p>");
            if let Some(py) = &r.python {
                o.raw("<p>In Python:</p><pre>").text_lines(py).raw("</pre>");
            }
            o.raw("</div>\n");
        }
        None => {
            o.raw("<p>Nothing could be measured.</p>\n");
        }
    }
    o.raw(
        "</section>\n<section id=\"sweep-candidates\">\n<h2>Candidates</h2>\n\
         <table class=\"sortable\"><thead><tr><th>setting</th><th>from</th><th class=\"num\">runs</th>\
         <th class=\"num\">wall s [95%]</th><th class=\"num\">vs as is</th>\
         <th class=\"num\">CPU s [95%]</th><th class=\"num\">run-queue wait s</th>\
         <th>findings</th><th>output</th></tr></thead><tbody>\n",
    );
    for c in &s.candidates {
        o.raw("<tr><td><code>")
            .text(&setting_label(&c.setting))
            .raw("</code></td><td>")
            .text(&c.origin)
            .raw("</td><td class=\"num\">")
            .text(&runs(c))
            .raw("</td><td class=\"num\">")
            .text(&stat(&c.wall_s))
            .raw("</td><td class=\"num\">")
            .text(&ratio(c))
            .raw("</td><td class=\"num\">")
            .text(&stat(&c.cpu_s))
            .raw("</td><td class=\"num\">")
            .text(&stat(&c.runq_wait_s))
            .raw("</td><td>")
            .text(&c.findings.join(", "))
            .raw("</td><td><code>")
            .text(&c.output)
            .raw("</code></td></tr>\n");
    }
    o.raw("</tbody></table>\n</section>\n");
    if !s.analysis.is_empty() {
        o.raw(
            "<section id=\"sweep-findings\">\n<h2>The first recording's findings, measured</h2>\n\
             <table class=\"sortable\"><thead><tr><th>finding</th><th>fix</th>\
             <th class=\"num\">estimated saving s</th><th class=\"num\">measured saving s</th>\
             </tr></thead><tbody>\n",
        );
        for f in &s.analysis {
            o.raw("<tr><td>")
                .text(&f.title)
                .raw("</td><td><code>")
                .text(&setting_label(&f.setting))
                .raw("</code></td><td class=\"num\">")
                .text(&format!("{:.2}", f.est_saving_wall_s))
                .raw("</td><td class=\"num\">")
                .text(
                    &f.measured_saving_wall_s
                        .map(|m| format!("{m:+.2}"))
                        .unwrap_or_else(|| "—".into()),
                )
                .raw("</td></tr>\n");
        }
        o.raw("</tbody></table>\n</section>\n");
    }
    o.raw("<footer><p>")
        .text(&format!(
            "cpuprof's own CPU: {:.3} s per run. Each candidate's runs alternate with the \
             others' after one warm-up; the interval is the 95% t-interval of the mean \
             (docs/sweep.md).",
            s.recorder_cpu_per_run_s
        ))
        .raw("</p></footer>\n</body>\n</html>\n");
    o.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpuprof_model::sweep::{Recommended, SWEEP_SCHEMA};

    fn sweep() -> Sweep {
        let st = |m: f64| Stat {
            median: m,
            low: m * 0.95,
            high: m * 1.05,
        };
        let cand = |set: &[(&str, &str)], wall: f64| SweepCandidate {
            setting: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            origin: "x<y>".into(),
            runs: 3,
            run_wall_s: vec![wall; 3],
            failed: 0,
            failed_runs: vec![],
            wall_s: st(wall),
            cpu_s: st(2.0 * wall),
            runq_wait_s: st(0.1),
            wall_ratio: Some(wall / 1.0),
            findings: vec![],
            output: "/tmp/out".into(),
        };
        Sweep {
            schema: SWEEP_SCHEMA.into(),
            command: vec!["prog".into(), "<script>".into()],
            cpu_budget: 2.0,
            candidates: vec![cand(&[], 1.0), cand(&[("OPENBLAS_NUM_THREADS", "1")], 0.8)],
            recommended: Some(Recommended {
                setting: [("OPENBLAS_NUM_THREADS".into(), "1".into())].into(),
                saving_wall_s: 0.2,
                saving_cpu_s: 0.4,
                reason: "fastest".into(),
                python: None,
            }),
            analysis: vec![],
            stopped_early: false,
            elapsed_s: 9.0,
            recorder_cpu_per_run_s: 0.01,
            runs_total: 7,
            target_wall_total_s: 6.0,
        }
    }

    #[test]
    fn table_and_page_name_the_recommendation_and_escape() {
        let s = sweep();
        let t = terminal(&s);
        assert!(t.contains("recommended: OPENBLAS_NUM_THREADS=1"), "{t}");
        assert!(t.contains("0.80 [0.76–0.84]"), "{t}");
        let p = page(&s);
        assert!(p.contains("&lt;script&gt;"));
        assert!(!p.contains("<script>"));
        assert!(p.contains("x&lt;y&gt;"));
    }
}
