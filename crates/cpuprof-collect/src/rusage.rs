//! CPU times from the kernel's `rusage`: of reaped children (`wait4`) and of cpuprof itself.

use cpuprof_model::CpuTimes;

/// User and system time of a `rusage`.
pub fn cpu_times(ru: &libc::rusage) -> CpuTimes {
    let ns = |tv: libc::timeval| {
        (tv.tv_sec.max(0) as u64) * 1_000_000_000 + (tv.tv_usec.max(0) as u64) * 1000
    };
    CpuTimes {
        user_ns: ns(ru.ru_utime),
        sys_ns: ns(ru.ru_stime),
    }
}

/// The calling process's own CPU time so far, all its threads (reaped children not included).
pub fn own_cpu() -> CpuTimes {
    // SAFETY: rusage is plain data (all-zero is valid) and getrusage writes only into it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    cpu_times(&ru)
}

/// This process's largest resident set so far, KiB.
pub fn own_max_rss_kb() -> u64 {
    // SAFETY: as in `own_cpu`.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    ru.ru_maxrss.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::thread_cpu_ns;

    #[test]
    fn own_cpu_grows_with_work() {
        let before = own_cpu().total_ns();
        // 30 ms of this thread's CPU, however long a busy machine makes that take.
        let start = thread_cpu_ns();
        while thread_cpu_ns() < start + 30_000_000 {}
        let grown = own_cpu().total_ns() - before;
        assert!(
            grown >= 20_000_000,
            "rusage grew by {grown} ns for 30 ms of work"
        );
    }
}
