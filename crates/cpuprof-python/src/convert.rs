//! py-spy stack traces to cpuprof events.
//!
//! py-spy lists frames innermost first and names threads by their OS id when it can; the model
//! wants frames root first and an OS thread id for every sample.

use cpuprof_model::{Event, Frame, FrameKind, Pid};
use py_spy::StackTrace;

/// The [`Event::PythonSample`] of one thread's trace taken at monotonic time `t`; `None` when
/// no OS thread is known for it (or it is 0: a thread state being torn down).
pub fn to_event(pid: Pid, t: u64, trace: &StackTrace) -> Option<Event> {
    let tid = u32::try_from(trace.os_thread_id?)
        .ok()
        .filter(|&t| t != 0)?;
    let frames = trace
        .frames
        .iter()
        .rev()
        .map(|f| Frame {
            kind: FrameKind::Python,
            name: f.name.clone(),
            module: Some(f.filename.clone()),
            line: u32::try_from(f.line).ok().filter(|&l| l > 0),
            // py-spy's: the path below the outermost package (`multiprocessing/process.py`).
            short_file: f.short_filename.clone().filter(|s| !s.is_empty()),
        })
        .collect();
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
        }) = to_event(5, 1, &trace)
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
        assert!(to_event(5, 1, &unknown).is_none());
    }
}
