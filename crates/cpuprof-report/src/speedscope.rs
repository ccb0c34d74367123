//! speedscope's file format (<https://www.speedscope.app/file-format-schema.json>, shipped in
//! the `speedscope` npm package as `dist/release/file-format-schema.json`): one sampled profile
//! per thread, weights in nanoseconds of CPU time, Python and native frames with their file and
//! line.
//!
//! A thread's samples are weighted so that they sum to the CPU time procfs measured for it
//! (its `cpu_ns` divided among its samples): the profile's totals are the summary's figures,
//! not a sample count times a nominal period.

use std::collections::HashMap;

use cpuprof_model::{FrameId, FrameKind, Pid, Profile, Tid};
use serde::Serialize;

use crate::stacks::{self, UNKNOWN};

/// The schema URL every speedscope file names.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    shared: Shared,
    profiles: Vec<SampledProfile>,
    name: String,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    exporter: &'a str,
}

#[derive(Serialize)]
struct Shared {
    frames: Vec<Frame>,
}

#[derive(Serialize)]
struct Frame {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

#[derive(Serialize)]
struct SampledProfile {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: u64,
    #[serde(rename = "endValue")]
    end_value: u64,
    samples: Vec<Vec<usize>>,
    weights: Vec<u64>,
}

/// The profile's stack samples as a speedscope document.
pub fn to_json(profile: &Profile) -> serde_json::Result<String> {
    let samples = stacks::samples(profile);
    // Frame ids of the profile → indices into `shared.frames`; index 0 is `[unknown]`.
    let mut frames = vec![Frame {
        name: UNKNOWN.to_string(),
        file: None,
        line: None,
    }];
    let mut index: HashMap<FrameId, usize> = HashMap::new();
    let mut by_thread: HashMap<(Pid, Tid), Vec<Vec<usize>>> = HashMap::new();
    for s in &samples {
        let stack: Vec<usize> = match s.stack {
            Some(id) => profile
                .stacks
                .frames_of(id)
                .iter()
                .map(|f| {
                    *index.entry(*f).or_insert_with(|| {
                        frames.push(frame(profile, *f));
                        frames.len() - 1
                    })
                })
                .collect(),
            None => vec![0],
        };
        by_thread.entry((s.pid, s.tid)).or_default().push(stack);
    }
    let mut profiles = Vec::new();
    for p in &profile.processes {
        let mut threads: Vec<_> = p.threads.iter().collect();
        threads.sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(a.tid.cmp(&b.tid)));
        for t in threads {
            let Some(stacks) = by_thread.remove(&(p.pid, t.tid)) else {
                continue;
            };
            let n = stacks.len() as u64;
            // The thread's CPU divided among its samples; the remainder goes to the first
            // samples so that the weights sum to exactly its CPU time.
            let total = t.cpu_ns.max(n);
            let (each, rest) = (total / n, total % n);
            let weights: Vec<u64> = (0..n).map(|i| each + u64::from(i < rest)).collect();
            profiles.push(SampledProfile {
                kind: "sampled",
                name: format!("{} / {}", stacks::process_label(p), stacks::thread_label(t)),
                unit: "nanoseconds",
                start_value: 0,
                end_value: total,
                samples: stacks,
                weights,
            });
        }
    }
    let version = format!("cpuprof {}", env!("CARGO_PKG_VERSION"));
    let doc = File {
        schema: SCHEMA,
        shared: Shared { frames },
        profiles,
        name: crate::escape::command_line(&profile.meta.command),
        active_profile_index: 0,
        exporter: &version,
    };
    serde_json::to_string(&doc)
}

fn frame(profile: &Profile, id: FrameId) -> Frame {
    let f = profile.stacks.frame(id);
    match f.kind {
        FrameKind::Python => Frame {
            name: f.name.clone(),
            file: f.module.clone(),
            line: f.line,
        },
        _ => Frame {
            name: f.label(),
            file: f.module.clone(),
            line: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};

    #[test]
    fn one_profile_per_sampled_thread_weighted_by_its_cpu() {
        let p = profile();
        let _ = analysis();
        let v: serde_json::Value = serde_json::from_str(&to_json(&p).unwrap()).unwrap();
        assert_eq!(v["$schema"], SCHEMA);
        let profiles = v["profiles"].as_array().unwrap();
        assert!(!profiles.is_empty());
        for prof in profiles {
            assert_eq!(prof["type"], "sampled");
            let w: u64 = prof["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .sum();
            assert_eq!(w, prof["endValue"].as_u64().unwrap());
            assert_eq!(
                prof["samples"].as_array().unwrap().len(),
                prof["weights"].as_array().unwrap().len()
            );
        }
        let frames = v["shared"]["frames"].as_array().unwrap();
        for prof in profiles {
            for s in prof["samples"].as_array().unwrap() {
                for i in s.as_array().unwrap() {
                    assert!((i.as_u64().unwrap() as usize) < frames.len());
                }
            }
        }
    }
}
