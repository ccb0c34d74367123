//! `cpuprof sweep`: the flags, a progress bar on stderr, and the outputs (the table on stdout,
//! `--json`, `-o`). The sweep itself is `cpuprof_sweep::sweep`.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use cpuprof_sweep::{Progress, SweepOptions};

use crate::cli::SweepArgs;
use crate::outputs::{self, Outputs};
use crate::signals;

/// Runs `sweep`; 0 when a recommendation was made, 130 after an interrupt.
pub fn run(args: SweepArgs) -> Result<i32> {
    // Output paths are checked before anything runs, as for `record`.
    Outputs {
        save: None,
        json: args.json.clone(),
        html: args.output.clone(),
        collapsed: None,
        speedscope: None,
        perfetto: None,
        pprof: None,
        firefox: None,
        quiet: args.quiet,
        rescue: false,
    }
    .check()?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cpuprof-sweep-{}-{stamp}", std::process::id()))
    });
    let opts = SweepOptions {
        sets: args.sets.clone(),
        runs: args.runs as usize,
        max_runs: args.max_runs.max(args.runs) as usize,
        max_time: args.max_time,
        max_candidates: args.max_candidates as usize,
        interval: args.interval,
        out_dir,
    };
    // Interrupts are counted, not forwarded: in a terminal the run in progress gets Ctrl-C
    // from the terminal itself; otherwise the sweep ends it.
    signals::install(None, false);
    let tty = std::io::stderr().is_terminal() && !args.quiet;
    let mut progress = |p: &Progress| {
        if args.quiet {
            return;
        }
        let what = if p.run == 0 {
            format!(
                "{} (warm-up)",
                cpuprof_report::escape::printable(&p.candidate)
            )
        } else {
            format!(
                "{} (run {} of {})",
                cpuprof_report::escape::printable(&p.candidate),
                p.run,
                p.runs
            )
        };
        let left = p.left.as_secs();
        let line = if p.total == 0 {
            format!("sweep: {what}")
        } else {
            let width = 20;
            let filled = (width * p.done / p.total.max(1)).min(width);
            format!(
                "sweep: [{}{}] {}/{} {what} · ~{}:{:02} left",
                "#".repeat(filled),
                "-".repeat(width - filled),
                p.done,
                p.total,
                left / 60,
                left % 60
            )
        };
        let mut e = std::io::stderr();
        if tty {
            let _ = write!(e, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    };
    let interrupted = || signals::interrupts() > 0;
    let result = cpuprof_sweep::sweep(&args.cmd, &opts, &mut progress, &interrupted);
    if tty {
        eprint!("\r\x1b[2K");
    }
    let sweep = result?;

    let mut failed = false;
    if let Some(path) = &args.json {
        let r = outputs::write_with(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &sweep)?;
            w.write_all(b"\n")
        });
        if let Err(e) = r {
            eprintln!(
                "cpuprof: cannot write the sweep JSON to '{}': {e}",
                path.display()
            );
            failed = true;
        }
    }
    if let Some(path) = &args.output {
        let page = cpuprof_report::sweep::page(&sweep);
        if let Err(e) = outputs::write_with(path, |w| w.write_all(page.as_bytes())) {
            eprintln!(
                "cpuprof: cannot write the sweep page to '{}': {e}",
                path.display()
            );
            failed = true;
        }
    }
    if !args.quiet {
        let table = cpuprof_report::sweep::terminal(&sweep);
        // The table goes to stdout unless the JSON does.
        if args.json.as_deref().is_some_and(outputs::is_stdout) {
            eprint!("{table}");
        } else {
            print!("{table}");
        }
    }
    Ok(if failed {
        outputs::OUTPUT_FAILED
    } else if sweep.stopped_early && signals::interrupts() > 0 {
        130
    } else {
        0
    })
}
