//! Writing what a recording (or a saved profile) produced: terminal summary, summary JSON,
//! HTML report, folded stacks, saved profile. Shared by `record` and `report`.
//!
//! A recording cannot be made again, so writing it must not lose it:
//! - [`Outputs::check`] runs before the target starts: every path's directory exists and is
//!   writable, no path is a directory, no two outputs share a path, at most one is `-`
//!   (standard output). A bad path fails at once, not after an hour of recording.
//! - Each output is written to a temporary file beside its path and renamed into place, so a
//!   full disk or a crash leaves the old file or nothing, never a truncated one.
//! - A failure to write one output does not stop the others; the terminal summary lists what
//!   was written and what failed, and when every file output of a recording failed the profile
//!   is saved where it can be (the temporary directory) and the summary says where.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use cpuprof_model::{Analysis, Profile};

/// Where outputs go.
#[derive(Debug, Default, Clone)]
pub struct Outputs {
    /// Save the profile here.
    pub save: Option<PathBuf>,
    /// Summary JSON here.
    pub json: Option<PathBuf>,
    /// HTML report here.
    pub html: Option<PathBuf>,
    /// Folded stacks here.
    pub collapsed: Option<PathBuf>,
    /// speedscope's format here.
    pub speedscope: Option<PathBuf>,
    /// The Trace Event Format (Perfetto, chrome://tracing) here.
    pub perfetto: Option<PathBuf>,
    /// pprof's gzipped protobuf here.
    pub pprof: Option<PathBuf>,
    /// The Firefox Profiler's processed format here.
    pub firefox: Option<PathBuf>,
    /// No terminal summary.
    pub quiet: bool,
    /// Keep the profile somewhere safe when every file output fails (a recording; a report
    /// of a saved profile has the file already).
    pub rescue: bool,
}

/// cpuprof's exit code when an output could not be written (the others were).
pub const OUTPUT_FAILED: i32 = 4;

/// What [`write_all`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// Outputs that could not be written: (what, path, why).
    pub failed: Vec<(&'static str, PathBuf, String)>,
}

impl Written {
    /// Everything asked for was written.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// `-` as a path: standard output.
pub fn is_stdout(p: &Path) -> bool {
    p == Path::new("-")
}

impl Outputs {
    /// The outputs asked for, with what each holds.
    fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        [
            ("profile", &self.save),
            ("summary JSON", &self.json),
            ("HTML report", &self.html),
            ("folded stacks", &self.collapsed),
            ("speedscope profile", &self.speedscope),
            ("trace events", &self.perfetto),
            ("pprof profile", &self.pprof),
            ("Firefox Profiler profile", &self.firefox),
        ]
        .into_iter()
        .filter_map(|(what, p)| p.as_ref().map(|p| (what, p)))
        .collect()
    }

    /// Checks every path before anything is recorded (see the module docs).
    pub fn check(&self) -> Result<()> {
        let files = self.files();
        let stdout: Vec<_> = files.iter().filter(|(_, p)| is_stdout(p)).collect();
        if stdout.len() > 1 {
            bail!(
                "only one output can go to standard output ('-'), not the {} and the {}",
                stdout[0].0,
                stdout[1].0
            );
        }
        let mut seen: Vec<(PathBuf, &str)> = Vec::new();
        for (what, path) in files {
            if is_stdout(path) {
                continue;
            }
            let shown = path.display();
            if path.is_dir() {
                bail!("cannot write the {what} to '{shown}': it is a directory");
            }
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() {
                bail!(
                    "cannot write the {what} to '{shown}': no directory '{}'",
                    dir.display()
                );
            }
            if !writable(&dir) {
                bail!(
                    "cannot write the {what} to '{shown}': directory '{}' is not writable",
                    dir.display()
                );
            }
            let key = std::fs::canonicalize(&dir)
                .unwrap_or(dir)
                .join(path.file_name().unwrap_or_default());
            if let Some((_, other)) = seen.iter().find(|(k, _)| *k == key) {
                bail!("the {other} and the {what} cannot both be written to '{shown}'");
            }
            seen.push((key, what));
        }
        Ok(())
    }
}

/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path; access has no other preconditions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Writes every requested output, each independently of the others, then the terminal
/// summary with a line per output that failed.
pub fn write_all(out: &Outputs, profile: &Profile, analysis: &Analysis) -> Written {
    let mut written = Written::default();
    let mut fail = |what: &'static str, path: &Path, e: std::io::Error| {
        written
            .failed
            .push((what, path.to_path_buf(), e.to_string()));
    };
    if let Some(path) = &out.save {
        if let Err(e) = write_with(path, |w| save_to(profile, w)) {
            fail("profile", path, e);
        }
    }
    if let Some(path) = &out.json {
        let r = cpuprof_report::summary::to_json(profile, analysis)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                write_with(path, |w| {
                    serde_json::to_writer_pretty(&mut *w, &json)?;
                    w.write_all(b"\n")
                })
            });
        if let Err(e) = r {
            fail("summary JSON", path, e);
        }
    }
    if let Some(path) = &out.collapsed {
        if let Err(e) = write_with(path, |w| cpuprof_report::collapsed::write(profile, w)) {
            fail("folded stacks", path, e);
        }
    }
    if let Some(path) = &out.speedscope {
        let r = cpuprof_report::speedscope::to_json(profile)
            .map_err(std::io::Error::other)
            .and_then(|doc| write_with(path, |w| w.write_all(doc.as_bytes())));
        if let Err(e) = r {
            fail("speedscope profile", path, e);
        }
    }
    if let Some(path) = &out.perfetto {
        let r = cpuprof_report::trace_events::to_json(profile, analysis)
            .map_err(std::io::Error::other)
            .and_then(|doc| write_with(path, |w| w.write_all(doc.as_bytes())));
        if let Err(e) = r {
            fail("trace events", path, e);
        }
    }
    if let Some(path) = &out.pprof {
        let r = cpuprof_report::pprof::to_pprof(profile, analysis)
            .and_then(|doc| write_with(path, |w| w.write_all(&doc)));
        if let Err(e) = r {
            fail("pprof profile", path, e);
        }
    }
    if let Some(path) = &out.firefox {
        let r = cpuprof_report::firefox::to_json(profile, analysis)
            .map_err(std::io::Error::other)
            .and_then(|doc| write_with(path, |w| w.write_all(doc.as_bytes())));
        if let Err(e) = r {
            fail("Firefox Profiler profile", path, e);
        }
    }
    if let Some(path) = &out.html {
        let page = cpuprof_report::html::render(profile, analysis);
        if let Err(e) = write_with(path, |w| w.write_all(page.as_bytes())) {
            fail("HTML report", path, e);
        }
    }
    let mut rescued = None;
    let files = out.files();
    let all_failed = !files.is_empty() && written.failed.len() == files.len();
    if out.rescue && all_failed {
        let path = std::env::temp_dir().join(format!(
            "cpuprof-{}-{}.cpuprof",
            std::process::id(),
            profile.meta.start_unix_ms
        ));
        rescued = Some(match write_with(&path, |w| save_to(profile, w)) {
            Ok(()) => Ok(path),
            Err(e) => Err((path, e)),
        });
    }
    let stderr = std::io::stderr();
    let mut text = String::new();
    if !out.quiet {
        let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        text = cpuprof_report::terminal::render(profile, analysis, color);
        if let Some(path) = out.html.as_ref().filter(|p| !is_stdout(p)) {
            if !written.failed.iter().any(|f| &f.1 == path) {
                text.push_str(&format!("\n  report: {}\n", path.display()));
            }
        }
    }
    // Failures are said even with --quiet: they are errors.
    for (what, path, why) in &written.failed {
        text.push_str(&format!(
            "cpuprof: cannot write the {what} to '{}': {why}\n",
            path.display()
        ));
    }
    match &rescued {
        Some(Ok(p)) => text.push_str(&format!(
            "cpuprof: the recording is saved in '{}' (`cpuprof report` reads it)\n",
            p.display()
        )),
        Some(Err((p, e))) => text.push_str(&format!(
            "cpuprof: the recording is lost: it could not be saved in '{}' either: {e}\n",
            p.display()
        )),
        None => {}
    }
    let mut e = stderr.lock();
    let _ = e.write_all(text.as_bytes());
    let _ = e.flush();
    written
}

/// The profile in the file format.
fn save_to(profile: &Profile, w: &mut dyn Write) -> std::io::Result<()> {
    cpuprof_model::file::write(profile, w).map_err(|e| match e {
        cpuprof_model::file::FileError::Io(io) => io,
        other => std::io::Error::other(other),
    })
}

/// Writes through `f` to standard output (`-`), or to a temporary file beside `path` that is
/// then renamed onto it.
pub fn write_with(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if is_stdout(path) {
        let mut o = std::io::BufWriter::new(std::io::stdout().lock());
        f(&mut o)?;
        return o.flush();
    }
    // A device, a FIFO or a socket (`-o /dev/null`, `--json /dev/stderr`, a named pipe) is
    // written to, never replaced: renaming onto it would put a regular file in its place
    // (as root, even over /dev/null).
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let mut w = std::io::BufWriter::new(std::fs::OpenOptions::new().write(true).open(path)?);
        f(&mut w)?;
        return w.flush();
    }
    // A symbolic link keeps pointing where it did: the file it names is replaced.
    let resolved = std::fs::canonicalize(path).ok();
    let path = resolved.as_deref().unwrap_or(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        f(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_data()?;
    // The new file gets the permissions a plain create would have given it.
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask has no preconditions; it is set back at once.
    let mask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o666 & !mask));
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_written_to_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        write_with(&fifo, |w| w.write_all(b"through the pipe")).unwrap();
        assert_eq!(reader.join().unwrap(), "through the pipe");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced by {kind:?}");
    }

    #[test]
    fn a_symlink_keeps_pointing_at_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.json");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_with(&link, |w| w.write_all(b"new")).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    }
}
