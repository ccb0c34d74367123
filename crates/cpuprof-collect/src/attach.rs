//! Checking that a running process can be watched before attaching to it (`--pid`).
//!
//! Attaching only reads `/proc`: the target is never stopped, traced or signalled, so
//! detaching leaves it exactly as it was. Most of `/proc/PID` is world-readable, but `maps`
//! and `environ` need ptrace-read permission (same user, or root / `CAP_SYS_PTRACE`, and the
//! Yama `ptrace_scope` setting), and so do the perf and Python samplers; refusing up front
//! with advice beats a recording with holes.

use std::io::ErrorKind;

use crate::CollectError;

/// Succeeds if `pid` is a live process whose `/proc` files this user can read.
pub fn check_attachable(pid: u32) -> Result<(), CollectError> {
    let stat = format!("/proc/{pid}/stat");
    match std::fs::read(&stat) {
        Ok(text) => {
            let parsed = crate::procfs::stat::parse(&text, crate::procfs::clock_ticks());
            if parsed.as_ref().is_some_and(|s| s.state == 'Z') {
                return Err(CollectError::NoSuchProcess(pid));
            }
            if let Some(s) = parsed.filter(|s| s.is_kernel_thread()) {
                return Err(CollectError::KernelThread { pid, name: s.comm });
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(CollectError::NoSuchProcess(pid)),
        Err(e) => {
            return Err(CollectError::Os {
                what: format!("cannot read {stat}"),
                source: e,
            })
        }
    }
    for file in ["maps", "environ"] {
        let path = format!("/proc/{pid}/{file}");
        match std::fs::File::open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(CollectError::PermissionDenied { pid, path })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(CollectError::NoSuchProcess(pid))
            }
            Err(e) => {
                return Err(CollectError::Os {
                    what: format!("cannot read {path}"),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_attachable_and_a_free_pid_is_not() {
        check_attachable(std::process::id()).unwrap();
        // pid_max is at most 2^22, so this pid cannot exist.
        let e = check_attachable(5_000_000).unwrap_err();
        assert!(matches!(e, CollectError::NoSuchProcess(5_000_000)));
        assert!(e.to_string().contains("5000000"));
    }
}
