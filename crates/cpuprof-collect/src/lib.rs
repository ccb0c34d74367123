//! Collectors: everything that touches the operating system while recording.
//!
//! The launcher starts the target paused (or the attacher finds a running one), the procfs
//! poller walks its process tree at a steady interval and emits
//! [`cpuprof_model::Event`]s, and [`tree::LiveTree`] tells the other collectors (perf, Python)
//! which processes and threads belong to the target right now. Collectors know nothing about
//! each other or the report: they send events down one channel and stop when a shared flag is
//! set.
#![deny(missing_docs)]

pub mod attach;
pub mod budget;
pub mod cgroup;
pub mod clock;
mod error;
pub mod exits;
pub mod launcher;
pub mod netlink;
pub mod perf;
pub mod poller;
pub mod procfs;
pub mod rusage;
pub mod tree;

pub use error::CollectError;
