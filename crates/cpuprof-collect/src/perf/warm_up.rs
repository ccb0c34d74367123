//! The kernel's scheduler hooks for perf, switched on while the recorder gets ready.
//!
//! The first perf event that needs the scheduler's hooks — any per-task event (the rings'
//! owners are per-task events of cpuprof itself) or one with context-switch records — turns
//! them on when no such event was open in the last second or so, and waits for an RCU grace
//! period before `perf_event_open` returns (`account_event`: `static_branch_enable` then
//! `synchronize_rcu`): 10–14 ms on the 2-core machines this was measured on, `perf record`
//! pays it too. Nothing of it depends on the recording, so a thread opens such an event on
//! cpuprof itself as soon as a recording starts, and the wait passes while cpuprof forks the
//! target, reads the machine and registers for the exit notifications; the events opened
//! after it find the hooks on.

use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

use super::attr::{self, PerfEventAttr};

/// The warming thread; dropping it closes its event, once the recorder's own are open.
pub struct WarmUp {
    thread: Option<JoinHandle<Option<OwnedFd>>>,
}

impl WarmUp {
    /// Starts opening a do-nothing per-task event on this process (user space only: any
    /// `perf_event_paranoid` allows it). A refusal is no matter: the recorder's own events
    /// then pay the wait, or say why they cannot be opened.
    pub fn start() -> WarmUp {
        if super::sampler::disabled_by_env() {
            return WarmUp { thread: None };
        }
        let thread = std::thread::Builder::new()
            .name("cpuprof-warmup".into())
            .spawn(|| attr::open(&PerfEventAttr::ring_owner().user_only(), 0, -1).ok())
            .ok();
        WarmUp { thread }
    }
}

impl Drop for WarmUp {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WarmUp;

    #[test]
    fn warming_up_opens_its_event_where_any_is_allowed() {
        let mut w = WarmUp::start();
        let fd = w
            .thread
            .take()
            .expect("thread started")
            .join()
            .expect("no panic");
        // A user-space event on oneself is allowed up to perf_event_paranoid 2 (and to root).
        let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(3);
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if paranoid <= 2 || root {
            assert!(fd.is_some(), "paranoid {paranoid}, root {root}");
        }
    }
}
