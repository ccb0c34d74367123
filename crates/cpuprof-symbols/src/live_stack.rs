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
//! (see [`LiveStack::resume`]). If the thread has moved on, the stack stays cut.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Bytes read from the process at a time.
const CHUNK: u64 = 16 * 1024;
/// The most read for one sample (stack beyond this is left unwalked).
const MAX_BYTES: u64 = 1 << 20;
/// How long a pointer that did not do is trusted before it is read again (lazy binding may
/// have set it since).
const REREAD: Duration = Duration::from_millis(100);
/// Pointers remembered per process before they are forgotten (a program that keeps loading
/// code).
const MAX_POINTERS: usize = 4096;

/// `/proc/PID/mem` of one process, opened once.
#[derive(Debug)]
pub struct ProcessMemory {
    file: File,
    /// Pointers read before that change at most once, with when ([`ProcessMemory::pointer`]).
    pointers: RefCell<HashMap<u64, (u64, Instant)>>,
}

impl ProcessMemory {
    /// Opens the memory of `pid`; needs the same permission as ptrace (root, or the same
    /// user with `ptrace_scope` 0).
    pub fn open(pid: u32) -> Option<ProcessMemory> {
        File::open(format!("/proc/{pid}/mem"))
            .ok()
            .map(|file| ProcessMemory {
                file,
                pointers: RefCell::default(),
            })
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

    /// The pointer at `addr` — a GOT entry: set by the loader, and by lazy binding once more
    /// at the first call — as read before if `good` takes it or it was read less than
    /// [`REREAD`] ago, else read again (and remembered). A scan for return addresses checks
    /// the same few entries at most samples of a thread in a library: 850 reads of one entry
    /// in a 1.5 s recording of a NumPy pool, whose value `good` refused each time.
    pub fn pointer(&self, addr: u64, good: impl Fn(u64) -> bool) -> Option<u64> {
        let now = Instant::now();
        if let Some(&(known, at)) = self.pointers.borrow().get(&addr) {
            if good(known) || now.duration_since(at) < REREAD {
                return Some(known);
            }
        }
        let value = self.word(addr)?;
        let mut pointers = self.pointers.borrow_mut();
        if pointers.len() >= MAX_POINTERS {
            pointers.clear();
        }
        pointers.insert(addr, (value, now));
        Some(value)
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

    /// The live stack from `start` (the end of the copy) up, if every `(slot, value)` of the
    /// copy still holds its value in the running process: the thread has not returned from
    /// the frames whose return addresses these are. The slots lie just below `start` as a
    /// rule, so they and the first chunk above are read in one call.
    pub fn resume(memory: &'a ProcessMemory, slots: &[(u64, u64)], start: u64) -> Option<Self> {
        let low = slots.iter().map(|&(s, _)| s).min()?;
        let mut live = LiveStack::new(memory, start);
        let Some(below) = start.checked_sub(low).filter(|&b| b <= CHUNK) else {
            // Far below: slot by slot.
            return slots
                .iter()
                .all(|&(s, v)| memory.word(s) == Some(v))
                .then_some(live);
        };
        let mut buf = vec![0u8; (below + CHUNK) as usize];
        let n = memory.read(low, &mut buf);
        if (n as u64) < below {
            return None;
        }
        let holds = slots.iter().all(|&(s, v)| {
            let at = (s - low) as usize;
            buf.get(at..at + 8)
                .is_some_and(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) == v)
        });
        if !holds {
            return None;
        }
        live.bytes = buf[below as usize..n].to_vec();
        live.ended = (n as u64) < below + CHUNK;
        Some(live)
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
        let mut data: Vec<u64> = (0..10_000u64).map(|i| i * 3 + 1).collect();
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
        // The slots and the first chunk in one read.
        let mut again = LiveStack::resume(&mem, &[(base, 1), (base + 16, 7)], base + 8 * 10)
            .expect("the slots hold");
        assert_eq!(again.word(base + 8 * 10), Some(31));
        assert_eq!(again.word(base + 8 * 9_000), Some(9_000 * 3 + 1));
        assert!(LiveStack::resume(&mem, &[(base, 1), (base + 16, 8)], base + 80).is_none());
        assert!(LiveStack::resume(&mem, &[], base + 80).is_none());
        // Slots further below the start than a chunk: read one by one.
        let far = base + 8 * 4_000;
        assert!(LiveStack::resume(&mem, &[(base, 1)], far).is_some());
        assert!(LiveStack::resume(&mem, &[(base, 2)], far).is_none());
        // A remembered pointer is read again only when the caller does not take it and it was
        // read longer than REREAD ago.
        let cell = base + 8 * 5;
        assert_eq!(mem.pointer(cell, |_| true), Some(16));
        assert_eq!(mem.pointer(cell, |v| v == 16), Some(16));
        // Changed as another thread of a target would (the reads go through the kernel).
        data[5] = 99;
        std::hint::black_box(&data);
        assert_eq!(
            mem.pointer(cell, |v| v == 16),
            Some(16),
            "taken: not read again"
        );
        assert_eq!(
            mem.pointer(cell, |_| false),
            Some(16),
            "refused, but read just now"
        );
        std::thread::sleep(super::REREAD);
        assert_eq!(
            mem.pointer(cell, |_| false),
            Some(99),
            "refused and old: read again"
        );
        assert_eq!(mem.pointer(cell, |_| false), Some(99));
        // Unmapped memory ends the stack instead of failing the sample.
        let mut none = LiveStack::new(&mem, 8);
        assert_eq!(none.word(16), None);
    }
}
