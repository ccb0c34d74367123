//! Reading another process's memory with `process_vm_readv`, several ranges per call.
//!
//! A stack read is a chain of dependent reads (each frame names the next), but the code
//! objects of a whole stack are read in one call: that call is what makes a cached stack cheap.

use cpuprof_model::Pid;

/// The memory of one process.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pid: Pid,
}

/// A read that did not return every byte asked for (unmapped, freed, the process gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable(pub u64);

/// Ranges per call: the kernel's `IOV_MAX`.
const MAX_RANGES: usize = 1024;

impl Memory {
    /// The memory of `pid`.
    pub fn new(pid: Pid) -> Memory {
        Memory { pid }
    }

    /// Fills `buf` from `addr`, whole or not at all.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        let mut parts = [(addr, buf)];
        match self.read_many(&mut parts) {
            1 => Ok(()),
            _ => Err(Unreadable(addr)),
        }
    }

    /// The 8 bytes at `addr`.
    pub fn u64(&self, addr: u64) -> Result<u64, Unreadable> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    /// Fills each `(address, buffer)` in order, in as few calls as the kernel allows; returns
    /// how many were filled whole (the kernel stops at the first range it cannot read).
    pub fn read_many(&self, parts: &mut [(u64, &mut [u8])]) -> usize {
        let mut done = 0;
        for chunk in parts.chunks_mut(MAX_RANGES) {
            let local: Vec<libc::iovec> = chunk
                .iter_mut()
                .map(|(_, b)| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            let remote: Vec<libc::iovec> = chunk
                .iter()
                .map(|(a, b)| libc::iovec {
                    iov_base: *a as usize as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: every local iovec points into a live, exclusively borrowed buffer of the
            // given length; the remote ones are only read by the kernel, in the other process.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid as libc::pid_t,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            let mut left = usize::try_from(n).unwrap_or(0);
            for (_, b) in chunk.iter() {
                if left < b.len() {
                    return done;
                }
                left -= b.len();
                done += 1;
            }
        }
        done
    }
}

/// The 8 bytes at `at` of `buf` (0 past its end).
pub fn u64_at(buf: &[u8], at: u64) -> u64 {
    let at = at as usize;
    buf.get(at..at + 8)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
}

/// The 4 bytes at `at` of `buf` as a signed number (0 past its end).
pub fn i32_at(buf: &[u8], at: u64) -> i32 {
    let at = at as usize;
    buf.get(at..at + 4)
        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or([0; 4])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_in_one_call_and_stops_at_an_unmapped_range() {
        let me = Memory::new(std::process::id() as Pid);
        let a = 0x1122_3344_5566_7788u64;
        let b = [7u8; 3];
        assert_eq!(me.u64(&a as *const u64 as u64), Ok(a));
        let (mut x, mut y, mut z) = ([0u8; 8], [0u8; 3], [0u8; 8]);
        let mut parts = [
            (&a as *const u64 as u64, &mut x[..]),
            (b.as_ptr() as u64, &mut y[..]),
            (8, &mut z[..]),
        ];
        assert_eq!(me.read_many(&mut parts), 2);
        assert_eq!(u64::from_ne_bytes(x), a);
        assert_eq!(y, b);
        assert_eq!(me.u64(8), Err(Unreadable(8)));
        assert_eq!(u64_at(&x, 0), a);
        assert_eq!(u64_at(&x, 4), 0);
        assert_eq!(i32_at(&[1, 0, 0, 0], 0), 1);
    }
}
