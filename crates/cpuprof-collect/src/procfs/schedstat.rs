//! `/proc/PID/task/TID/schedstat`: nanoseconds on a CPU and waiting on a run queue.
//!
//! The precise source of per-thread CPU time (the `stat` tick counters have 10 ms
//! resolution) and the direct measure of oversubscription: run-queue wait is time the thread
//! was runnable and no core was free.

/// The three counters of `schedstat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// Time on a CPU, ns.
    pub cpu_ns: u64,
    /// Time runnable but waiting for a CPU, ns.
    pub runq_ns: u64,
    /// Timeslices run.
    pub timeslices: u64,
}

/// Parses `schedstat` text; `None` if it is not three numbers.
pub fn parse(text: &[u8]) -> Option<SchedStat> {
    let s = std::str::from_utf8(text).ok()?;
    let mut it = s.split_ascii_whitespace().map(|w| w.parse::<u64>());
    Some(SchedStat {
        cpu_ns: it.next()?.ok()?,
        runq_ns: it.next()?.ok()?,
        timeslices: it.next()?.ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_text() {
        assert_eq!(
            parse(b"836237 242652 1\n"),
            Some(SchedStat {
                cpu_ns: 836_237,
                runq_ns: 242_652,
                timeslices: 1
            })
        );
        assert_eq!(parse(b"12 x 3\n"), None);
        assert_eq!(parse(b""), None);
    }
}
