//! Why the perf sampler could not start; [`PerfError::notice`] is the one line the user sees.

use std::io;

/// Why native stack sampling is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The kernel (or a seccomp filter, or a setting) refused `perf_event_open`.
    #[error("perf_event_open refused for pid {pid}: {source}")]
    Refused {
        /// The target.
        pid: u32,
        /// The kernel's answer (EACCES, EPERM, ENOSYS, ...).
        source: io::Error,
    },
    /// Sampling was switched off with `CPUPROF_DISABLE_PERF=1`.
    #[error("perf sampling disabled by CPUPROF_DISABLE_PERF")]
    Disabled,
    /// The target went away before its events could be opened.
    #[error("process {0} ended before perf events could be attached")]
    TargetGone(u32),
    /// The ring buffer could not be mapped.
    #[error("cannot map a perf ring buffer for CPU {cpu}: {source}")]
    Mmap {
        /// The CPU.
        cpu: u32,
        /// Why.
        source: io::Error,
    },
}

impl PerfError {
    /// One line for `Event::Notice`: what is missing, why, and what setting allows it.
    pub fn notice(&self) -> String {
        let why = match self {
            PerfError::Refused { source, .. } => format!("perf_event_open failed: {source}"),
            PerfError::Disabled => "CPUPROF_DISABLE_PERF is set".to_string(),
            other => other.to_string(),
        };
        let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .map(|s| format!(" (now {})", s.trim()))
            .unwrap_or_default();
        format!(
            "no native stacks or context switches: {why}; allow perf with `sudo sysctl \
             kernel.perf_event_paranoid=1`{paranoid} or give cpuprof CAP_PERFMON (containers: \
             a seccomp profile that permits perf_event_open); CPU and wall time come from \
             procfs only"
        )
    }
}
