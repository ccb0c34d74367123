//! py-spy stack traces to cpuprof events.
//!
//! py-spy lists frames innermost first and names threads by their OS id when it can; the model
//! wants frames root first and an OS thread id for every sample.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use cpuprof_model::{Event, Frame, FrameKey, FrameKind, Pid};
use py_spy::StackTrace;
use rustc_hash::FxBuildHasher;

/// Frames most remembered before the cache starts again (a program that generates code).
const MAX_FRAMES: usize = 1 << 16;

/// The frames sent so far, so that a line seen again is the same [`FrameKey`] and costs no
/// strings: a busy thread's stack is the same frames sample after sample.
#[derive(Default)]
pub struct Frames {
    /// By the hash of name, file, short file and line; equal hashes are compared in full.
    by_hash: HashMap<u64, Vec<FrameKey>>,
    len: usize,
}

impl Frames {
    fn get(&mut self, f: &py_spy::Frame) -> FrameKey {
        let line = u32::try_from(f.line).ok().filter(|&l| l > 0);
        // py-spy's: the path below the outermost package (`multiprocessing/process.py`).
        let short = f.short_filename.as_deref().filter(|s| !s.is_empty());
        let hash = FxBuildHasher.hash_one((&f.name, &f.filename, short, line));
        let same = |k: &FrameKey| {
            k.name == f.name
                && k.module.as_deref() == Some(f.filename.as_str())
                && k.short_file.as_deref() == short
                && k.line == line
        };
        if self.len >= MAX_FRAMES {
            self.by_hash.clear();
            self.len = 0;
        }
        let slot = self.by_hash.entry(hash).or_default();
        if let Some(k) = slot.iter().find(|k| same(k)) {
            return k.clone();
        }
        let k = Arc::new(Frame {
            kind: FrameKind::Python,
            name: f.name.clone(),
            module: Some(f.filename.clone()),
            line,
            short_file: short.map(str::to_string),
        });
        slot.push(k.clone());
        self.len += 1;
        k
    }
}

/// The [`Event::PythonSample`] of one thread's trace taken at monotonic time `t`; `None` when
/// no OS thread is known for it (or it is 0: a thread state being torn down).
pub fn to_event(pid: Pid, t: u64, trace: &StackTrace, known: &mut Frames) -> Option<Event> {
    let tid = u32::try_from(trace.os_thread_id?)
        .ok()
        .filter(|&t| t != 0)?;
    let frames = trace.frames.iter().rev().map(|f| known.get(f)).collect();
    Some(Event::PythonSample {
        t,
        pid,
        tid,
        thread_name: trace.thread_name.clone(),
        frames,
        owns_gil: trace.owns_gil,
        active: trace.active,
    })
}

/// py-spy's heuristic for a thread that the OS calls running but that only waits (its
/// innermost Python frame is a known waiting function), redone for blocking mode.
pub fn looks_idle(trace: &StackTrace) -> bool {
    let Some(f) = trace.frames.first() else {
        return false;
    };
    (f.name == "wait" && f.filename.ends_with("threading.py"))
        || (f.name == "select" && f.filename.ends_with("selectors.py"))
        || (f.name == "poll"
            && (f.filename.ends_with("asyncore.py")
                || ["zmq", "gevent", "tornado"]
                    .iter()
                    .any(|m| f.filename.contains(m))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, line: i32) -> py_spy::Frame {
        py_spy::Frame {
            name: name.into(),
            filename: "/src/app.py".into(),
            module: None,
            short_filename: None,
            line,
            locals: None,
            is_entry: false,
            is_shim_entry: false,
        }
    }

    #[test]
    fn frames_are_reversed_to_root_first() {
        let trace = StackTrace {
            pid: 5,
            thread_id: 0xdead,
            thread_name: Some("loader".into()),
            os_thread_id: Some(77),
            active: true,
            owns_gil: false,
            frames: vec![frame("inner", 9), frame("<module>", 0)],
            process_info: None,
        };
        let Some(Event::PythonSample {
            tid,
            frames,
            thread_name,
            active,
            owns_gil,
            ..
        }) = to_event(5, 1, &trace, &mut Frames::default())
        else {
            panic!("no event");
        };
        assert_eq!(tid, 77);
        assert_eq!(thread_name.as_deref(), Some("loader"));
        assert!(active && !owns_gil);
        assert_eq!(frames[0].name, "<module>");
        assert_eq!(frames[0].line, None);
        assert_eq!(frames[1].label(), "inner (app.py:9)");
        let unknown = StackTrace {
            os_thread_id: None,
            ..trace
        };
        assert!(to_event(5, 1, &unknown, &mut Frames::default()).is_none());
    }

    #[test]
    fn a_frame_seen_again_is_the_same_frame_and_another_line_is_not() {
        let mut known = Frames::default();
        let a = known.get(&frame("work", 7));
        let again = known.get(&frame("work", 7));
        let other_line = known.get(&frame("work", 8));
        let other_file = known.get(&py_spy::Frame {
            filename: "/src/lib.py".into(),
            ..frame("work", 7)
        });
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(other_line.line, Some(8));
        assert_eq!(other_file.module.as_deref(), Some("/src/lib.py"));
        assert!(!Arc::ptr_eq(&a, &other_line) && !Arc::ptr_eq(&a, &other_file));
    }
}
