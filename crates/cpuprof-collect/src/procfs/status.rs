//! `/proc/PID/status`: context switches, affinity, resident memory.
//!
//! Voluntary switches mean the thread blocked; involuntary ones mean it was preempted while
//! it still had work, which together with run-queue wait shows oversubscription.
//! `Cpus_allowed_list` is the affinity that BLAS and OpenMP size their pools from.

/// The fields of `status` the poller uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `voluntary_ctxt_switches`.
    pub vcsw: u64,
    /// `nonvoluntary_ctxt_switches`.
    pub ivcsw: u64,
    /// CPUs in `Cpus_allowed_list` (0 if absent).
    pub affinity_cpus: u32,
    /// `VmRSS` in KiB (0 for kernel threads and zombies).
    pub rss_kb: u64,
}

/// Parses `status` text.
pub fn parse(text: &[u8]) -> Status {
    let mut s = Status::default();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = (&line[..colon], &line[colon + 1..]);
        let value = std::str::from_utf8(value).unwrap_or("").trim();
        let first_num = || {
            value
                .split_ascii_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        match key {
            b"voluntary_ctxt_switches" => s.vcsw = first_num(),
            b"nonvoluntary_ctxt_switches" => s.ivcsw = first_num(),
            b"VmRSS" => s.rss_kb = first_num(),
            b"Cpus_allowed_list" => s.affinity_cpus = super::cpu_list_count(value),
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_text() {
        let t = b"Name:\tcat\nPPid:\t13873\nVmRSS:\t    2032 kB\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t17\n";
        assert_eq!(
            parse(t),
            Status {
                vcsw: 5,
                ivcsw: 17,
                affinity_cpus: 2,
                rss_kb: 2032
            }
        );
        assert_eq!(parse(b""), Status::default());
    }
}
