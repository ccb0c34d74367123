//! Starting the target paused, so that nothing it does escapes the collectors.
//!
//! `fork`; the child blocks reading a pipe; the parent attaches its collectors to the child's
//! pid and then [`PausedChild::release`]s it, and the child `execvp`s the command (PATH search
//! like a shell). A failed `exec` is reported back through a second, close-on-exec pipe:
//! end-of-file there means the `exec` succeeded. `std::process::Command` cannot do this: a
//! blocking `pre_exec` deadlocks its own error pipe.
//!
//! cpuprof also makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): descendants
//! orphaned by their parents are re-parented to cpuprof instead of init, so the poller reaps
//! them and their CPU still counts.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::CollectError;

/// A forked child waiting for [`PausedChild::release`] before it `exec`s.
///
/// Dropping it unreleased kills and reaps the child.
#[derive(Debug)]
pub struct PausedChild {
    pid: u32,
    name: String,
    /// Our end of the pipe that releases the child (closed by writing to it, or on drop).
    go: Option<File>,
    /// Our end of the pipe the child writes its `exec` errno to.
    err: Option<File>,
    released: bool,
}

/// Makes the calling process a child subreaper.
pub fn become_subreaper() -> Result<(), CollectError> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        return Err(CollectError::last_os("prctl(PR_SET_CHILD_SUBREAPER)"));
    }
    Ok(())
}

/// Raises cpuprof's soft open-files limit to the hard limit, so that the poller can keep a
/// descriptor open per thread file ([`crate::procfs::ProcReader::read_kept`]). Call it after
/// [`PausedChild::spawn`]: the target was forked before and keeps the limit it was given.
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Whether cpuprof has a controlling terminal (`/dev/tty` opens).
pub fn has_controlling_terminal() -> bool {
    // SAFETY: a constant NUL-terminated path; the descriptor is closed at once.
    unsafe {
        let fd = libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        libc::close(fd);
        true
    }
}

/// A close-on-exec pipe: (read end, write end), each closed when dropped.
fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), CollectError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(CollectError::last_os("pipe2"));
    }
    // SAFETY: pipe2 just returned these two descriptors, owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// How to start a child beyond its command line.
#[derive(Debug, Default)]
pub struct Launch {
    /// A process group of its own (see `src/signals.rs` for when and why).
    pub own_group: bool,
    /// Variables added to (or replacing those of) cpuprof's environment.
    pub env: Vec<(OsString, OsString)>,
    /// Its standard output (default: cpuprof's).
    pub stdout: Option<std::fs::File>,
    /// Its standard error (default: cpuprof's).
    pub stderr: Option<std::fs::File>,
}

/// What the child needs between fork and exec, prepared before the fork.
struct ChildStdio {
    envp: Option<*const *const libc::c_char>,
    stdout: Option<libc::c_int>,
    stderr: Option<libc::c_int>,
}

impl PausedChild {
    /// Forks a child that will run `command` once released. Call this while the process is
    /// still single-threaded (before starting collector threads): the child runs `execvp`.
    /// The arguments are passed as the bytes they are (any command, UTF-8 or not).
    /// `own_group`: the child starts a process group of its own (see `src/signals.rs` for
    /// when and why).
    pub fn spawn<A: AsRef<OsStr>>(
        command: &[A],
        own_group: bool,
    ) -> Result<PausedChild, CollectError> {
        Self::spawn_with(
            command,
            Launch {
                own_group,
                ..Launch::default()
            },
        )
    }

    /// [`PausedChild::spawn`] with more of the child's setup: extra environment variables and
    /// where its standard output and error go.
    pub fn spawn_with<A: AsRef<OsStr>>(
        command: &[A],
        launch: Launch,
    ) -> Result<PausedChild, CollectError> {
        let own_group = launch.own_group;
        let name = command
            .first()
            .ok_or_else(|| CollectError::BadCommand("no command given".into()))?
            .as_ref()
            .to_string_lossy()
            .into_owned();
        let args: Vec<CString> = command
            .iter()
            .map(|a| CString::new(a.as_ref().as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| CollectError::BadCommand(format!("'{name}' contains a NUL byte")))?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        // The environment, prepared before the fork (the child may not allocate): cpuprof's
        // own with the extra variables replacing theirs.
        let envs: Option<Vec<CString>> = if launch.env.is_empty() {
            None
        } else {
            let mut all: Vec<(OsString, OsString)> = std::env::vars_os()
                .filter(|(k, _)| !launch.env.iter().any(|(x, _)| x == k))
                .collect();
            all.extend(launch.env.iter().cloned());
            let kv: Result<Vec<CString>, _> = all
                .iter()
                .map(|(k, v)| {
                    let mut b = k.as_bytes().to_vec();
                    b.push(b'=');
                    b.extend_from_slice(v.as_bytes());
                    CString::new(b)
                })
                .collect();
            Some(kv.map_err(|_| {
                CollectError::BadCommand("an environment variable contains a NUL byte".into())
            })?)
        };
        let mut envp: Vec<*const libc::c_char> =
            envs.iter().flatten().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let stdio = ChildStdio {
            envp: envs.is_some().then_some(envp.as_ptr()),
            stdout: launch.stdout.as_ref().map(|f| f.as_raw_fd()),
            stderr: launch.stderr.as_ref().map(|f| f.as_raw_fd()),
        };
        let (go_read, go_write) = pipe_cloexec()?;
        let (err_read, err_write) = pipe_cloexec()?;
        let go = [go_read.as_raw_fd(), go_write.as_raw_fd()];
        let err = [err_read.as_raw_fd(), err_write.as_raw_fd()];
        // SAFETY: between fork and exec the child only calls async-signal-safe functions
        // (close, read, sigprocmask, signal, execvp's PATH search, write, _exit); all memory
        // it touches was prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(CollectError::last_os("fork"));
        }
        if pid == 0 {
            // Child.
            unsafe { child_after_fork(go, err, &argv, own_group, &stdio) }
        }
        if own_group {
            // Also from here, so that the group exists before the parent signals it (the
            // child may not have run yet); EACCES once the child has exec'd is harmless.
            // SAFETY: setpgid on our own child.
            unsafe { libc::setpgid(pid, pid) };
        }
        // The child's ends close here, in the parent.
        drop(go_read);
        drop(err_write);
        Ok(PausedChild {
            pid: pid as u32,
            name,
            go: Some(File::from(go_write)),
            err: Some(File::from(err_read)),
            released: false,
        })
    }

    /// The child's pid (valid before and after `exec`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the child `exec`, then waits until it did. An `exec` failure comes back as
    /// [`CollectError::NotFound`] (exit 127 for the user) or [`CollectError::NotExecutable`]
    /// (126); the failed child exits 127 on its own.
    pub fn release(&mut self) -> Result<(), CollectError> {
        self.released = true;
        if let Some(mut go) = self.go.take() {
            // A failed write means the child is gone; its exit says the rest.
            let _ = go.write_all(&[1]);
        }
        let mut buf = [0u8; 4];
        let mut got = 0;
        if let Some(mut err) = self.err.take() {
            while got < 4 {
                match err.read(&mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if got < 4 {
            return Ok(()); // end of file: exec succeeded
        }
        let errno = i32::from_ne_bytes(buf);
        Err(exec_error(&self.name, errno))
    }
}

/// The error for an `exec` that failed with `errno`.
pub fn exec_error(name: &str, errno: i32) -> CollectError {
    if errno == libc::ENOENT || errno == libc::ENOTDIR {
        CollectError::NotFound {
            name: name.to_string(),
        }
    } else {
        CollectError::NotExecutable {
            name: name.to_string(),
            source: io::Error::from_raw_os_error(errno),
        }
    }
}

impl CollectError {
    /// The exit status a shell uses for this launch error (127 not found, 126 not executable),
    /// `None` for other errors.
    pub fn launch_exit_code(&self) -> Option<i32> {
        match self {
            CollectError::NotFound { .. } => Some(127),
            CollectError::NotExecutable { .. } => Some(126),
            _ => None,
        }
    }
}

/// The child's side: wait for the go byte, restore signal state, exec, report failure.
///
/// # Safety
/// Only to be called in the child right after `fork`.
unsafe fn child_after_fork(
    go: [libc::c_int; 2],
    err: [libc::c_int; 2],
    argv: &[*const libc::c_char],
    own_group: bool,
    stdio: &ChildStdio,
) -> ! {
    unsafe {
        libc::close(go[1]);
        libc::close(err[0]);
        if own_group {
            libc::setpgid(0, 0);
        }
        let mut b = 0u8;
        loop {
            let n = libc::read(go[0], (&mut b as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n == 0 || *libc::__errno_location() != libc::EINTR {
                // cpuprof went away without releasing us: do not run the command.
                libc::_exit(125);
            }
        }
        libc::close(go[0]);
        // The target gets the signal state cpuprof was started with: the fork comes before
        // cpuprof installs its handlers, so a signal ignored by whoever started cpuprof
        // (`nohup`: SIGHUP; a script's background job: SIGINT) stays ignored. Only what Rust
        // itself changed is undone (it ignores SIGPIPE), and the mask is cleared.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if let Some(fd) = stdio.stdout {
            libc::dup2(fd, 1);
        }
        if let Some(fd) = stdio.stderr {
            libc::dup2(fd, 2);
        }
        match stdio.envp {
            Some(envp) => libc::execvpe(argv[0], argv.as_ptr(), envp),
            None => libc::execvp(argv[0], argv.as_ptr()),
        };
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(err[1], bytes.as_ptr().cast(), 4);
        libc::_exit(127);
    }
}

impl Drop for PausedChild {
    fn drop(&mut self) {
        // The pipes close with their fields.
        if !self.released {
            // SAFETY: the child is ours and has not been reaped.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(self.pid as libc::pid_t, &mut status, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(pid: u32) -> i32 {
        let mut status = 0;
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        status
    }

    #[test]
    fn runs_after_release_and_reports_exec_failures() {
        let mut c = PausedChild::spawn(&["sh", "-c", "exit 3"], false).unwrap();
        // Paused: still our forked copy, blocked on the pipe.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", c.pid())).unwrap();
        assert_ne!(comm.trim(), "sh");
        c.release().unwrap();
        let st = wait(c.pid());
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 3);

        let mut c = PausedChild::spawn(&["cpuprof-no-such-command-xyz"], false).unwrap();
        let e = c.release().unwrap_err();
        assert_eq!(e.launch_exit_code(), Some(127));
        assert_eq!(
            e.to_string(),
            "cannot run 'cpuprof-no-such-command-xyz': No such file or directory"
        );
        wait(c.pid());

        let file = std::env::temp_dir().join(format!("cpuprof-noexec-{}", std::process::id()));
        std::fs::write(&file, "echo hi\n").unwrap();
        let mut c = PausedChild::spawn(&[file.display().to_string()], false).unwrap();
        assert_eq!(c.release().unwrap_err().launch_exit_code(), Some(126));
        wait(c.pid());
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn dropping_unreleased_kills_the_child() {
        let c = PausedChild::spawn(&["true"], false).unwrap();
        let pid = c.pid();
        drop(c);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
