//! Readers and parsers of the `/proc` files the poller reads.
//!
//! Polling every thread of a tree 20 times a second must stay cheap, so files are read into a
//! reused buffer ([`ProcReader`]) and parsed without allocating where it matters. Each parser
//! lives in a module named after the file it reads and is tested on captured text, and it is
//! the only parser of that file in the workspace: the Python sampler and the attach check use
//! these; `/proc/PID/maps` lines are parsed by `cpuprof_symbols::maps` (the unwinder, a crate
//! below this one, needs them) and reduced to libraries by [`proc_maps`].
//!
//! Why not `procfs-core`'s I/O-free parsers: they parse from a `Read` into owned structs of
//! every field (`Stat` has 52, `Status` ~60, with `String`s), each reading the file into a
//! fresh `String` first (`Schedstat::from_read` does `read_to_string`), where the poller reads
//! `stat`, `schedstat` and `status` of every thread 20 times a second through kept descriptors
//! into one reused buffer and needs four to eight fields of each. Six small parsers, each
//! tested on captured text, cost less than an allocation per file per poll.

pub mod cmdline;
pub mod environ;
pub mod pressure;
pub mod proc_maps;
pub mod schedstat;
pub mod stat;
pub mod status;
pub mod system_stat;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Reads small `/proc` files into one reused buffer.
///
/// The files read at every poll (each thread's `stat` and `schedstat`, each process's `stat`)
/// are opened once and read again from offset 0 ([`ProcReader::read_kept`]): one `pread`
/// instead of `open` + `read` + `close`, and the path lookup in `/proc` is what costs. A kept
/// descriptor stays bound to its task: once the task is gone, reading it fails, even if the
/// id has been reused.
#[derive(Debug, Default)]
pub struct ProcReader {
    buf: Vec<u8>,
    path: String,
    kept: HashMap<(u32, Option<u32>, &'static str), File>,
    /// How many descriptors may be kept (below the open-files limit, with room to spare).
    max_kept: usize,
}

impl ProcReader {
    /// A reader with an empty buffer.
    pub fn new() -> Self {
        ProcReader {
            buf: Vec::with_capacity(4096),
            path: String::with_capacity(64),
            kept: HashMap::new(),
            max_kept: kept_limit(),
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
        read_to_end(&mut self.buf, |b, _| file.read(b))?;
        Ok(&self.buf)
    }

    /// Like [`Self::read_proc`], through a descriptor kept open between calls. Call
    /// [`Self::forget`] when the thread or process is gone.
    pub fn read_kept(
        &mut self,
        pid: u32,
        tid: Option<u32>,
        file: &'static str,
    ) -> io::Result<&[u8]> {
        let key = (pid, tid, file);
        if !self.kept.contains_key(&key) {
            if self.kept.len() >= self.max_kept {
                return self.read_proc(pid, tid, file);
            }
            self.set_path(pid, tid, file)?;
            let f = File::open(&self.path)?;
            self.kept.insert(key, f);
        }
        let f = &self.kept[&key];
        let result = read_to_end(&mut self.buf, |b, at| f.read_at(b, at));
        match result {
            // An empty read means the task is gone (its files read as nothing).
            Ok(len) if len > 0 => Ok(&self.buf),
            Ok(_) => {
                self.kept.remove(&key);
                Err(io::Error::from_raw_os_error(libc::ESRCH))
            }
            Err(e) => {
                self.kept.remove(&key);
                Err(e)
            }
        }
    }

    /// Closes the kept descriptors of thread `tid` of `pid`, or with `None` of the whole
    /// process and all its threads.
    pub fn forget(&mut self, pid: u32, tid: Option<u32>) {
        match tid {
            Some(_) => self.kept.retain(|&(p, t, _), _| p != pid || t != tid),
            None => self.kept.retain(|&(p, _, _), _| p != pid),
        }
    }

    /// Descriptors kept open now.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    fn set_path(&mut self, pid: u32, tid: Option<u32>, file: &str) -> io::Result<()> {
        use std::fmt::Write;
        self.path.clear();
        match tid {
            Some(t) => write!(self.path, "/proc/{pid}/task/{t}/{file}"),
            None => write!(self.path, "/proc/{pid}/{file}"),
        }
        .map_err(io::Error::other)
    }

    /// `/proc/{pid}/{file}` or, with a tid, `/proc/{pid}/task/{tid}/{file}`.
    pub fn read_proc(&mut self, pid: u32, tid: Option<u32>, file: &str) -> io::Result<&[u8]> {
        self.set_path(pid, tid, file)?;
        let file = File::open(&self.path)?;
        self.fill(file)
    }
}

/// Reads into `buf` until `read(buffer, offset)` reports the end, growing `buf` as needed;
/// `buf` then holds exactly what was read. Returns its length.
fn read_to_end(
    buf: &mut Vec<u8>,
    mut read: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut len = 0;
    buf.resize(buf.capacity().max(4096), 0);
    let result = loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match read(&mut buf[len..], len as u64) {
            Ok(0) => break Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(len);
    result
}

/// How many `/proc` descriptors a reader may keep: half of the open-files limit (the rest is
/// left to the other collectors and the outputs). cpuprof raises its soft limit to the hard
/// one once the target is forked ([`crate::launcher::raise_open_files_limit`]).
fn kept_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    usize::try_from(lim.rlim_cur / 2).unwrap_or(usize::MAX)
}

/// Parses a kernel CPU list (`0-3,5,7-8`) into the CPUs it names.
pub fn cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.trim().parse::<u32>().ok()),
        }
    }
    out
}

/// The number of CPUs a kernel CPU list names (`0-3,8,10-11` → 7).
pub fn cpu_list_count(s: &str) -> u32 {
    cpu_list(s).len() as u32
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (else `0..sysconf(NPROCESSORS_ONLN)`):
/// the one reader of that file, for the budget and for perf's per-CPU events.
pub fn online_cpus() -> Vec<u32> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| cpu_list(&s))
        .unwrap_or_default();
    if !list.is_empty() {
        return list;
    }
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32;
    (0..n).collect()
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
    fn kept_descriptors_follow_their_thread_and_fail_once_it_is_gone() {
        let pid = std::process::id();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            let t0 = std::time::Instant::now();
            while t0.elapsed() < std::time::Duration::from_millis(30) {}
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        let mut r = ProcReader::new();
        let cpu = |r: &mut ProcReader| {
            let text = r.read_kept(pid, Some(tid), "schedstat").map(<[u8]>::to_vec);
            text.ok()
                .and_then(|t| schedstat::parse(&t))
                .map(|s| s.cpu_ns)
        };
        let first = cpu(&mut r).expect("a live thread's schedstat");
        std::thread::sleep(std::time::Duration::from_millis(40));
        let second = cpu(&mut r).expect("read again through the same descriptor");
        assert_eq!(r.kept(), 1);
        assert!(
            second > first,
            "the kept file is read afresh: {first} then {second}"
        );
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        // `join` returns once the thread's tid is cleared, a moment before the kernel has
        // finished its exit: give it up to a second.
        let t0 = std::time::Instant::now();
        while cpu(&mut r).is_some() && t0.elapsed() < std::time::Duration::from_secs(1) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(cpu(&mut r).is_none(), "the thread is gone");
        assert_eq!(r.kept(), 0, "a failed read closes the descriptor");
        r.read_kept(pid, None, "stat").unwrap();
        r.read_kept(pid, Some(pid), "stat").unwrap();
        r.forget(pid, Some(pid));
        assert_eq!(r.kept(), 1);
        r.forget(pid, None);
        assert_eq!(r.kept(), 0);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_count("0-1\n"), 2);
        assert_eq!(cpu_list_count("0-3,8,10-11"), 7);
        assert_eq!(cpu_list_count("5"), 1);
        assert_eq!(cpu_list_count(""), 0);
        assert_eq!(cpu_list("0-3,5,7-8\n"), vec![0, 1, 2, 3, 5, 7, 8]);
        assert!(!online_cpus().is_empty());
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
