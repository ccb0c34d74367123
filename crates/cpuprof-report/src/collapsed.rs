//! Folded ("collapsed") stacks, the text format inferno, FlameGraph and speedscope read:
//! one line per distinct stack, `process;thread;frame;...;leaf COUNT`, root first.
//!
//! The first frame is the process (`python (1234)`), the second the thread (`name (tid)`), so
//! one flamegraph of the file splits by process and thread before it splits by function.

use std::collections::BTreeMap;
use std::io::{self, Write};

use cpuprof_model::{Pid, Profile, StackId, Tid};

use crate::stacks::{self, UNKNOWN};

/// Writes the profile's stack samples as folded stacks, sorted, one line per distinct stack.
pub fn write(profile: &Profile, mut out: impl Write) -> io::Result<()> {
    for (line, count) in lines(profile) {
        writeln!(out, "{line} {count}")?;
    }
    out.flush()
}

/// The folded stacks as `(stack, count)`, sorted by stack.
pub fn lines(profile: &Profile) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<(Pid, Tid, Option<StackId>), u64> = BTreeMap::new();
    for s in stacks::samples(profile) {
        *counts.entry((s.pid, s.tid, s.stack)).or_default() += 1;
    }
    let mut heads: BTreeMap<(Pid, Tid), String> = BTreeMap::new();
    for p in &profile.processes {
        for t in &p.threads {
            heads.insert(
                (p.pid, t.tid),
                format!(
                    "{};{}",
                    frame_text(&stacks::process_label(p)),
                    frame_text(&stacks::thread_label(t))
                ),
            );
        }
    }
    let mut out = BTreeMap::new();
    for ((pid, tid, stack), count) in counts {
        let mut line = heads
            .get(&(pid, tid))
            .cloned()
            .unwrap_or_else(|| format!("? ({pid});? ({tid})"));
        match stack {
            Some(id) => {
                for f in profile.stacks.frames_of(id) {
                    line.push(';');
                    line.push_str(&frame_text(&profile.stacks.frame(f).label()));
                }
            }
            None => {
                line.push(';');
                line.push_str(UNKNOWN);
            }
        }
        *out.entry(line).or_default() += count;
    }
    out
}

/// A frame label made safe for the format: `;` separates frames and a line ends a stack, so
/// both (and other control characters) are replaced; empty labels become `[unknown]`.
fn frame_text(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if s.trim().is_empty() {
        UNKNOWN.to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::profile;

    #[test]
    fn folded_lines_start_with_process_and_thread() {
        let mut buf = Vec::new();
        write(&profile(), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "python (100);python (100);<module> (x.py:1);work (x.py:7);cblas_dgemm 2",
                "python (100);worker <b> (101);start_thread;blas_thread_server 1",
                "python (100);worker <b> (101);start_thread;dgemm_kernel 3",
            ]
        );
    }

    #[test]
    fn inferno_reads_the_output() {
        let mut buf = Vec::new();
        write(&profile(), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut svg = Vec::new();
        let mut opts = inferno::flamegraph::Options::default();
        inferno::flamegraph::from_lines(&mut opts, text.lines(), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("dgemm_kernel"), "{svg}");
        assert!(svg.contains("worker &lt;b&gt; (101)"));
        assert!(svg.contains("6 samples"), "total not 6");
    }

    #[test]
    fn separators_in_names_cannot_split_frames() {
        assert_eq!(frame_text("a;b\nc"), "a:b c");
        assert_eq!(frame_text(""), UNKNOWN);
    }
}
