//! Writing what a recording (or a saved profile) produced: terminal summary, summary JSON,
//! HTML report, saved profile. Shared by `record` and `report`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cpuprof_model::{Analysis, Profile};

/// Where outputs go.
#[derive(Debug, Default, Clone)]
pub struct Outputs {
    /// Save the profile here.
    pub save: Option<PathBuf>,
    /// Summary JSON here (`-` = stdout).
    pub json: Option<PathBuf>,
    /// HTML report here.
    pub html: Option<PathBuf>,
    /// Folded stacks here.
    pub collapsed: Option<PathBuf>,
    /// No terminal summary.
    pub quiet: bool,
}

/// Writes every requested output.
pub fn write_all(out: &Outputs, profile: &Profile, analysis: &Analysis) -> Result<()> {
    if let Some(path) = &out.save {
        cpuprof_model::file::save(profile, path)
            .with_context(|| format!("cannot save the profile to '{}'", path.display()))?;
    }
    if let Some(path) = &out.json {
        let json = cpuprof_report::summary::to_json(profile, analysis);
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        write_text(path, &text)
            .with_context(|| format!("cannot write the summary JSON to '{}'", path.display()))?;
    }
    if let Some(path) = &out.collapsed {
        std::fs::File::create(path)
            .and_then(|f| cpuprof_report::collapsed::write(profile, std::io::BufWriter::new(f)))
            .with_context(|| format!("cannot write folded stacks to '{}'", path.display()))?;
    }
    if let Some(path) = &out.html {
        let page = cpuprof_report::html::render(profile, analysis);
        std::fs::write(path, page)
            .with_context(|| format!("cannot write the HTML report to '{}'", path.display()))?;
    }
    if !out.quiet {
        let stderr = std::io::stderr();
        let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut text = cpuprof_report::terminal::render(profile, analysis, color);
        if let Some(path) = &out.html {
            text.push_str(&format!("\n  report: {}\n", path.display()));
        }
        let mut e = stderr.lock();
        let _ = e.write_all(text.as_bytes());
        let _ = e.flush();
    }
    Ok(())
}

/// Writes `text` to `path`, `-` meaning standard output.
fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    if path == Path::new("-") {
        let mut o = std::io::stdout().lock();
        o.write_all(text.as_bytes())?;
        o.flush()
    } else {
        std::fs::write(path, text)
    }
}
