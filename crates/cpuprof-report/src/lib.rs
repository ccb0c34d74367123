//! Everything cpuprof shows a person or a tool, rendered from a [`Profile`] and its
//! [`Analysis`]: the terminal summary, the summary JSON (a contract CI scripts read), folded
//! stacks for inferno/FlameGraph, and the self-contained HTML report.
//!
//! The report knows no procfs and no perf: it reads only the model, so a saved profile renders
//! exactly like a live one.
//!
//! ```
//! use cpuprof_model::{Analysis, Event, Machine, Meta, ProfileBuilder, ThreadPoint};
//! let mut b = ProfileBuilder::new(Meta::new(vec!["sleep".into()]), Machine::default(), 0);
//! b.handle(Event::ThreadPoint { pid: 7, tid: 7, name: "sleep".into(),
//!     point: ThreadPoint { t: 50_000_000, cpu_ns: 1_000_000, ..Default::default() } });
//! let profile = b.finish(1_000_000_000);
//! let json = cpuprof_report::summary::to_json(&profile, &Analysis::default()).unwrap();
//! assert_eq!(json["schema"], "cpuprof-summary/1");
//! let page = cpuprof_report::html::render(&profile, &Analysis::default());
//! assert!(page.starts_with("<!DOCTYPE html>"));
//! ```
//!
//! [`Profile`]: cpuprof_model::Profile
//! [`Analysis`]: cpuprof_model::Analysis
#![deny(missing_docs)]

pub mod collapsed;
pub mod escape;
pub mod firefox;
pub mod html;
pub mod pprof;
pub mod speedscope;
pub mod stacks;
pub mod summary;
pub mod sweep;
pub mod synthetic;
pub mod terminal;
pub mod trace_events;

#[cfg(test)]
mod testutil;
