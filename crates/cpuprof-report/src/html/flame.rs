//! The flamegraph's data: the sampled stacks aggregated per (time bucket, thread, stack), with
//! only the frames and stack nodes they use.
//!
//! The page builds any flamegraph from this in the browser: all threads, one process, one
//! thread, or the time range selected on the timeline. Raw samples are never shipped: an
//! hour at 1 kHz would be millions of them. The number of time buckets halves until the
//! aggregated entries fit [`MAX_ENTRIES`], so the page's size is bounded by the number of
//! distinct stacks, not the length of the recording.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cpuprof_model::{FrameId, FrameKind, Pid, Profile, StackId, Tid};
use serde_json::{json, Value};

use crate::stacks::StackSample;

/// Upper bound on shipped (bucket, thread, stack) entries.
pub const MAX_ENTRIES: usize = 200_000;
/// Finest time buckets for the flamegraph's time selection.
pub const MAX_FLAME_BUCKETS: usize = 400;

/// Aggregated stacks.
#[derive(Debug)]
pub struct FlameData {
    /// Time buckets.
    pub buckets: usize,
    /// Width of a bucket, ns.
    pub bucket_ns: f64,
    /// (bucket, lane, node) -> samples; node is an index into `nodes`, -1 for "no stack".
    pub entries: BTreeMap<(u32, u32, i64), u64>,
    /// Used stack nodes: (parent index or -1, frame index into `frames`).
    pub nodes: Vec<(i64, u32)>,
    /// Used frames: (label, kind, wait loop, full path of a Python frame's file).
    pub frames: Vec<(String, FrameKind, bool, Option<String>)>,
}

/// Aggregates `samples`; `lanes` maps (pid, tid) to the lane index of the timeline.
pub fn build(
    profile: &Profile,
    wait_frames: &BTreeSet<FrameId>,
    samples: &[StackSample],
    lanes: &HashMap<(Pid, Tid), usize>,
) -> FlameData {
    let wall = profile.meta.wall_ns.max(1) as f64;
    let mut buckets = MAX_FLAME_BUCKETS;
    let bucket_of = |t: u64, n: usize| (((t as f64) / wall * n as f64) as usize).min(n - 1) as u32;
    let mut fine: HashMap<(u32, u32, Option<StackId>), u64> = HashMap::new();
    for s in samples {
        let Some(&lane) = lanes.get(&(s.pid, s.tid)) else {
            continue;
        };
        *fine
            .entry((bucket_of(s.t, buckets), lane as u32, s.stack))
            .or_default() += 1;
    }
    // Coarsen (halving the buckets) until the entries fit.
    while fine.len() > MAX_ENTRIES && buckets > 1 {
        let next = buckets.div_ceil(2);
        let mut coarse = HashMap::with_capacity(fine.len() / 2);
        for ((b, l, s), c) in fine {
            *coarse.entry((b / 2, l, s)).or_default() += c;
        }
        fine = coarse;
        buckets = next;
    }
    // Keep only the nodes used, parents before children (a node's parent has a smaller id).
    let mut used = vec![false; profile.stacks.nodes.len()];
    for &(_, _, s) in fine.keys() {
        let mut cur = s;
        while let Some(id) = cur {
            let Some(slot) = used.get_mut(id as usize) else {
                break;
            };
            if *slot {
                break;
            }
            *slot = true;
            cur = profile.stacks.nodes[id as usize].0;
        }
    }
    let mut node_map = vec![-1i64; used.len()];
    let mut frame_map: HashMap<u32, u32> = HashMap::new();
    let mut nodes = Vec::new();
    let mut frames = Vec::new();
    for (id, _) in used.iter().enumerate().filter(|(_, u)| **u) {
        let (parent, frame) = profile.stacks.nodes[id];
        let f = *frame_map.entry(frame).or_insert_with(|| {
            let fr = profile.stacks.frame(frame);
            let file = (fr.kind == FrameKind::Python)
                .then(|| fr.module.clone())
                .flatten();
            frames.push((fr.label(), fr.kind, wait_frames.contains(&frame), file));
            (frames.len() - 1) as u32
        });
        let p = parent.map_or(-1, |p| node_map[p as usize]);
        node_map[id] = nodes.len() as i64;
        nodes.push((p, f));
    }
    let entries = fine
        .into_iter()
        .map(|((b, l, s), c)| ((b, l, s.map_or(-1, |s| node_map[s as usize])), c))
        .collect();
    FlameData {
        buckets,
        bucket_ns: wall / buckets as f64,
        entries,
        nodes,
        frames,
    }
}

impl FlameData {
    /// The compact JSON the page reads: parallel arrays, bucket numbers delta-encoded.
    pub fn to_json(&self) -> Value {
        let kinds: String = self
            .frames
            .iter()
            .map(|f| match f.1 {
                FrameKind::Native => 'n',
                FrameKind::Python => 'p',
                FrameKind::Kernel => 'k',
            })
            .collect();
        let spin: Vec<usize> = self
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.2)
            .map(|(i, _)| i)
            .collect();
        let mut eb = Vec::with_capacity(self.entries.len());
        let mut el = Vec::with_capacity(self.entries.len());
        let mut en = Vec::with_capacity(self.entries.len());
        let mut ec = Vec::with_capacity(self.entries.len());
        let mut last = 0;
        for (&(b, l, n), &c) in &self.entries {
            eb.push(b - last);
            last = b;
            el.push(l);
            en.push(n);
            ec.push(c);
        }
        json!({
            "n": self.buckets,
            "dt": self.bucket_ns / 1e9,
            "labels": self.frames.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            // Full paths for the tooltip (the labels show the package-relative file).
            "files": self.frames.iter().map(|f| f.3.as_deref()).collect::<Vec<_>>(),
            "kinds": kinds,
            "spin": spin,
            "parent": self.nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
            "frame": self.nodes.iter().map(|n| n.1).collect::<Vec<_>>(),
            "eb": eb,
            "el": el,
            "en": en,
            "ec": ec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stacks;
    use crate::testutil::profile;

    #[test]
    fn entries_keep_every_sample_and_only_used_nodes() {
        let p = profile();
        let samples = stacks::samples(&p);
        let lanes: HashMap<_, _> = [((100, 100), 0), ((100, 101), 1)].into_iter().collect();
        // The analysis says which frames are wait loops; the flamegraph marks those.
        let server = p
            .stacks
            .frames
            .iter()
            .position(|f| f.name == "blas_thread_server")
            .unwrap() as FrameId;
        let f = build(&p, &BTreeSet::from([server]), &samples, &lanes);
        assert_eq!(f.entries.values().sum::<u64>(), 6);
        assert_eq!(f.nodes.len(), p.stacks.nodes.len());
        let labels: Vec<_> = f.frames.iter().map(|f| f.0.as_str()).collect();
        assert!(labels.contains(&"work (x.py:7)"));
        let spin: Vec<_> = f.frames.iter().filter(|f| f.2).map(|f| &f.0).collect();
        assert_eq!(spin, vec!["blas_thread_server"]);
        // Parents come before children.
        assert!(f.nodes.iter().enumerate().all(|(i, n)| n.0 < i as i64));
    }

    #[test]
    fn buckets_coarsen_to_fit() {
        let mut p = profile();
        p.meta.wall_ns = 1_000_000_000;
        let lanes: HashMap<_, _> = [((1, 1), 0)].into_iter().collect();
        // Many distinct stacks in every bucket.
        let mut samples = Vec::new();
        for i in 0..(MAX_ENTRIES as u64 * 2) {
            samples.push(StackSample {
                t: i * 1_000_000_000 / (MAX_ENTRIES as u64 * 2),
                pid: 1,
                tid: 1,
                stack: Some((i % 1000) as u32),
            });
        }
        p.stacks.nodes = (0..1000).map(|_| (None, 0)).collect();
        p.stacks.frames = vec![cpuprof_model::Frame {
            kind: FrameKind::Native,
            name: "f".into(),
            module: None,
            line: None,
            short_file: None,
        }];
        let f = build(&p, &BTreeSet::new(), &samples, &lanes);
        assert!(f.entries.len() <= MAX_ENTRIES);
        assert!(f.buckets >= 100, "{}", f.buckets);
        assert_eq!(f.entries.values().sum::<u64>(), MAX_ENTRIES as u64 * 2);
    }
}
