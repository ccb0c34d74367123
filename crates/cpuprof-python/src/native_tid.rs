//! The OS thread of a Python thread, on interpreters that do not store it (before 3.11).
//!
//! CPython 3.11 and later keep each thread's kernel tid in its thread state (py-spy reads it).
//! Older interpreters keep only `pthread_self()`, which on glibc is the address of the
//! thread's descriptor (`struct pthread`) in the process; the descriptor holds the kernel tid
//! at an offset glibc publishes for debuggers: the symbol `_thread_db_pthread_tid`, a
//! libthread_db field descriptor of three `u32` (size in bits, count, offset; 32, 1, 720 on
//! Debian 12's glibc 2.36). So the offset comes from the target's own libc, not from a table
//! of versions, and every tid read is checked against the process's live threads (the main
//! thread's must be the pid) before it is believed. py-spy finds the same mapping only by
//! pausing the target and unwinding each thread (its `unwind` feature, never in non-blocking
//! mode).
//!
//! Reading costs one 4-byte `process_vm_readv` per thread the first time it is seen; a
//! pthread value that comes back for a new thread (glibc reuses descriptors) is read again.

use std::collections::HashMap;

use cpuprof_model::{Pid, Tid};
use object::{Object, ObjectSection, ObjectSymbol};

/// The descriptor's symbol.
const TID_DESCRIPTOR: &str = "_thread_db_pthread_tid";

/// Where the tid is in a `struct pthread` of the libc at `path`; `Err` says why not.
pub fn tid_offset(path: &str) -> Result<u64, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{path}: {e}"))?;
    let sym = file
        .dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.name() == Ok(TID_DESCRIPTOR))
        .ok_or_else(|| format!("{path} has no {TID_DESCRIPTOR} (not glibc 2.34 or later?)"))?;
    let section = sym
        .section_index()
        .and_then(|i| file.section_by_index(i).ok())
        .ok_or_else(|| format!("{TID_DESCRIPTOR} in {path} is in no section"))?;
    let bytes = section
        .data_range(sym.address(), 12)
        .ok()
        .flatten()
        .ok_or_else(|| format!("{TID_DESCRIPTOR} in {path} is out of its section"))?;
    let word = |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    match (word(0), word(8)) {
        (32, offset) if offset < 4096 => Ok(u64::from(offset)),
        (bits, offset) => Err(format!(
            "{TID_DESCRIPTOR} in {path} reads {bits} bits at {offset}: not a tid"
        )),
    }
}

/// The glibc mapped into `pid` (its path), if any.
pub fn libc_of(pid: Pid) -> Option<String> {
    let maps = cpuprof_symbols::maps::read_exec(pid).ok()?;
    maps.iter()
        .filter(|m| m.is_file())
        .find(|m| {
            let b = m.base_name();
            b.starts_with("libc.so") || (b.starts_with("libc-") && b.ends_with(".so"))
        })
        .map(|m| m.path.clone())
}

/// Reads a `u32` at `addr` in `pid`'s memory.
fn read_u32(pid: Pid, addr: u64) -> Option<u32> {
    let mut buf = [0u8; 4];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 4,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 4,
    };
    // SAFETY: one valid local buffer of 4 bytes; the remote address is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    (n == 4).then(|| u32::from_ne_bytes(buf))
}

/// One process's Python thread ids (`pthread_t`) and their kernel tids.
#[derive(Debug)]
pub struct NativeTids {
    pid: Pid,
    offset: u64,
    /// Pairs already checked against the process's threads.
    checked: HashMap<u64, Tid>,
}

impl NativeTids {
    /// Mapping for `pid`, with the tid at `offset` in each thread descriptor.
    pub fn new(pid: Pid, offset: u64) -> Self {
        NativeTids {
            pid,
            offset,
            checked: HashMap::new(),
        }
    }

    /// The kernel tid of the thread whose `pthread_self()` is `pthread`. Read at every call:
    /// glibc reuses the descriptors of threads that ended, and the kernel zeroes the field
    /// when its thread exits (`CLONE_CHILD_CLEARTID`), so a thread that is exiting maps to
    /// nothing rather than to thread 0. A pair seen for the first time is believed only if
    /// the tid is one of the process's threads.
    pub fn tid(&mut self, pthread: u64) -> Option<Tid> {
        let t = read_u32(self.pid, pthread.checked_add(self.offset)?)?;
        if t == 0 {
            return None;
        }
        if self.checked.get(&pthread) != Some(&t) {
            let path = format!("/proc/{}/task/{t}", self.pid);
            if !std::path::Path::new(&path).exists() {
                return None;
            }
            self.checked.insert(pthread, t);
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_maps_its_own_threads() {
        let me = std::process::id();
        let libc = libc_of(me).expect("glibc mapped");
        let offset = tid_offset(&libc).expect("the descriptor");
        let mut map = NativeTids::new(me, offset);
        // SAFETY: pthread_self and gettid have no preconditions.
        let ids = || unsafe { (libc::pthread_self() as u64, libc::gettid() as Tid) };
        let (here, here_tid) = ids();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            tx.send(ids()).unwrap();
            let _ = done_rx.recv();
        });
        let (pthread, tid) = rx.recv().unwrap();
        assert_ne!(tid, here_tid);
        assert_eq!(map.tid(here), Some(here_tid));
        assert_eq!(map.tid(pthread), Some(tid));
        drop(done_tx);
        worker.join().unwrap();
        // An ended thread's descriptor reads 0: no thread, not thread 0.
        assert_eq!(map.tid(pthread), None);
        // An address that is no descriptor does not read as a thread.
        assert_eq!(map.tid(8), None);
    }

    #[test]
    fn a_library_without_the_descriptor_is_refused_with_a_reason() {
        let err = tid_offset("/bin/true").unwrap_err();
        assert!(err.contains("_thread_db_pthread_tid"), "{err}");
        assert!(tid_offset("/nonexistent/libc.so.6")
            .unwrap_err()
            .contains("cannot read"));
    }
}
