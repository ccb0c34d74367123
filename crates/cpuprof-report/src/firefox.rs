//! The Firefox Profiler's processed profile format (<https://profiler.firefox.com>), written
//! with `fxprof-processed-profile`, the crate samply writes it with.
//!
//! Every process and thread with its name and its start and end; each stack sample with the
//! CPU its thread used since its previous sample (the thread's measured CPU divided among its
//! samples, as in the other exports), so the profiler's activity graph shows CPU against wall
//! time; threads without stack samples get one stackless sample per poll with the CPU of that
//! interval, so a `--no-stacks` recording still shows when each thread ran. Frames are
//! labelled with their function (Python frames with file and line) in a category per kind
//! (Python, native, kernel). Each finding is a marker on the main thread of its first process.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use cpuprof_model::{Analysis, FrameKind, Pid, Profile, Tid};
use fx::{
    CategoryColor, CategoryHandle, CpuDelta, Frame, FrameFlags, FrameInfo, MarkerFieldFlags,
    MarkerFieldFormat, MarkerTiming, SamplingInterval, StaticSchemaMarker, StaticSchemaMarkerField,
    StringHandle, ThreadHandle, Timestamp,
};
use fxprof_processed_profile as fx;

use crate::stacks;

/// A finding as a marker: its title, and the fix in its tooltip.
#[derive(Debug, Clone)]
struct FindingMarker {
    name: StringHandle,
    category: CategoryHandle,
    fix: StringHandle,
    detail: StringHandle,
}

impl StaticSchemaMarker for FindingMarker {
    const UNIQUE_MARKER_TYPE_NAME: &'static str = "CpuprofFinding";
    const DESCRIPTION: Option<&'static str> = Some("A finding of cpuprof's analysis");
    const CHART_LABEL: Option<&'static str> = Some("{marker.name}");
    const TABLE_LABEL: Option<&'static str> = Some("{marker.name}: {marker.data.fix}");
    const FIELDS: &'static [StaticSchemaMarkerField] = &[
        StaticSchemaMarkerField {
            key: "fix",
            label: "Fix",
            format: MarkerFieldFormat::String,
            flags: MarkerFieldFlags::SEARCHABLE,
        },
        StaticSchemaMarkerField {
            key: "detail",
            label: "Evidence",
            format: MarkerFieldFormat::String,
            flags: MarkerFieldFlags::SEARCHABLE,
        },
    ];

    fn name(&self, _profile: &mut fx::Profile) -> StringHandle {
        self.name
    }

    fn category(&self, _profile: &mut fx::Profile) -> CategoryHandle {
        self.category
    }

    fn string_field_value(&self, field_index: u32) -> StringHandle {
        match field_index {
            0 => self.fix,
            _ => self.detail,
        }
    }

    fn number_field_value(&self, _field_index: u32) -> f64 {
        0.0
    }
}

fn at(ns: u64) -> Timestamp {
    Timestamp::from_nanos_since_reference(ns)
}

/// The profile as the Firefox Profiler's processed format (JSON).
pub fn to_json(profile: &Profile, analysis: &Analysis) -> serde_json::Result<String> {
    let meta = &profile.meta;
    let start = UNIX_EPOCH + Duration::from_millis(meta.start_unix_ms);
    let interval = match meta.sample_rate_hz {
        Some(hz) if hz > 0 => SamplingInterval::from_nanos(1_000_000_000 / u64::from(hz)),
        _ => SamplingInterval::from_nanos(meta.interval_ns.max(1_000_000)),
    };
    let product = format!(
        "cpuprof: {}",
        crate::escape::command_line(&profile.meta.command)
    );
    let mut fx = fx::Profile::new(&product, start.into(), interval);
    fx.set_os_name("Linux");
    let python = fx.add_category("Python", CategoryColor::Yellow);
    let native = fx.add_category("Native", CategoryColor::Blue);
    let kernel = fx.add_category("Kernel", CategoryColor::Orange);
    let findings = fx.add_category("cpuprof findings", CategoryColor::Red);

    let mut threads: HashMap<(Pid, Tid), ThreadHandle> = HashMap::new();
    let mut main_threads: HashMap<Pid, ThreadHandle> = HashMap::new();
    for p in &profile.processes {
        let name = stacks::process_label(p);
        let ph = fx.add_process(&name, p.pid, at(p.start_ns));
        if let Some(end) = p.end_ns {
            fx.set_process_end_time(ph, at(end));
        }
        for t in &p.threads {
            let th = fx.add_thread(ph, t.tid, at(t.start_ns), t.tid == p.pid);
            fx.set_thread_name(th, &stacks::thread_label(t));
            if let Some(end) = t.end_ns {
                fx.set_thread_end_time(th, at(end));
            }
            threads.insert((p.pid, t.tid), th);
            if t.tid == p.pid || !main_threads.contains_key(&p.pid) {
                main_threads.insert(p.pid, th);
            }
        }
    }

    let samples = stacks::samples(profile);
    let per_sample = stacks::cpu_per_sample(profile, &samples);
    for s in &samples {
        let Some(&th) = threads.get(&(s.pid, s.tid)) else {
            continue;
        };
        let frames: Vec<FrameInfo> = match s.stack {
            Some(id) => profile
                .stacks
                .frames_of(id)
                .iter()
                .map(|f| {
                    let frame = profile.stacks.frame(*f);
                    let category = match frame.kind {
                        FrameKind::Python => python,
                        FrameKind::Native => native,
                        FrameKind::Kernel => kernel,
                    };
                    FrameInfo {
                        frame: Frame::Label(fx.intern_string(&frame.label())),
                        category_pair: category.into(),
                        flags: FrameFlags::empty(),
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        let stack = fx.intern_stack_frames(th, frames.into_iter());
        let cpu = per_sample[&(s.pid, s.tid)];
        fx.add_sample(th, at(s.t), stack, CpuDelta::from_nanos(cpu), 1);
    }
    // Threads no stack sample reached: their CPU per poll.
    for p in &profile.processes {
        for t in &p.threads {
            if per_sample.contains_key(&(p.pid, t.tid)) {
                continue;
            }
            let th = threads[&(p.pid, t.tid)];
            let mut prev = 0;
            for pt in &t.points {
                let delta = pt.cpu_ns.saturating_sub(prev);
                prev = pt.cpu_ns.max(prev);
                fx.add_sample(th, at(pt.t), None, CpuDelta::from_nanos(delta), 1);
            }
        }
    }
    for f in &analysis.findings {
        let Some(&th) = f.pids.iter().find_map(|pid| main_threads.get(pid)) else {
            continue;
        };
        let marker = FindingMarker {
            name: fx.intern_string(&f.title),
            category: findings,
            fix: fx.intern_string(&f.fix),
            detail: fx.intern_string(&f.detail),
        };
        fx.add_marker(th, MarkerTiming::Interval(at(0), at(meta.wall_ns)), marker);
    }
    serde_json::to_string(&fx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};

    #[test]
    fn every_thread_is_there_with_its_samples_and_cpu_deltas() {
        let p = profile();
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&p, &analysis()).unwrap()).unwrap();
        assert!(v["meta"]["version"].as_u64().is_some(), "{}", v["meta"]);
        let threads = v["threads"].as_array().unwrap();
        assert_eq!(threads.len(), p.thread_count());
        let sampled: usize = threads
            .iter()
            .map(|t| t["samples"]["length"].as_u64().unwrap() as usize)
            .sum();
        assert!(sampled >= stacks::samples(&p).len());
        for t in threads {
            let s = &t["samples"];
            let n = s["length"].as_u64().unwrap() as usize;
            assert_eq!(s["threadCPUDelta"].as_array().map_or(n, |a| a.len()), n);
        }
    }
}
