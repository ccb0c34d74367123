//! The cpuprof profile: everything one recording measured, independent of how it was measured.
//!
//! Collectors (procfs poller, perf sampler, Python sampler) know nothing of each other. Each of
//! them emits [`Event`]s; one [`ProfileBuilder`] turns the events into a [`Profile`]. The
//! analysis and the report read only the profile, so a saved profile ([`file`]) can be analysed
//! and rendered again without the target.
//!
//! This crate knows no operating system: it does no procfs or perf I/O, only the profile's own
//! file format.
//!
//! Times: collectors stamp events with `CLOCK_MONOTONIC` nanoseconds; the builder stores them
//! relative to the start of the recording ([`Ns`]).
//!
//! ```
//! use cpuprof_model::{Event, ProfileBuilder, Meta, Machine, ThreadPoint};
//! let mut b = ProfileBuilder::new(Meta::new(vec!["sleep".into(), "1".into()]), Machine::default(), 1_000);
//! b.handle(Event::ProcessStart { t: 1_000, pid: 7, ppid: 1, command: vec!["sleep".into()], exe: None });
//! b.handle(Event::ThreadPoint { pid: 7, tid: 7, name: "sleep".into(), point: ThreadPoint { t: 51_000, cpu_ns: 10, ..Default::default() } });
//! let profile = b.finish(2_000_000_000);
//! assert_eq!(profile.processes[0].threads[0].cpu_ns, 10);
//! ```
#![deny(missing_docs)]

mod analysis;
mod builder;
mod event;
pub mod file;
mod profile;
mod sched;
mod stacks;
pub mod sweep;
mod window;

pub use analysis::{Analysis, Finding, ProcessRuntime, Severity, ThreadClass, ThreadRole};
pub use builder::ProfileBuilder;
pub use event::{Event, FrameKey};
pub use profile::{
    CgroupInfo, CpuTimes, ExitAccounting, Machine, Meta, Process, Profile, PythonSample, RunState,
    Sample, Switch, Thread, ThreadPoint, Throttling,
};
pub use sched::{SchedBin, INITIAL_BIN_NS, MAX_BINS};
pub use stacks::{Frame, FrameId, FrameKind, StackId, StackTable};

/// Nanoseconds since the start of the recording (monotonic clock).
pub type Ns = u64;
/// A process id.
pub type Pid = u32;
/// A thread id (the kernel's tid; the main thread's tid equals its pid).
pub type Tid = u32;

/// Converts nanoseconds to seconds.
pub fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}
