//! CPU time as the kernel accounts it (`getrusage`), and wall time.
//!
//! The workload reports its own CPU time so tests can hold cpuprof's numbers against it: a
//! worker reports `RUSAGE_SELF`, the parent adds `RUSAGE_CHILDREN` (its reaped workers).

use std::time::Duration;

/// User and system CPU time of one `getrusage` call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub sys_s: f64,
}

impl CpuTimes {
    /// User + system seconds.
    pub fn total_s(self) -> f64 {
        self.user_s + self.sys_s
    }
}

impl std::ops::Add for CpuTimes {
    type Output = CpuTimes;
    fn add(self, o: CpuTimes) -> CpuTimes {
        CpuTimes {
            user_s: self.user_s + o.user_s,
            sys_s: self.sys_s + o.sys_s,
        }
    }
}

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy)]
pub enum Who {
    /// This process (all its threads).
    SelfProcess,
    /// All waited-for descendants of this process.
    Children,
}

/// Reads the CPU time of this process or of its reaped children.
pub fn cpu_times(who: Who) -> CpuTimes {
    let which = match who {
        Who::SelfProcess => libc::RUSAGE_SELF,
        Who::Children => libc::RUSAGE_CHILDREN,
    };
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
    let rc = unsafe { libc::getrusage(which, &mut ru) };
    if rc != 0 {
        return CpuTimes::default();
    }
    CpuTimes {
        user_s: timeval_s(ru.ru_utime),
        sys_s: timeval_s(ru.ru_stime),
    }
}

fn timeval_s(tv: libc::timeval) -> f64 {
    Duration::new(tv.tv_sec as u64, (tv.tv_usec as u32) * 1000).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_time_grows_with_work() {
        // Busy-loop until getrusage shows 50 ms more CPU; a broken reader never gets there.
        let before = cpu_times(Who::SelfProcess).total_s();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_times(Who::SelfProcess).total_s() - before < 0.05 {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "CPU time did not grow"
            );
        }
    }
}
