//! `cpuprof report PROFILE`: the summary (and JSON, HTML) again from a saved profile, without
//! the target.

use anyhow::{Context, Result};

use crate::cli::ReportArgs;
use crate::outputs::{self, Outputs};

/// Runs `report`; returns the exit code.
pub fn run(args: ReportArgs) -> Result<i32> {
    let profile = cpuprof_model::file::load(&args.path)
        .with_context(|| format!("cannot read profile '{}'", args.path.display()))?;
    let analysis = cpuprof_analysis::analyze(&profile);
    let out = Outputs {
        save: None,
        json: args.json,
        html: args.output,
        collapsed: args.collapsed,
        quiet: args.quiet,
    };
    outputs::write_all(&out, &profile, &analysis)?;
    Ok(crate::cli::gate(args.fail_on, &analysis, 0))
}
