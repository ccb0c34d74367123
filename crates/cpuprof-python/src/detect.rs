//! Is this process a Python interpreter?
//!
//! Decided from `/proc/PID/exe` (its base name contains `python`) and, for an embedding
//! program, `/proc/PID/maps` (a `libpython` is mapped). The answer is only good for one
//! executable: `python3` may be a pyenv shim (a bash script) that later execs the real
//! interpreter in the same pid, so the sampler remembers the executable the answer was for and
//! asks again when it changes.

use std::fs;

use cpuprof_model::Pid;

/// What identifies one program image of `pid`: its executable and command line. A fork keeps
/// both; `exec` changes at least the command line even when the executable stays the same
/// (`subprocess.run([sys.executable, ...])` forks the interpreter, then execs it again), and a
/// spy opened before the `exec` reads a dead address space. `None` when the process is gone or
/// a zombie.
pub fn image(pid: Pid) -> Option<String> {
    let exe = exe(pid)?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(format!("{exe}\0{}", String::from_utf8_lossy(&cmdline)))
}

/// The executable part of an [`image`].
pub fn image_exe(image: &str) -> &str {
    image.split('\0').next().unwrap_or(image)
}

/// What a process is, as far as Python sampling is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A Python interpreter (or a program that embeds one).
    Python,
    /// Anything else.
    Other,
}

/// The executable of `pid` (`/proc/PID/exe`), or `None` when the process is gone or
/// unreadable.
pub fn exe(pid: Pid) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Classifies `pid`, whose executable is `exe`.
pub fn classify(pid: Pid, exe: &str) -> Kind {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    if base.contains("python") {
        return Kind::Python;
    }
    if maps_have_libpython(pid) {
        Kind::Python
    } else {
        Kind::Other
    }
}

/// True when `/proc/PID/maps` maps a `libpython`.
fn maps_have_libpython(pid: Pid) -> bool {
    let Ok(maps) = fs::read(format!("/proc/{pid}/maps")) else {
        return false;
    };
    cpuprof_collect::procfs::proc_maps::libraries(&maps)
        .iter()
        .any(|l| {
            l.rsplit('/')
                .next()
                .is_some_and(|b| b.starts_with("libpython"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_process_is_not_python() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let exe = exe(pid).expect("sleep's exe");
        assert_eq!(classify(pid, &exe), Kind::Other);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn python_named_executables_are_python() {
        assert_eq!(
            classify(u32::MAX, "/root/.pyenv/versions/3.11.7/bin/python3.11"),
            Kind::Python
        );
        assert_eq!(classify(u32::MAX, "/usr/bin/bash"), Kind::Other);
    }
}
