//! SIGINT, SIGTERM and SIGHUP while recording: each ends the recording the same way, with
//! every output written, and the target sees each signal once, as it would without cpuprof.
//!
//! The rule for launch mode (docs/usage.md, "Signals"):
//! - **cpuprof without a controlling terminal** (`setsid`, systemd, cron, CI, `ssh host cmd`):
//!   the target runs in a process group of its own, so a signal to cpuprof's group (`kill
//!   -INT -PGID`, `timeout`, a service manager) reaches cpuprof only, and cpuprof passes it on
//!   once. `timeout` sends to its child and then to its whole group: a repeat of the same
//!   signal within [`REPEAT_NS`] is one signal.
//! - **cpuprof in a terminal**: the target shares cpuprof's group, so the terminal's Ctrl-C,
//!   Ctrl-Z and hangup reach it directly, as without cpuprof; cpuprof passes on only what was
//!   sent by a process (`kill PID`), never what the kernel sent (the terminal), and never
//!   SIGHUP (the terminal and the shell both send it to the whole group).
//!
//! Recording continues until the target ends, so everything up to its exit is written; a
//! second interrupt stops it without waiting. Attach mode: the target is never signalled; an
//! interrupt stops recording.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

static TARGET: AtomicI32 = AtomicI32::new(0);
static OWN_GROUP: AtomicBool = AtomicBool::new(false);
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);
/// Per handled signal: when it last came (monotonic ns), to tell a repeat from a new one.
static LAST: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// The signals handled, in the order of [`LAST`].
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
/// `si_code` of signals the kernel generated (a terminal's Ctrl-C or hangup).
const SI_KERNEL: i32 = 0x80;
/// The same signal again within this is the same signal (`timeout` sends it twice).
const REPEAT_NS: u64 = 100_000_000;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe; `ts` is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let Some(slot) = SIGNALS.iter().position(|&s| s == sig) else {
        return;
    };
    let now = now_ns();
    let before = LAST[slot].swap(now, Ordering::SeqCst);
    if before != 0 && now.saturating_sub(before) < REPEAT_NS {
        return;
    }
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    let target = TARGET.load(Ordering::SeqCst);
    if target <= 0 {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL;
    let forward = OWN_GROUP.load(Ordering::SeqCst) || (!from_kernel && sig != libc::SIGHUP);
    if forward {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(target, sig) };
    }
}

/// Installs the handlers. `forward_to`: the launched target's pid (attach mode: `None`);
/// `own_group`: it runs in a process group of its own.
pub fn install(forward_to: Option<u32>, own_group: bool) {
    TARGET.store(forward_to.map_or(0, |p| p as i32), Ordering::SeqCst);
    OWN_GROUP.store(own_group, Ordering::SeqCst);
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is valid.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            // A signal cpuprof was started with ignored (`nohup`: SIGHUP) stays ignored.
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Interrupts received so far (a repeat within [`REPEAT_NS`] counts once).
pub fn interrupts() -> u32 {
    INTERRUPTS.load(Ordering::SeqCst)
}
