//! The collector's one error type: every message names the pid or path it is about.

use std::io;

/// Why collecting failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The command to launch was not found.
    #[error("cannot run '{name}': No such file or directory")]
    NotFound {
        /// The command as given.
        name: String,
    },
    /// The command exists but could not be executed.
    #[error("cannot run '{name}': {source}")]
    NotExecutable {
        /// The command as given.
        name: String,
        /// Why `exec` refused.
        source: io::Error,
    },
    /// The command line was empty or held a NUL byte.
    #[error("invalid command: {0}")]
    BadCommand(String),
    /// No process with this pid exists.
    #[error("no process with pid {0} (it is not running)")]
    NoSuchProcess(u32),
    /// The pid is a kernel thread: there is no program to watch.
    #[error(
        "pid {pid} is the kernel thread '{name}', not a program: give the pid of a process \
         (`ps -o pid,comm -p PID`)"
    )]
    KernelThread {
        /// Its pid.
        pid: u32,
        /// Its name.
        name: String,
    },
    /// The process exists but its `/proc` files cannot be read by this user.
    #[error(
        "cannot read process {pid} ({path}: permission denied); run cpuprof as the same user \
         as the target or as root, or give it CAP_SYS_PTRACE; with \
         /proc/sys/kernel/yama/ptrace_scope = 1 or more, attaching needs root or \
         `sudo sysctl kernel.yama.ptrace_scope=0`"
    )]
    PermissionDenied {
        /// The process.
        pid: u32,
        /// The file that refused.
        path: String,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was attempted.
        what: String,
        /// The error.
        source: io::Error,
    },
}

impl CollectError {
    /// An [`CollectError::Os`] from the last OS error.
    pub(crate) fn last_os(what: impl Into<String>) -> Self {
        CollectError::Os {
            what: what.into(),
            source: io::Error::last_os_error(),
        }
    }
}
