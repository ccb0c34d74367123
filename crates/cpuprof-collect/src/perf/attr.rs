//! `perf_event_attr` and the `perf_event_open` system call, written out by hand.
//!
//! We open software `cpu-clock` events with a user-register + user-stack copy per sample,
//! context-switch records and side-band records (mmap2, comm, fork/exit). The attribute layout
//! is the kernel's `PERF_ATTR_SIZE_VER8` (136 bytes); older kernels accept it as long as the
//! fields they do not know are zero.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `PERF_TYPE_SOFTWARE`.
const TYPE_SOFTWARE: u32 = 1;
/// `PERF_COUNT_SW_CPU_CLOCK`.
const SW_CPU_CLOCK: u64 = 0;
/// `PERF_COUNT_SW_DUMMY`.
const SW_DUMMY: u64 = 9;

/// `PERF_SAMPLE_*` bits we use.
pub const SAMPLE_IP: u64 = 1 << 0;
/// Pid and tid.
pub const SAMPLE_TID: u64 = 1 << 1;
/// Time (with `use_clockid`: `CLOCK_MONOTONIC`).
pub const SAMPLE_TIME: u64 = 1 << 2;
/// User registers.
pub const SAMPLE_REGS_USER: u64 = 1 << 12;
/// A copy of the user stack.
pub const SAMPLE_STACK_USER: u64 = 1 << 13;

/// x86_64 `perf_regs` bits: BP (6), SP (7), IP (8); the sample lists them in bit order.
pub const REGS_MASK: u64 = (1 << 6) | (1 << 7) | (1 << 8);

// perf_event_attr flag bits.
const DISABLED: u64 = 1 << 0;
const EXCLUDE_KERNEL: u64 = 1 << 5;
const EXCLUDE_HV: u64 = 1 << 6;
const INHERIT: u64 = 1 << 1;
const MMAP: u64 = 1 << 8;
const COMM: u64 = 1 << 9;
const ENABLE_ON_EXEC: u64 = 1 << 12;
const TASK: u64 = 1 << 13;
const SAMPLE_ID_ALL: u64 = 1 << 18;
const MMAP2: u64 = 1 << 23;
const COMM_EXEC: u64 = 1 << 24;
const USE_CLOCKID: u64 = 1 << 25;
const CONTEXT_SWITCH: u64 = 1 << 26;

/// `struct perf_event_attr` (VER8).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
    config3: u64,
}

/// The sample fields every event in our ring buffers carries (so records parse the same way).
pub const SAMPLE_TYPE: u64 =
    SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_REGS_USER | SAMPLE_STACK_USER;

/// How a sampling event is opened.
#[derive(Debug, Clone, Copy)]
pub struct SamplingAttr {
    /// Nanoseconds of CPU time between samples.
    pub period_ns: u64,
    /// Bytes of user stack copied per sample (multiple of 8).
    pub stack_bytes: u32,
    /// Follow children (launch mode).
    pub inherit: bool,
    /// Start counting at the target's next `exec` (launch mode).
    pub enable_on_exec: bool,
    /// Emit `PERF_RECORD_SWITCH` records.
    pub context_switches: bool,
}

impl PerfEventAttr {
    fn base() -> Self {
        PerfEventAttr {
            type_: TYPE_SOFTWARE,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            sample_type: SAMPLE_TYPE,
            sample_regs_user: REGS_MASK,
            clockid: libc::CLOCK_MONOTONIC,
            flags: SAMPLE_ID_ALL | USE_CLOCKID,
            ..Default::default()
        }
    }

    /// A `cpu-clock` sampling event with side-band and context-switch records.
    pub fn sampling(a: SamplingAttr) -> Self {
        let mut attr = Self::base();
        attr.config = SW_CPU_CLOCK;
        attr.sample_period = a.period_ns.max(10_000);
        attr.sample_stack_user = a.stack_bytes & !7;
        attr.flags |= MMAP | MMAP2 | COMM | COMM_EXEC | TASK;
        if a.context_switches {
            attr.flags |= CONTEXT_SWITCH;
        }
        if a.inherit {
            attr.flags |= INHERIT;
        }
        if a.enable_on_exec {
            attr.flags |= DISABLED | ENABLE_ON_EXEC;
        }
        attr
    }

    /// The same event restricted to user space (what `perf_event_paranoid = 2` allows an
    /// unprivileged user).
    pub fn user_only(mut self) -> Self {
        self.flags |= EXCLUDE_KERNEL | EXCLUDE_HV;
        self
    }

    /// Nanoseconds between samples (`cpu-clock`'s period).
    pub fn period_ns(&self) -> u64 {
        self.sample_period
    }

    /// The same event opened stopped: it counts from [`enable`] on.
    pub fn disabled(mut self) -> Self {
        self.flags |= DISABLED;
        self
    }

    /// A dummy event that records nothing: it only owns a CPU's ring buffer, which the
    /// sampling events write into (`PERF_EVENT_IOC_SET_OUTPUT`), so the buffer outlives any
    /// one target thread.
    pub fn ring_owner() -> Self {
        let mut attr = Self::base();
        attr.config = SW_DUMMY;
        attr
    }
}

/// `perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)`.
pub fn open(attr: &PerfEventAttr, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    // SAFETY: `attr` is a valid, fully initialised perf_event_attr whose `size` field matches
    // its type; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            pid,
            cpu,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `event`'s records to `owner`'s ring buffer (`PERF_EVENT_IOC_SET_OUTPUT`).
pub fn set_output(event: &OwnedFd, owner: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
    // SAFETY: both are perf event fds we own; the ioctl takes the other fd as its argument.
    let r = unsafe {
        libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_OUTPUT as _,
            owner.as_raw_fd(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a stopped event (`PERF_EVENT_IOC_ENABLE`).
pub fn enable(event: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
    // SAFETY: a perf event fd we own; the ioctl takes no argument.
    let r = unsafe { libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 136);
    }

    #[test]
    fn sampling_attr_flags() {
        let a = PerfEventAttr::sampling(SamplingAttr {
            period_ns: 1_000_000,
            stack_bytes: 16_385,
            inherit: true,
            enable_on_exec: true,
            context_switches: true,
        });
        assert_eq!(a.sample_stack_user, 16_384);
        assert_ne!(a.flags & INHERIT, 0);
        assert_ne!(a.flags & CONTEXT_SWITCH, 0);
        assert_ne!(a.flags & USE_CLOCKID, 0);
        assert_eq!(a.clockid, libc::CLOCK_MONOTONIC);
    }
}
