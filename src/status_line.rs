//! The live status line on stderr while recording (only when stderr is a terminal).

use std::io::{IsTerminal, Write};

use cpuprof_collect::tree::LiveTree;
use cpuprof_model::Profile;

/// Redraws at most every 250 ms.
pub struct StatusLine {
    enabled: bool,
    last_ns: u64,
    drawn: bool,
}

impl StatusLine {
    /// A status line, shown if `!quiet` and stderr is a terminal.
    pub fn new(quiet: bool) -> Self {
        StatusLine {
            enabled: !quiet && std::io::stderr().is_terminal(),
            last_ns: 0,
            drawn: false,
        }
    }

    /// Redraws if due: elapsed time, live processes and threads, CPU so far.
    pub fn update(&mut self, now_ns: u64, origin_ns: u64, tree: &LiveTree, profile: &Profile) {
        if !self.enabled || now_ns < self.last_ns + 250_000_000 {
            return;
        }
        self.last_ns = now_ns;
        let cpu: u64 = profile
            .processes
            .iter()
            .flat_map(|p| &p.threads)
            .map(|t| t.cpu_ns)
            .sum();
        let line = format!(
            "\r\x1b[Kcpuprof: recording {:.1} s  {} processes  {} threads  CPU {:.1} s",
            now_ns.saturating_sub(origin_ns) as f64 / 1e9,
            tree.len(),
            tree.threads().len(),
            cpu as f64 / 1e9
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the line.
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
            self.drawn = false;
        }
    }
}
