//! The processes whose interpreter frames another reader records.
//!
//! perf sees a CPython thread as a tower of `_PyEval_EvalFrameDefault` frames; cpuprof's
//! Python sampler reads the program's frames, and the merge keeps only the native frames
//! *below* the innermost evaluation frame (NumPy, BLAS). For those processes the symbolizer
//! ends the walk at that frame: the interpreter's frames above it are never unwound, named or
//! read from the live stack past the 64 KB copy (one `/proc/PID/mem` read per 16 KB, most of
//! what a deep Python stack cost to unwind). A process the Python sampler cannot read is not in
//! the set, and keeps whole stacks.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// A set of pids shared between the Python sampler (which fills it) and the symbolizer.
#[derive(Debug, Clone, Default)]
pub struct InterpretedPids(Arc<RwLock<HashSet<u32>>>);

impl InterpretedPids {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// `pid`'s Python frames are being recorded.
    pub fn insert(&self, pid: u32) {
        if !self.contains(pid) {
            self.0
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pid);
        }
    }

    /// `pid`'s Python frames are no longer recorded.
    pub fn remove(&self, pid: u32) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
    }

    /// Whether `pid`'s Python frames are being recorded.
    pub fn contains(&self, pid: u32) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_set() {
        let a = InterpretedPids::new();
        let b = a.clone();
        a.insert(7);
        assert!(b.contains(7) && !b.contains(8));
        b.remove(7);
        assert!(!a.contains(7));
    }
}
