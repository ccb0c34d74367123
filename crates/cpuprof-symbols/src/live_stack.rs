//! The part of a thread's stack that did not fit in the sample's copy, read from the running
//! process.
//!
//! The kernel copies at most 64 KiB of user stack per sample. OpenBLAS's level-3 drivers keep
//! more than that on the stack of the thread that calls them, so a sample taken inside
//! `dgemm` on the calling thread stops short of the interpreter frames and `main` above it.
//! Those outer frames are the callers of the frame the copy ends in: as long as the thread
//! has not returned from it, they are still on the stack, unchanged. So the walk goes on in
//! `/proc/PID/mem`, after checking that the thread is still where the sample saw it: the
//! return addresses the walk found in the copy must still be in the same stack slots
//! (see [`LiveStack::still_matches`]). If the thread has moved on, the stack stays cut.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes read from the process at a time.
const CHUNK: u64 = 16 * 1024;
/// The most read for one sample (stack beyond this is left unwalked).
const MAX_BYTES: u64 = 1 << 20;

/// `/proc/PID/mem` of one process, opened once.
#[derive(Debug)]
pub struct ProcessMemory {
    file: File,
}

impl ProcessMemory {
    /// Opens the memory of `pid`; needs the same permission as ptrace (root, or the same
    /// user with `ptrace_scope` 0).
    pub fn open(pid: u32) -> Option<ProcessMemory> {
        File::open(format!("/proc/{pid}/mem"))
            .ok()
            .map(|file| ProcessMemory { file })
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        done
    }

    /// The 8 bytes at `addr`, if readable.
    pub fn word(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        (self.read(addr, &mut b) == 8).then(|| u64::from_le_bytes(b))
    }
}

/// A sample's stack copy, continued past its end with the live stack.
pub struct LiveStack<'a> {
    memory: &'a ProcessMemory,
    /// Where the live part starts (the end of the copy).
    start: u64,
    /// Live bytes read so far, from `start` up.
    bytes: Vec<u8>,
    /// The stack ended (unreadable memory) at `start + bytes.len()`.
    ended: bool,
}

impl<'a> LiveStack<'a> {
    /// A reader of `memory` from `start` (the first address past the copy) up.
    pub fn new(memory: &'a ProcessMemory, start: u64) -> Self {
        LiveStack {
            memory,
            start,
            bytes: Vec::new(),
            ended: false,
        }
    }

    /// Whether every `(slot, value)` still holds its value in the running process: the thread
    /// has not returned from the frames whose return addresses these are.
    pub fn still_matches(memory: &ProcessMemory, slots: &[(u64, u64)]) -> bool {
        !slots.is_empty() && slots.iter().all(|&(s, v)| memory.word(s) == Some(v))
    }

    /// The 8 bytes at `addr` (at or above `start`), reading more of the process as needed.
    pub fn word(&mut self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.start)?;
        let end = off.checked_add(8)?;
        while (self.bytes.len() as u64) < end && !self.ended {
            let have = self.bytes.len() as u64;
            if have >= MAX_BYTES {
                self.ended = true;
                break;
            }
            let mut chunk = vec![0u8; CHUNK as usize];
            let n = self.memory.read(self.start + have, &mut chunk);
            chunk.truncate(n);
            self.bytes.extend_from_slice(&chunk);
            if (n as u64) < CHUNK {
                self.ended = true;
            }
        }
        let bytes = self.bytes.get(off as usize..end as usize)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::{LiveStack, ProcessMemory};

    #[test]
    fn reads_this_process_and_checks_slots() {
        let data: Vec<u64> = (0..10_000u64).map(|i| i * 3 + 1).collect();
        let base = data.as_ptr() as u64;
        let mem = ProcessMemory::open(std::process::id()).expect("own memory is readable");
        let mut live = LiveStack::new(&mem, base + 8);
        assert_eq!(live.word(base + 8), Some(4));
        // Past the first chunk read.
        assert_eq!(live.word(base + 8 * 9_000), Some(9_000 * 3 + 1));
        assert_eq!(
            live.word(base),
            None,
            "below the start is the copy's business"
        );
        assert!(LiveStack::still_matches(&mem, &[(base, 1), (base + 16, 7)]));
        assert!(!LiveStack::still_matches(
            &mem,
            &[(base, 1), (base + 16, 8)]
        ));
        assert!(!LiveStack::still_matches(&mem, &[]));
        // Unmapped memory ends the stack instead of failing the sample.
        let mut none = LiveStack::new(&mem, 8);
        assert_eq!(none.word(16), None);
    }
}
