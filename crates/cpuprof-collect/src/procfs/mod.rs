//! Readers and parsers of the `/proc` files the poller reads.
//!
//! Polling every thread of a tree 20 times a second must stay cheap, so files are read into a
//! reused buffer ([`ProcReader`]) and parsed without allocating where it matters. Each parser
//! lives in a module named after the file it reads and is tested on captured text.

pub mod cmdline;
pub mod environ;
pub mod proc_maps;
pub mod schedstat;
pub mod stat;
pub mod status;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Reads small `/proc` files into one reused buffer.
#[derive(Debug, Default)]
pub struct ProcReader {
    buf: Vec<u8>,
    path: String,
}

impl ProcReader {
    /// A reader with an empty buffer.
    pub fn new() -> Self {
        ProcReader {
            buf: Vec::with_capacity(4096),
            path: String::with_capacity(64),
        }
    }

    /// The whole file at `path`.
    pub fn read(&mut self, path: &Path) -> io::Result<&[u8]> {
        let file = File::open(path)?;
        self.fill(file)
    }

    /// Reads `file` to its end into the buffer with plain `read` calls (`read_to_end` would
    /// also `statx` and `lseek` the file for a size hint that `/proc` files do not have).
    fn fill(&mut self, mut file: File) -> io::Result<&[u8]> {
        let mut len = 0;
        self.buf.resize(self.buf.capacity().max(4096), 0);
        loop {
            if len == self.buf.len() {
                self.buf.resize(len * 2, 0);
            }
            match file.read(&mut self.buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.truncate(len);
        Ok(&self.buf)
    }

    /// `/proc/{pid}/{file}` or, with a tid, `/proc/{pid}/task/{tid}/{file}`.
    pub fn read_proc(&mut self, pid: u32, tid: Option<u32>, file: &str) -> io::Result<&[u8]> {
        use std::fmt::Write;
        self.path.clear();
        match tid {
            Some(t) => write!(self.path, "/proc/{pid}/task/{t}/{file}"),
            None => write!(self.path, "/proc/{pid}/{file}"),
        }
        .map_err(io::Error::other)?;
        let file = File::open(&self.path)?;
        self.fill(file)
    }
}

/// Parses a kernel CPU list such as `0-3,8,10-11` into the number of CPUs it names.
pub fn cpu_list_count(s: &str) -> u32 {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(part.trim().parse::<u32>().is_ok()),
        })
        .sum()
}

/// Threads (tids) of `pid`, from `/proc/PID/task`.
pub fn tasks(pid: u32) -> io::Result<Vec<u32>> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Child pids listed in one `/proc/PID/task/TID/children` file.
pub fn parse_children(text: &[u8]) -> impl Iterator<Item = u32> + '_ {
    text.split(|b| b.is_ascii_whitespace())
        .filter_map(|w| std::str::from_utf8(w).ok()?.parse().ok())
}

/// Clock ticks per second (`USER_HZ`) for `stat` times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_count("0-1\n"), 2);
        assert_eq!(cpu_list_count("0-3,8,10-11"), 7);
        assert_eq!(cpu_list_count("5"), 1);
        assert_eq!(cpu_list_count(""), 0);
    }

    #[test]
    fn children_and_tasks() {
        assert_eq!(
            parse_children(b"12 345 \n").collect::<Vec<_>>(),
            vec![12, 345]
        );
        assert!(tasks(std::process::id())
            .unwrap()
            .contains(&std::process::id()));
    }

    #[test]
    fn reader_reuses_its_buffer() {
        let mut r = ProcReader::new();
        let me = std::process::id();
        assert!(r
            .read_proc(me, Some(me), "stat")
            .unwrap()
            .starts_with(me.to_string().as_bytes()));
        assert!(r.read_proc(me, None, "comm").is_ok());
        // Files larger than the buffer are read whole.
        let maps = std::fs::read(format!("/proc/{me}/smaps")).unwrap();
        assert!(maps.len() > 4096);
        let again = r.read_proc(me, None, "smaps").unwrap().to_vec();
        assert!(again.len() > 4096 && again.ends_with(b"\n"));
        assert!(r.read_proc(u32::MAX - 1, None, "stat").is_err());
    }
}
