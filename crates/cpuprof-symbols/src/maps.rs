//! A process's memory mappings, from `/proc/PID/maps` lines or perf `MMAP2` records.
//!
//! Only executable mappings matter for unwinding and naming; the rest are kept out early.

use std::path::PathBuf;

use crate::error::Error;

/// One mapping of a file (or of anonymous memory) into a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// Mapped executable.
    pub exec: bool,
    /// Device of the file (`major << 32 | minor`), 0 when unknown.
    pub dev: u64,
    /// Inode of the file, 0 for anonymous memory.
    pub inode: u64,
    /// Path (`[vdso]`, `[heap]`, or empty for anonymous memory), without ` (deleted)`.
    pub path: String,
    /// The file was deleted after it was mapped.
    pub deleted: bool,
}

impl Mapping {
    /// Whether this maps a real file (not `[vdso]`, `[stack]`, anonymous memory).
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/')
    }

    /// The path's last component (`libc.so.6`), or the whole pseudo-path (`[vdso]`).
    pub fn base_name(&self) -> &str {
        if self.path.is_empty() {
            return "[anon]";
        }
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// Parses one line of `/proc/PID/maps`; `None` for a line that does not have the format.
pub fn parse_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        let r = rest.trim_start();
        let end = r.find(' ').unwrap_or(r.len());
        let (f, tail) = r.split_at(end);
        rest = tail;
        f
    };
    let range = field();
    let perms = field();
    let offset = field();
    let dev = field();
    let inode = field();
    let path = rest.trim();
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        exec: perms.as_bytes().get(2) == Some(&b'x'),
        dev: (u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?,
        inode: inode.parse().ok()?,
        path: path.to_string(),
        deleted,
    })
}

/// Parses the whole text of `/proc/PID/maps`, keeping executable mappings only.
pub fn parse_exec(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(parse_line)
        .filter(|m| m.exec)
        .collect()
}

/// Reads the executable mappings of a live process.
pub fn read_exec(pid: u32) -> Result<Vec<Mapping>, Error> {
    let path = PathBuf::from(format!("/proc/{pid}/maps"));
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?;
    Ok(parse_exec(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 1049             /tmp/chain
55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 1049             /tmp/chain
7f3a1c000000-7f3a1e000000 r-xp 00123000 08:01 4242             /opt/my lib/libx.so (deleted)
7ffd5e9f2000-7ffd5e9f4000 r-xp 00000000 00:00 0                  [vdso]
7f3a20000000-7f3a20021000 rw-p 00000000 00:00 0 
";

    #[test]
    fn keeps_exec_mappings_with_paths_and_offsets() {
        let m = parse_exec(MAPS);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].start, 0x55d0c0a01000);
        assert_eq!(m[0].offset, 0x1000);
        assert_eq!(m[0].path, "/tmp/chain");
        assert_eq!(m[0].dev, (0xfe << 32) | 1);
        assert_eq!(m[0].inode, 1049);
        assert_eq!(m[1].path, "/opt/my lib/libx.so");
        assert!(m[1].deleted);
        assert_eq!(m[1].base_name(), "libx.so");
        assert_eq!(m[2].path, "[vdso]");
        assert!(!m[2].is_file());
    }

    #[test]
    fn anonymous_and_garbage_lines() {
        let m = parse_line("7f3a20000000-7f3a20021000 rwxp 00000000 00:00 0 ").unwrap();
        assert_eq!(m.path, "");
        assert_eq!(m.base_name(), "[anon]");
        assert!(parse_line("not a maps line").is_none());
        assert!(parse_line("").is_none());
    }
}
