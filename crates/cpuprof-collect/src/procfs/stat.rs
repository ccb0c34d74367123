//! `/proc/PID/stat` and `/proc/PID/task/TID/stat`: state, parent, tick CPU counters.
//!
//! The process-level file is what makes short-lived threads and children count: its
//! `utime`/`stime` include threads that already ended, and `cutime`/`cstime` include the
//! children the process reaped. The name between the parentheses may contain spaces and `)`,
//! so fields are counted from the *last* `)`.

/// The fields of `stat` the poller uses (times in ns, converted from clock ticks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    /// Name (`comm`), lossily decoded.
    pub comm: String,
    /// State letter.
    pub state: char,
    /// Parent pid.
    pub ppid: u32,
    /// The kernel's task flags (field 9, `PF_*`).
    pub flags: u64,
    /// User time, ns.
    pub utime_ns: u64,
    /// System time, ns.
    pub stime_ns: u64,
    /// User time of reaped children, ns.
    pub cutime_ns: u64,
    /// System time of reaped children, ns.
    pub cstime_ns: u64,
    /// Threads.
    pub num_threads: u64,
    /// Start time after boot, clock ticks (identifies a pid across reuse).
    pub starttime: u64,
    /// Resident set, pages.
    pub rss_pages: u64,
    /// Where the program's code starts and ends and where its stack starts (fields 26-28).
    /// They change with every `exec` (a new image, placed anew by ASLR), also when the name
    /// stays the same (a pyenv shim `python3` execing the real `python3`): compare them to
    /// see an exec. Zero for kernel threads and zombies, and when the reader may not
    /// ptrace the process.
    pub layout: [u64; 3],
}

/// `PF_EXITING`: set when the task starts to exit, before it leaves its cgroups.
const PF_EXITING: u64 = 0x4;
/// `PF_KTHREAD`: a kernel thread (no program, no memory of its own to read).
const PF_KTHREAD: u64 = 0x0020_0000;

impl Stat {
    /// The task has begun to exit (or is a zombie): some of what `/proc` says of it is no
    /// longer its own (a zombie's `cgroup` file names the root groups).
    pub fn exiting(&self) -> bool {
        self.flags & PF_EXITING != 0 || matches!(self.state, 'Z' | 'X')
    }

    /// A kernel thread (`kthreadd`, `kworker/...`): nothing of a program to record.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// `/proc/PID/stat` of `pid` now (times at the system's clock-tick rate), if it reads.
pub fn read(pid: u32) -> Option<Stat> {
    parse(
        &std::fs::read(format!("/proc/{pid}/stat")).ok()?,
        super::clock_ticks(),
    )
}

/// Parses `stat` text with `ticks` clock ticks per second.
pub fn parse(text: &[u8], ticks: u64) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(text.get(close + 2..)?).ok()?;
    // Field 3 (state) is rest[0].
    let f: Vec<&str> = rest.split_ascii_whitespace().take(26).collect();
    let num =
        |i: usize| -> Option<u64> { f.get(i - 3)?.parse::<i64>().ok().map(|v| v.max(0) as u64) };
    let ns = |ticks_v: u64| ticks_v.saturating_mul(1_000_000_000 / ticks.max(1));
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: num(4)? as u32,
        flags: num(9)?,
        utime_ns: ns(num(14)?),
        stime_ns: ns(num(15)?),
        cutime_ns: ns(num(16)?),
        cstime_ns: ns(num(17)?),
        num_threads: num(20)?,
        starttime: num(22)?,
        rss_pages: num(24).unwrap_or(0),
        layout: [26, 27, 28].map(|i| num(i).unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_text() {
        let t = b"13878 (cat) R 13873 13873 5409 0 -1 4194304 101 0 0 0 7 3 12 4 20 0 1 0 186782 3133440 392 18446744073709551615 94834396147712 94834396160001 140725282390000 0";
        let s = parse(t, 100).unwrap();
        assert_eq!(s.comm, "cat");
        assert_eq!(s.state, 'R');
        assert_eq!(s.ppid, 13873);
        assert_eq!(s.flags, 4194304);
        assert!(!s.exiting());
        assert_eq!(s.utime_ns, 70_000_000);
        assert_eq!(s.stime_ns, 30_000_000);
        assert_eq!(s.cutime_ns, 120_000_000);
        assert_eq!(s.cstime_ns, 40_000_000);
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.starttime, 186782);
        assert_eq!(s.rss_pages, 392);
        assert_eq!(s.layout, [94834396147712, 94834396160001, 140725282390000]);
    }

    #[test]
    fn names_with_spaces_and_parentheses() {
        let t = b"7 (a) b (c)) S 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 3 0 55 0 10";
        let s = parse(t, 100).unwrap();
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.num_threads, 3);
        assert!(parse(b"garbage", 100).is_none());
    }
}
