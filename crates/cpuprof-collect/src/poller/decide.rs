//! The poller's decisions about a process, as pure functions of what it knew and the `stat` it
//! just read: whether the pid was reused, whether the process exec'd, and whether its slow
//! files (command line, `maps`, `environ`) are due to be read again. Reading is
//! [`super::Poller`]'s; these are unit-tested on captured `/proc` text.

use crate::procfs::stat::Stat;

/// Re-read command line, libraries and environment this often even without an `exec`.
pub const INFO_REFRESH_NS: u64 = 2_000_000_000;
/// ...and at most this often when the number of threads changes (a pool starting is when a
/// runtime's library was just loaded).
pub const INFO_MIN_NS: u64 = 250_000_000;

/// What the poller knew of a process at its last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known<'a> {
    /// `stat` field 22: identifies the process across pid reuse.
    pub starttime: u64,
    /// Its name then.
    pub comm: &'a str,
    /// Code and stack addresses then (`stat` fields 26–28).
    pub layout: [u64; 3],
}

/// What a new `stat` says about a known process (or a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time this pid is seen.
    New,
    /// The pid now belongs to another process: the old one is gone (the new one is picked
    /// up at the next poll).
    Reused,
    /// The same process; `exec` when it ran a new program since (a new name, or a new image
    /// under the same name: a pyenv shim `python3` exec'ing the real `python3`).
    Same {
        /// It exec'd.
        exec: bool,
    },
}

/// Compares a process's new `stat` with what was known of it.
pub fn seen(known: Option<&Known>, st: &Stat) -> Seen {
    match known {
        None => Seen::New,
        Some(k) if k.starttime != st.starttime => Seen::Reused,
        Some(k) => Seen::Same {
            exec: k.comm != st.comm || k.layout != st.layout,
        },
    }
}

/// Are the slow files due: a new process, an exec, a changed thread count (at most every
/// [`INFO_MIN_NS`]), or [`INFO_REFRESH_NS`] since they were read?
pub fn info_due(seen: Seen, threads: usize, threads_at_read: usize, since_read_ns: u64) -> bool {
    match seen {
        Seen::New | Seen::Same { exec: true } => true,
        Seen::Reused => false,
        Seen::Same { exec: false } => {
            (threads != threads_at_read && since_read_ns >= INFO_MIN_NS)
                || since_read_ns >= INFO_REFRESH_NS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::stat::parse;

    /// `/proc/PID/stat` of a `python3` (a captured line, pid and addresses edited).
    const PYTHON: &[u8] = b"4242 (python3) S 4100 4242 4100 34816 4242 4194560 5213 0 0 0 \
        41 7 0 0 20 0 3 0 1434727 31338496 3050 18446744073709551615 94523031146496 \
        94523033166377 140721673599184 0 0 0 0 16781312 134234626 0 0 0 17 1 0 0 0 0 0";
    /// The same pid after `exec` of the real interpreter under the same name: a new image.
    const PYTHON_EXECED: &[u8] = b"4242 (python3) S 4100 4242 4100 34816 4242 4194560 5213 0 0 0 \
        41 7 0 0 20 0 3 0 1434727 31338496 3050 18446744073709551615 94711000000000 \
        94711002000000 140729999999184 0 0 0 0 16781312 134234626 0 0 0 17 1 0 0 0 0 0";
    /// The pid reused by another process (another start time).
    const REUSED: &[u8] = b"4242 (sleep) S 1 4242 4100 0 -1 4194560 90 0 0 0 0 0 0 0 20 0 1 0 \
        1500000 5361664 200 18446744073709551615 94000000000000 94000000020000 \
        140700000000000 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";

    fn known(st: &Stat) -> Known<'_> {
        Known {
            starttime: st.starttime,
            comm: &st.comm,
            layout: st.layout,
        }
    }

    #[test]
    fn new_same_exec_and_reuse() {
        let a = parse(PYTHON, 100).unwrap();
        assert_eq!((a.comm.as_str(), a.starttime), ("python3", 1434727));
        assert_eq!(seen(None, &a), Seen::New);
        assert_eq!(seen(Some(&known(&a)), &a), Seen::Same { exec: false });
        let b = parse(PYTHON_EXECED, 100).unwrap();
        assert_eq!(seen(Some(&known(&a)), &b), Seen::Same { exec: true });
        let c = parse(REUSED, 100).unwrap();
        assert_eq!(seen(Some(&known(&a)), &c), Seen::Reused);
    }

    #[test]
    fn slow_files_are_read_when_something_changed_or_it_is_time() {
        let same = Seen::Same { exec: false };
        assert!(info_due(Seen::New, 1, 0, 0));
        assert!(info_due(Seen::Same { exec: true }, 3, 3, 0));
        assert!(!info_due(Seen::Reused, 1, 1, u64::MAX));
        assert!(!info_due(same, 3, 3, INFO_REFRESH_NS - 1));
        assert!(info_due(same, 3, 3, INFO_REFRESH_NS));
        // A pool starting: read again, but not more often than INFO_MIN_NS.
        assert!(!info_due(same, 5, 3, INFO_MIN_NS - 1));
        assert!(info_due(same, 5, 3, INFO_MIN_NS));
    }
}
