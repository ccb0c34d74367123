//! SIGINT and SIGTERM while recording.
//!
//! Launch mode: the signal goes on to the target, and recording continues until the target
//! ends (so everything up to its exit is written). A Ctrl-C typed at the terminal already
//! reached the target (same process group), so only signals sent to cpuprof alone are
//! forwarded. A second interrupt stops recording without waiting. Attach mode: the target is
//! never signalled; an interrupt just stops recording.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

static TARGET: AtomicI32 = AtomicI32::new(0);
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);
/// `si_code` of signals the kernel generated (a terminal's Ctrl-C).
const SI_KERNEL: i32 = 0x80;

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    let target = TARGET.load(Ordering::SeqCst);
    if target <= 0 {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO; kill is async-signal-safe.
    unsafe {
        let from_terminal = !info.is_null() && (*info).si_code == SI_KERNEL && sig == libc::SIGINT;
        if !from_terminal {
            libc::kill(target, sig);
        }
    }
}

/// Installs the handlers. `forward_to`: the launched target's pid (attach mode: `None`).
pub fn install(forward_to: Option<u32>) {
    TARGET.store(forward_to.map_or(0, |p| p as i32), Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is valid.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Interrupts received so far.
pub fn interrupts() -> u32 {
    INTERRUPTS.load(Ordering::SeqCst)
}
