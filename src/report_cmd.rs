//! `cpuprof report PROFILE`: the summary (and JSON, HTML) again from a saved profile, without
//! the target.

use anyhow::{Context, Result};

use crate::cli::ReportArgs;
use crate::outputs::{self, Outputs};

/// Runs `report`; returns the exit code.
pub fn run(args: ReportArgs) -> Result<i32> {
    if args.path.is_dir() {
        anyhow::bail!(
            "cannot read profile '{}': it is a directory (give a file saved with --save)",
            args.path.display()
        );
    }
    let profile = cpuprof_model::file::load(&args.path)
        .with_context(|| format!("cannot read profile '{}'", args.path.display()))?;
    let analysis = cpuprof_analysis::analyze(&profile);
    let out = Outputs {
        save: None,
        json: args.out.json,
        html: args.out.output,
        collapsed: args.out.collapsed,
        speedscope: args.out.speedscope,
        perfetto: args.out.perfetto,
        pprof: args.out.pprof,
        firefox: args.out.firefox,
        quiet: args.out.quiet,
        rescue: false,
    };
    out.check()?;
    let written = outputs::write_all(&out, &profile, &analysis);
    if !written.ok() {
        return Ok(outputs::OUTPUT_FAILED);
    }
    Ok(crate::cli::gate(args.out.fail_on, &analysis, 0))
}
