//! A perf ring buffer: one metadata page plus 2^n data pages, mapped from the owner event.
//!
//! The kernel advances `data_head`; we read records between our tail and the head (copying
//! the few that wrap around the end), then publish the new tail so the space can be reused.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Offsets of `data_head` / `data_tail` in `struct perf_event_mmap_page`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

/// One mapped ring buffer.
pub struct Ring {
    base: *mut u8,
    len: usize,
    page: usize,
    data_size: usize,
    scratch: Vec<u8>,
    // Keeps the owner event (and so the buffer) alive.
    _owner: OwnedFd,
}

// SAFETY: the mapping is owned by this value and only touched through `&mut self`.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps `data_pages` (a power of two) data pages of `owner`'s buffer.
    pub fn map(owner: OwnedFd, data_pages: usize) -> io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = page * (1 + data_pages);
        // SAFETY: a fresh shared mapping of a perf fd; the kernel validates the size.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                owner.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            base: base as *mut u8,
            len,
            page,
            data_size: page * data_pages,
            scratch: Vec::new(),
            _owner: owner,
        })
    }

    /// The owner event (to point other events' output at this buffer).
    pub fn owner(&self) -> &OwnedFd {
        &self._owner
    }

    fn head_word(&self) -> &AtomicU64 {
        // SAFETY: data_head lies in the metadata page, 8-byte aligned, for the mapping's life.
        unsafe { &*(self.base.add(DATA_HEAD) as *const AtomicU64) }
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as for `head`.
        unsafe { &*(self.base.add(DATA_TAIL) as *const AtomicU64) }
    }

    /// Bytes of record data the ring holds.
    pub fn size(&self) -> u64 {
        self.data_size as u64
    }

    /// Bytes written by the kernel and not yet read.
    pub fn pending(&self) -> u64 {
        self.head()
            .wrapping_sub(self.tail().load(Ordering::Relaxed))
    }

    /// Where the kernel has written up to: a bound for [`scan`](Ring::scan) and
    /// [`drain_to`](Ring::drain_to), so that several rings can be read up to one moment.
    pub fn head(&self) -> u64 {
        self.head_word().load(Ordering::Acquire)
    }

    /// Calls `f` with every record before `head` (from [`head`](Ring::head)), then frees
    /// their space. Returns the number of records.
    pub fn drain_to(&mut self, head: u64, f: impl FnMut(&[u8])) -> usize {
        let (tail, n) = self.walk(head, f);
        self.tail().store(tail, Ordering::Release);
        n
    }

    /// Calls `f` with every record before `head` without freeing them: a look ahead
    /// before the records are drained.
    pub fn scan(&mut self, head: u64, f: impl FnMut(&[u8])) {
        self.walk(head, f);
    }

    /// Visits the records from our tail to `head`; returns the new tail and the count.
    fn walk(&mut self, head: u64, mut f: impl FnMut(&[u8])) -> (u64, usize) {
        let mut tail = self.tail().load(Ordering::Relaxed);
        // SAFETY: the data area follows the metadata page inside our mapping.
        let data = unsafe { std::slice::from_raw_parts(self.base.add(self.page), self.data_size) };
        let mut n = 0;
        while tail < head {
            let at = (tail % self.data_size as u64) as usize;
            // Headers are 8 bytes and records 8-aligned: a header never wraps.
            let size = u16::from_ne_bytes([data[at + 6], data[at + 7]]) as usize;
            if size < 8 || tail + size as u64 > head {
                // A corrupt size would loop forever: drop what is left.
                tail = head;
                break;
            }
            if at + size <= self.data_size {
                f(&data[at..at + size]);
            } else {
                let first = self.data_size - at;
                self.scratch.clear();
                self.scratch.extend_from_slice(&data[at..]);
                self.scratch.extend_from_slice(&data[..size - first]);
                f(&self.scratch);
            }
            tail += size as u64;
            n += 1;
        }
        (tail, n)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `map`.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}
