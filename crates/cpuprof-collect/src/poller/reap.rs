//! Reaping cpuprof's children and waiting for the target's exit.
//!
//! In launch mode cpuprof is the parent of the target and, as subreaper, of orphaned
//! descendants: `wait4` gives each one's exit status and the kernel's CPU accounting of its
//! whole reaped subtree. A pidfd lets the poller sleep until the next tick *or* the target's
//! exit, whichever comes first, in both launch and attach mode.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use cpuprof_model::{CpuTimes, Pid};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// From a `wait` status word.
    pub fn from_raw(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitStatus {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
            }
        } else {
            ExitStatus {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
            }
        }
    }
}

/// One reaped child.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// Its pid.
    pub pid: Pid,
    /// How it ended.
    pub status: ExitStatus,
    /// Its CPU and its reaped descendants' (rusage).
    pub rusage: CpuTimes,
}

/// Reaps every child of cpuprof that has ended, without blocking.
pub fn reap_all() -> Vec<Reaped> {
    let mut out = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, zeroed is valid; status and ru are valid pointers.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG | libc::__WALL, &mut ru) };
        if pid <= 0 {
            break;
        }
        out.push(Reaped {
            pid: pid as Pid,
            status: ExitStatus::from_raw(status),
            rusage: crate::rusage::cpu_times(&ru),
        });
    }
    out
}

/// A pidfd: readable once the process has exited.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens a pidfd for `pid` (`None` on kernels without `pidfd_open` or if it is gone).
    pub fn open(pid: Pid) -> Option<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a fresh descriptor that we own.
        Some(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Waits up to `ms` milliseconds; true if the process has exited.
    pub fn wait_exited(&self, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        n > 0 && p.revents & libc::POLLIN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_words() {
        assert_eq!(
            ExitStatus::from_raw(3 << 8),
            ExitStatus {
                code: Some(3),
                signal: None
            }
        );
        assert_eq!(
            ExitStatus::from_raw(9),
            ExitStatus {
                code: None,
                signal: Some(9)
            }
        );
    }
}
