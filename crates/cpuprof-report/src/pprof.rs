//! pprof's profile format (`profile.proto` of github.com/google/pprof, gzipped protobuf): what
//! `go tool pprof`, Pyroscope, Parca and Grafana read.
//!
//! Two sample types, `samples/count` and `cpu/nanoseconds`: each stack sample counts once, and
//! carries its share of its thread's CPU time as procfs measured it (the thread's CPU divided
//! among its samples, as in the speedscope export), so the profile's CPU totals are the
//! summary's. Native frames are grouped into one mapping per library; Python frames carry their
//! file and line. Every sample is labelled with its `pid`, `tid`, `thread` name and, when the
//! thread belongs to a known pool, `runtime`.
//!
//! The messages are declared here with prost's derive (the subset of `profile.proto` cpuprof
//! writes, same field numbers), rather than generated from the `.proto` by a build script
//! that would need `protoc`.

use std::collections::HashMap;
use std::io::Write;

use cpuprof_model::{Analysis, FrameId, FrameKind, Pid, Profile, Tid};
use prost::Message;

use crate::stacks::{self, UNKNOWN};

#[derive(Clone, PartialEq, Message)]
struct PProfile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
    #[prost(int64, repeated, tag = "13")]
    comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Mapping {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "5")]
    filename: i64,
    #[prost(bool, tag = "7")]
    has_functions: bool,
    #[prost(bool, tag = "8")]
    has_filenames: bool,
    #[prost(bool, tag = "9")]
    has_line_numbers: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
}

/// The string table (index 0 is the empty string, as the format requires).
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Builds locations, functions and mappings as frames are met.
struct Tables {
    strings: Strings,
    mappings: Vec<Mapping>,
    mapping_of: HashMap<String, u64>,
    functions: Vec<Function>,
    function_of: HashMap<(String, String), u64>,
    locations: Vec<Location>,
    location_of: HashMap<Option<FrameId>, u64>,
}

impl Tables {
    fn mapping(&mut self, file: &str, lines: bool) -> u64 {
        if let Some(&id) = self.mapping_of.get(file) {
            return id;
        }
        let id = self.mappings.len() as u64 + 1;
        let filename = self.strings.id(file);
        self.mappings.push(Mapping {
            id,
            filename,
            has_functions: true,
            has_filenames: lines,
            has_line_numbers: lines,
        });
        self.mapping_of.insert(file.to_string(), id);
        id
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (name.to_string(), file.to_string());
        if let Some(&id) = self.function_of.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let (name, filename) = (self.strings.id(name), self.strings.id(file));
        self.functions.push(Function {
            id,
            name,
            system_name: name,
            filename,
        });
        self.function_of.insert(key, id);
        id
    }

    /// The location of a frame (`None`: a sample nothing could be unwound of).
    fn location(&mut self, profile: &Profile, frame: Option<FrameId>) -> u64 {
        if let Some(&id) = self.location_of.get(&frame) {
            return id;
        }
        let (name, file, line, mapping) = match frame.map(|f| profile.stacks.frame(f)) {
            None => (UNKNOWN.to_string(), String::new(), 0, 0),
            Some(f) => match f.kind {
                FrameKind::Python => {
                    let file = f.module.clone().unwrap_or_default();
                    let m = self.mapping("[python]", true);
                    (f.name.clone(), file, i64::from(f.line.unwrap_or(0)), m)
                }
                FrameKind::Kernel => {
                    let m = self.mapping("[kernel]", false);
                    (f.name.clone(), String::new(), 0, m)
                }
                FrameKind::Native => {
                    let module = f.module.clone().unwrap_or_default();
                    let m = match module.is_empty() {
                        true => 0,
                        false => self.mapping(&module, false),
                    };
                    (f.name.clone(), module, 0, m)
                }
            },
        };
        let function_id = self.function(&name, &file);
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            mapping_id: mapping,
            line: vec![Line { function_id, line }],
        });
        self.location_of.insert(frame, id);
        id
    }
}

/// The profile's stack samples as a pprof profile, gzipped.
pub fn to_pprof(profile: &Profile, analysis: &Analysis) -> std::io::Result<Vec<u8>> {
    let samples = stacks::samples(profile);
    let mut t = Tables {
        strings: Strings::new(),
        mappings: Vec::new(),
        mapping_of: HashMap::new(),
        functions: Vec::new(),
        function_of: HashMap::new(),
        locations: Vec::new(),
        location_of: HashMap::new(),
    };
    let samples_id = t.strings.id("samples");
    let count_id = t.strings.id("count");
    let cpu_id = t.strings.id("cpu");
    let ns_id = t.strings.id("nanoseconds");
    let (pid_key, tid_key) = (t.strings.id("pid"), t.strings.id("tid"));
    let (thread_key, runtime_key) = (t.strings.id("thread"), t.strings.id("runtime"));

    // Each thread's CPU divided among its samples (at least 1 ns each).
    let per_sample = stacks::cpu_per_sample(profile, &samples);
    let mut names: HashMap<(Pid, Tid), String> = HashMap::new();
    for p in &profile.processes {
        for th in &p.threads {
            names.insert((p.pid, th.tid), stacks::thread_label(th));
        }
    }
    let mut out = Vec::with_capacity(samples.len());
    for s in &samples {
        let frames: Vec<Option<FrameId>> = match s.stack {
            Some(id) => profile.stacks.frames_of(id).into_iter().map(Some).collect(),
            None => vec![None],
        };
        // pprof lists a sample's locations leaf first.
        let location_id: Vec<u64> = frames
            .iter()
            .rev()
            .map(|f| t.location(profile, *f))
            .collect();
        let thread_name = names
            .get(&(s.pid, s.tid))
            .cloned()
            .unwrap_or_else(|| s.tid.to_string());
        let ns = per_sample[&(s.pid, s.tid)].max(1) as i64;
        let mut label = vec![
            Label {
                key: pid_key,
                str: 0,
                num: i64::from(s.pid),
            },
            Label {
                key: tid_key,
                str: 0,
                num: i64::from(s.tid),
            },
            Label {
                key: thread_key,
                str: t.strings.id(&thread_name),
                num: 0,
            },
        ];
        if let Some(rt) = analysis
            .threads
            .get(&s.tid)
            .and_then(|c| c.runtime.as_deref())
        {
            label.push(Label {
                key: runtime_key,
                str: t.strings.id(rt),
                num: 0,
            });
        }
        out.push(Sample {
            location_id,
            value: vec![1, ns],
            label,
        });
    }
    let period = profile
        .meta
        .sample_rate_hz
        .map_or(0, |hz| 1_000_000_000 / i64::from(hz.max(1)));
    let comment = vec![t.strings.id(&format!(
        "cpuprof {}: {}",
        env!("CARGO_PKG_VERSION"),
        crate::escape::command_line(&profile.meta.command)
    ))];
    let doc = PProfile {
        sample_type: vec![
            ValueType {
                r#type: samples_id,
                unit: count_id,
            },
            ValueType {
                r#type: cpu_id,
                unit: ns_id,
            },
        ],
        sample: out,
        mapping: t.mappings,
        location: t.locations,
        function: t.functions,
        time_nanos: (profile.meta.start_unix_ms as i64).saturating_mul(1_000_000),
        duration_nanos: profile.meta.wall_ns as i64,
        period_type: Some(ValueType {
            r#type: cpu_id,
            unit: ns_id,
        }),
        period,
        comment,
        default_sample_type: 1,
        string_table: t.strings.table,
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&doc.encode_to_vec())?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{analysis, profile};
    use std::io::Read;

    #[test]
    fn decodes_with_every_sample_labelled_and_the_cpu_of_its_threads() {
        let p = profile();
        let bytes = to_pprof(&p, &analysis()).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap();
        let doc = PProfile::decode(&raw[..]).unwrap();
        assert_eq!(doc.string_table[0], "");
        let st = |i: i64| doc.string_table[i as usize].as_str();
        assert_eq!(st(doc.sample_type[1].r#type), "cpu");
        assert_eq!(st(doc.sample_type[1].unit), "nanoseconds");
        assert_eq!(doc.sample.len(), stacks::samples(&p).len());
        for s in &doc.sample {
            assert_eq!(s.value[0], 1);
            let keys: Vec<&str> = s.label.iter().map(|l| st(l.key)).collect();
            assert!(keys.starts_with(&["pid", "tid", "thread"]), "{keys:?}");
            for id in &s.location_id {
                assert!(*id >= 1 && *id as usize <= doc.location.len());
            }
        }
        for l in &doc.location {
            let f = l.line[0].function_id;
            assert!(f >= 1 && f as usize <= doc.function.len());
        }
    }
}
