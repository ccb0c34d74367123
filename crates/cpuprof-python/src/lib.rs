//! Python stacks for cpuprof — read by its own CPython stack walker ([`walk`]), with the `py-spy`
//! library finding the interpreter and naming threads — and their merge with native stacks.
//!
//! Two halves:
//! - [`PythonSampler`]: a collector thread. For every Python process of the live tree it reads
//!   each thread's Python stack at the recording rate and sends
//!   [`Event::PythonSample`](cpuprof_model::Event::PythonSample)s (frames root first, thread
//!   name, GIL, idle or not). Native frames are not read here: the perf sampler has them.
//! - [`merge`]: after recording, rewrites the perf samples of Python threads into merged stacks:
//!   Python frames, then the native frames below the interpreter's frame evaluation (NumPy, BLAS,
//!   the OpenBLAS kernel). `docs/python.md` states the rule and its limits.
//!
//! ```no_run
//! use std::sync::{atomic::AtomicBool, mpsc, Arc};
//! use cpuprof_python::{PythonOptions, PythonSampler};
//! let (tx, rx) = mpsc::channel();
//! let stop = Arc::new(AtomicBool::new(false));
//! let pid = 1234;
//! let handle = PythonSampler::new(move || vec![pid], PythonOptions::default(), tx, stop.clone())
//!     .spawn()
//!     .unwrap();
//! # drop(rx); drop(handle);
//! ```
#![deny(missing_docs)]

mod convert;
pub mod detect;
mod merge;
mod native_tid;
mod pause;
mod reader;
mod sampler;
pub mod walk;

use cpuprof_model::Pid;

pub use merge::merge;
pub use sampler::{PythonOptions, PythonSampler, SamplerStats, OPEN_GRACE};

/// Errors of this crate (sampling problems are notices, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sampler thread could not be started.
    #[error("cannot start the Python sampler thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Where the sampler learns which processes to look at, every tick.
pub trait PidSource: Send + 'static {
    /// The pids of the target tree now.
    fn pids(&mut self) -> Vec<Pid>;

    /// A counter of changes to the set of pids (new, ended, exec'd processes), if the
    /// source keeps one.
    fn generation(&mut self) -> Option<u64> {
        None
    }

    /// Waits until the set changed since generation `seen` or `timeout` passed. Sources
    /// without a counter just wait a poll interval.
    fn wait_for_change(&mut self, seen: Option<u64>, timeout: std::time::Duration) {
        let _ = seen;
        std::thread::park_timeout(timeout.min(std::time::Duration::from_millis(50)));
    }
}

impl<F: FnMut() -> Vec<Pid> + Send + 'static> PidSource for F {
    fn pids(&mut self) -> Vec<Pid> {
        self()
    }
}

impl PidSource for cpuprof_collect::tree::LiveTree {
    fn pids(&mut self) -> Vec<Pid> {
        self.processes()
    }

    fn generation(&mut self) -> Option<u64> {
        Some(cpuprof_collect::tree::LiveTree::generation(self))
    }

    fn wait_for_change(&mut self, seen: Option<u64>, timeout: std::time::Duration) {
        cpuprof_collect::tree::LiveTree::wait_for_change(self, seen.unwrap_or(0), timeout);
    }
}

/// `CLOCK_MONOTONIC` now, ns (the clock every collector stamps events with).
pub(crate) fn clock_ns() -> u64 {
    cpuprof_collect::clock::monotonic_ns()
}
