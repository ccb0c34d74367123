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
    fn walk(&mut self, head: u64, f: impl FnMut(&[u8])) -> (u64, usize) {
        let tail = self.tail().load(Ordering::Relaxed);
        // SAFETY: the data area follows the metadata page inside our mapping.
        let data = unsafe { std::slice::from_raw_parts(self.base.add(self.page), self.data_size) };
        walk_records(data, tail, head, &mut self.scratch, f)
    }
}

/// Visits the records of a ring's data area from `tail` to `head` (positions that only grow;
/// the data area is `data.len()` bytes, a power of two), copying a record that wraps around
/// the end into `scratch`. Returns the new tail and the number of records. A corrupt size
/// (below a header, or past `head`) drops what is left rather than loop.
pub fn walk_records(
    data: &[u8],
    mut tail: u64,
    head: u64,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]),
) -> (u64, usize) {
    let len = data.len();
    let mut n = 0;
    while tail < head && len > 0 {
        let at = (tail % len as u64) as usize;
        // Headers are 8 bytes and records 8-aligned: a header never wraps.
        let Some(hdr) = data.get(at..at + 8) else {
            tail = head;
            break;
        };
        let size = u16::from_ne_bytes([hdr[6], hdr[7]]) as usize;
        if size < 8 || size > len || tail + size as u64 > head {
            tail = head;
            break;
        }
        if at + size <= len {
            f(&data[at..at + size]);
        } else {
            let first = len - at;
            scratch.clear();
            scratch.extend_from_slice(&data[at..]);
            scratch.extend_from_slice(&data[..size - first]);
            f(scratch);
        }
        tail += size as u64;
        n += 1;
    }
    (tail, n)
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `map`.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of `size` bytes (header: type, misc, size) whose payload bytes are `fill`.
    fn record(kind: u32, size: u16, fill: u8) -> Vec<u8> {
        let mut r = kind.to_ne_bytes().to_vec();
        r.extend_from_slice(&0u16.to_ne_bytes());
        r.extend_from_slice(&size.to_ne_bytes());
        r.resize(size as usize, fill);
        r
    }

    /// Writes `bytes` into a ring of `len` bytes at position `pos` (wrapping).
    fn put(ring: &mut [u8], pos: u64, bytes: &[u8]) {
        let len = ring.len() as u64;
        for (i, b) in bytes.iter().enumerate() {
            ring[((pos + i as u64) % len) as usize] = *b;
        }
    }

    #[test]
    fn records_in_order_and_one_that_wraps() {
        let mut ring = vec![0u8; 64];
        // Positions 40..56 and 56..80: the second wraps past the end (64).
        let a = record(9, 16, 0xaa);
        let b = record(10, 24, 0xbb);
        put(&mut ring, 40, &a);
        put(&mut ring, 56, &b);
        let mut seen = Vec::new();
        let mut scratch = Vec::new();
        let (tail, n) = walk_records(&ring, 40, 80, &mut scratch, |r| seen.push(r.to_vec()));
        assert_eq!((tail, n), (80, 2));
        assert_eq!(seen, vec![a, b]);
    }

    #[test]
    fn stops_at_head_and_leaves_a_partial_record() {
        let mut ring = vec![0u8; 64];
        put(&mut ring, 0, &record(9, 16, 1));
        put(&mut ring, 16, &record(9, 16, 2));
        let mut scratch = Vec::new();
        let mut count = 0;
        // Head in the middle of the second record: a corrupt view, the rest is dropped.
        let (tail, n) = walk_records(&ring, 0, 24, &mut scratch, |_| count += 1);
        assert_eq!((n, count), (1, 1));
        assert_eq!(tail, 24);
        // Nothing to read.
        assert_eq!(walk_records(&ring, 16, 16, &mut scratch, |_| ()), (16, 0));
    }

    #[test]
    fn a_corrupt_size_drops_the_rest_instead_of_looping() {
        let mut ring = vec![0u8; 64];
        put(&mut ring, 0, &record(9, 16, 1));
        put(&mut ring, 16, &record(9, 4, 0)); // below a header
        let mut scratch = Vec::new();
        let (tail, n) = walk_records(&ring, 0, 48, &mut scratch, |_| ());
        assert_eq!((tail, n), (48, 1));
        // A size larger than the ring.
        let mut big = vec![0u8; 64];
        put(&mut big, 0, &9u32.to_ne_bytes());
        put(&mut big, 6, &200u16.to_ne_bytes());
        assert_eq!(walk_records(&big, 0, 64, &mut scratch, |_| ()), (64, 0));
    }
}
