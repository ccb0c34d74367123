//! Native stacks and context switches from perf events.
//!
//! Software `cpu-clock` events sample every thread of the target at `--rate` Hz of CPU time;
//! each sample carries the user registers and a copy of the user stack, which
//! [`cpuprof_symbols::Symbolizer`] unwinds with the libraries' `.eh_frame` (code without frame
//! pointers) and names. Context-switch records give exact on/off-CPU times and tell
//! preemption (waiting for a core) from blocking. All times are `CLOCK_MONOTONIC`
//! (`use_clockid`), the clock of the procfs series.
//!
//! Why raw `perf_event_open` rather than perf-event2's `Sampler`: we need one ring buffer per
//! CPU shared by many events (`PERF_EVENT_IOC_SET_OUTPUT`), `use_clockid`, user registers and
//! stack copies, and `PERF_RECORD_SWITCH`, which its parser rejects. The attribute struct, the
//! ring buffer and the six record types we read fit in a few hundred lines we control.
//!
//! ```no_run
//! use cpuprof_collect::perf::{PerfOptions, PerfSampler, PerfTarget};
//! let (tx, rx) = std::sync::mpsc::channel();
//! let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
//! match PerfSampler::open(PerfTarget::Launch(1234), &PerfOptions::default()) {
//!     Ok(s) => { let _handle = s.spawn(tx, stop); }
//!     Err(e) => tx.send(cpuprof_model::Event::Notice(e.notice())).unwrap(),
//! }
//! # drop(rx);
//! ```

mod attr;
mod cpus;
mod error;
mod members;
mod on_cpu;
mod period;
mod records;
mod ring;
mod sampler;
mod warm_up;

pub use cpuprof_symbols::InterpretedPids;
pub use error::PerfError;
pub use period::effective_rate;
pub use sampler::{
    PerfOptions, PerfSampler, PerfStats, PerfTarget, DEFAULT_RATE_HZ, DEFAULT_STACK_BYTES,
};
pub use warm_up::WarmUp;
