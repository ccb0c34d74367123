//! Decoding perf records from ring-buffer bytes.
//!
//! Every event we open has the same `sample_type` (IP, TID, TIME, REGS_USER, STACK_USER) and
//! `sample_id_all`, so non-sample records end with a 16-byte trailer: pid, tid, time. We
//! decode `PERF_RECORD_SWITCH` ourselves (perf-event2's parser rejects it): it is only a
//! header and that trailer; `misc` 0x2000 = switch-out, 0x4000 = preempted (still runnable).

use cpuprof_symbols::Regs;

const RECORD_MMAP: u32 = 1;
const RECORD_LOST: u32 = 2;
const RECORD_COMM: u32 = 3;
const RECORD_EXIT: u32 = 4;
const RECORD_FORK: u32 = 7;
const RECORD_SAMPLE: u32 = 9;
const RECORD_MMAP2: u32 = 10;
const RECORD_LOST_SAMPLES: u32 = 13;
const RECORD_SWITCH: u32 = 14;
const RECORD_SWITCH_CPU_WIDE: u32 = 15;

const MISC_SWITCH_OUT: u16 = 0x2000;
const MISC_SWITCH_OUT_PREEMPT: u16 = 0x4000;
const MISC_COMM_EXEC: u16 = 0x2000;
const PROT_EXEC: u32 = 4;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// A stack sample.
    Sample {
        /// Instruction pointer (a kernel address when the thread was in the kernel).
        ip: u64,
        /// Process.
        pid: u32,
        /// Thread.
        tid: u32,
        /// Monotonic ns.
        time: u64,
        /// User registers; `None` when the thread had no user context.
        regs: Option<Regs>,
        /// The user stack copied from `regs.sp` up.
        stack: &'a [u8],
    },
    /// A new mapping.
    Mmap {
        /// Process.
        pid: u32,
        /// Start address.
        start: u64,
        /// Length.
        len: u64,
        /// File offset.
        pgoff: u64,
        /// Device (`major << 32 | minor`).
        dev: u64,
        /// Inode.
        inode: u64,
        /// Executable.
        exec: bool,
        /// File path.
        path: String,
    },
    /// A thread's name changed; `exec` when caused by `exec`.
    Comm {
        /// Process.
        pid: u32,
        /// Thread.
        tid: u32,
        /// Caused by exec.
        exec: bool,
        /// The new name (at most 15 bytes).
        comm: String,
        /// Monotonic ns (0 if the record has no trailer).
        time: u64,
    },
    /// A task was created (`pid != ppid`: a new process).
    Fork {
        /// New process.
        pid: u32,
        /// Parent process.
        ppid: u32,
        /// The thread that forked (whose name the new task inherits).
        ptid: u32,
        /// Monotonic ns.
        time: u64,
    },
    /// A task ended.
    Exit {
        /// Process.
        pid: u32,
        /// Thread.
        tid: u32,
        /// Monotonic ns.
        time: u64,
    },
    /// A context switch of the sampled thread.
    Switch {
        /// Process.
        pid: u32,
        /// Thread.
        tid: u32,
        /// Monotonic ns.
        time: u64,
        /// Switched out (else in).
        out: bool,
        /// Switched out while still runnable.
        preempted: bool,
    },
    /// The kernel dropped records (ring full).
    Lost(u64),
    /// Anything else (type given).
    Other(u32),
}

/// A little-endian cursor that fails softly.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.bytes(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.bytes(8)?.try_into().ok()?))
    }
}

/// The `sample_id_all` trailer: pid, tid, time.
fn trailer(body: &[u8]) -> Option<(u32, u32, u64)> {
    let t = body.get(body.len().checked_sub(16)?..)?;
    let mut c = Cursor { buf: t, at: 0 };
    Some((c.u32()?, c.u32()?, c.u64()?))
}

/// The parent and child of a fork record, without decoding anything else (the look ahead
/// through a ring for new processes).
pub fn fork(record: &[u8]) -> Option<(u32, u32)> {
    if u32::from_ne_bytes(record.get(..4)?.try_into().ok()?) != RECORD_FORK {
        return None;
    }
    match parse(record)? {
        Record::Fork { pid, ppid, .. } => Some((ppid, pid)),
        _ => None,
    }
}

/// Decodes one record (header included); `None` when it is truncated or malformed.
pub fn parse(record: &[u8]) -> Option<Record<'_>> {
    let mut c = Cursor { buf: record, at: 0 };
    let kind = c.u32()?;
    let misc = u16::from_ne_bytes(c.bytes(2)?.try_into().ok()?);
    let size = u16::from_ne_bytes(c.bytes(2)?.try_into().ok()?) as usize;
    let record = record.get(..size)?;
    let body = record.get(8..)?;
    let mut c = Cursor { buf: body, at: 0 };
    Some(match kind {
        RECORD_SAMPLE => {
            let ip = c.u64()?;
            let pid = c.u32()?;
            let tid = c.u32()?;
            let time = c.u64()?;
            let abi = c.u64()?;
            let regs = if abi != 0 {
                // In bit order: BP, SP, IP.
                let bp = c.u64()?;
                let sp = c.u64()?;
                let ip = c.u64()?;
                Some(Regs { ip, sp, bp })
            } else {
                None
            };
            let size = c.u64()? as usize;
            let mut stack: &[u8] = &[];
            if size > 0 {
                let data = c.bytes(size)?;
                let dyn_size = c.u64()? as usize;
                stack = &data[..dyn_size.min(size)];
            }
            Record::Sample {
                ip,
                pid,
                tid,
                time,
                regs,
                stack,
            }
        }
        RECORD_MMAP2 | RECORD_MMAP => {
            let pid = c.u32()?;
            let _tid = c.u32()?;
            let start = c.u64()?;
            let len = c.u64()?;
            let pgoff = c.u64()?;
            let (dev, inode, exec) = if kind == RECORD_MMAP2 {
                let maj = c.u32()? as u64;
                let min = c.u32()? as u64;
                let ino = c.u64()?;
                let _gen = c.u64()?;
                let prot = c.u32()?;
                let _flags = c.u32()?;
                ((maj << 32) | min, ino, prot & PROT_EXEC != 0)
            } else {
                // PERF_RECORD_MMAP is only emitted for executable mappings (no mmap_data).
                (0, 0, true)
            };
            let rest = body.get(c.at..body.len().saturating_sub(16))?;
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            Record::Mmap {
                pid,
                start,
                len,
                pgoff,
                dev,
                inode,
                exec,
                path: String::from_utf8_lossy(&rest[..end]).into_owned(),
            }
        }
        RECORD_COMM => {
            let pid = c.u32()?;
            let tid = c.u32()?;
            let rest = body.get(c.at..body.len().saturating_sub(16))?;
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            Record::Comm {
                pid,
                tid,
                exec: misc & MISC_COMM_EXEC != 0,
                comm: String::from_utf8_lossy(&rest[..end]).into_owned(),
                time: trailer(body).map_or(0, |(_, _, t)| t),
            }
        }
        RECORD_FORK => {
            let pid = c.u32()?;
            let ppid = c.u32()?;
            let _tid = c.u32()?;
            let ptid = c.u32()?;
            Record::Fork {
                pid,
                ppid,
                ptid,
                time: c.u64()?,
            }
        }
        RECORD_EXIT => {
            let pid = c.u32()?;
            let _ppid = c.u32()?;
            let tid = c.u32()?;
            let _ptid = c.u32()?;
            Record::Exit {
                pid,
                tid,
                time: c.u64()?,
            }
        }
        // The CPU-wide form adds the other task's pid and tid before the trailer.
        RECORD_SWITCH | RECORD_SWITCH_CPU_WIDE => {
            let (pid, tid, time) = trailer(body)?;
            let out = misc & MISC_SWITCH_OUT != 0;
            Record::Switch {
                pid,
                tid,
                time,
                out,
                preempted: out && misc & MISC_SWITCH_OUT_PREEMPT != 0,
            }
        }
        RECORD_LOST => {
            let _id = c.u64()?;
            Record::Lost(c.u64()?)
        }
        RECORD_LOST_SAMPLES => Record::Lost(c.u64()?),
        other => Record::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, misc: u16, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&kind.to_ne_bytes());
        r.extend_from_slice(&misc.to_ne_bytes());
        r.extend_from_slice(&((8 + body.len()) as u16).to_ne_bytes());
        r.extend_from_slice(body);
        r
    }

    fn id_trailer(pid: u32, tid: u32, time: u64) -> Vec<u8> {
        let mut v = pid.to_ne_bytes().to_vec();
        v.extend_from_slice(&tid.to_ne_bytes());
        v.extend_from_slice(&time.to_ne_bytes());
        v
    }

    #[test]
    fn exit_records_carry_the_kernels_exit_time() {
        let mut body = Vec::new();
        for v in [10u32, 1, 11, 11] {
            body.extend_from_slice(&v.to_ne_bytes());
        }
        body.extend_from_slice(&777u64.to_ne_bytes());
        body.extend_from_slice(&id_trailer(10, 11, 777));
        assert_eq!(
            parse(&record(RECORD_EXIT, 0, &body)),
            Some(Record::Exit {
                pid: 10,
                tid: 11,
                time: 777
            })
        );
    }

    #[test]
    fn switch_out_preempted() {
        let r = record(RECORD_SWITCH, 0x6000, &id_trailer(10, 11, 99));
        assert_eq!(
            parse(&r),
            Some(Record::Switch {
                pid: 10,
                tid: 11,
                time: 99,
                out: true,
                preempted: true
            })
        );
        let r = record(RECORD_SWITCH, 0x2000, &id_trailer(10, 11, 99));
        assert!(matches!(
            parse(&r),
            Some(Record::Switch {
                out: true,
                preempted: false,
                ..
            })
        ));
        let r = record(RECORD_SWITCH, 0, &id_trailer(10, 11, 100));
        assert!(matches!(
            parse(&r),
            Some(Record::Switch {
                out: false,
                time: 100,
                ..
            })
        ));
    }

    #[test]
    fn cpu_wide_switch_names_the_task_in_its_trailer() {
        // next_prev_pid / next_prev_tid (the other task) come first: the record is about
        // the trailer's task.
        let mut b = 20u32.to_ne_bytes().to_vec();
        b.extend_from_slice(&21u32.to_ne_bytes());
        b.extend_from_slice(&id_trailer(10, 11, 99));
        let per_task = record(RECORD_SWITCH, 0x6000, &id_trailer(10, 11, 99));
        assert_eq!(
            parse(&record(RECORD_SWITCH_CPU_WIDE, 0x6000, &b)),
            parse(&per_task)
        );
        assert!(parse(&per_task).is_some());
    }

    #[test]
    fn fork_is_found_without_decoding_samples() {
        let mut b = 12u32.to_ne_bytes().to_vec(); // pid
        b.extend_from_slice(&10u32.to_ne_bytes()); // ppid
        b.extend_from_slice(&12u32.to_ne_bytes()); // tid
        b.extend_from_slice(&10u32.to_ne_bytes()); // ptid
        b.extend_from_slice(&5u64.to_ne_bytes()); // time
        b.extend_from_slice(&id_trailer(10, 10, 5));
        assert_eq!(fork(&record(RECORD_FORK, 0, &b)), Some((10, 12)));
        assert_eq!(
            parse(&record(RECORD_FORK, 0, &b)),
            Some(Record::Fork {
                pid: 12,
                ppid: 10,
                ptid: 10,
                time: 5
            })
        );
        assert_eq!(fork(&record(RECORD_SWITCH, 0, &id_trailer(1, 1, 1))), None);
        assert_eq!(fork(&[7, 0]), None);
    }

    #[test]
    fn sample_with_regs_and_stack() {
        let mut b = Vec::new();
        b.extend_from_slice(&0x401000u64.to_ne_bytes());
        b.extend_from_slice(&7u32.to_ne_bytes());
        b.extend_from_slice(&8u32.to_ne_bytes());
        for v in [555u64, 2, 0x70, 0x7ff0, 0x401000, 16] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&[1u8; 16]);
        b.extend_from_slice(&8u64.to_ne_bytes()); // dyn_size: only 8 bytes are real
        let r = record(RECORD_SAMPLE, 2, &b);
        let Some(Record::Sample {
            ip,
            pid,
            tid,
            time,
            regs,
            stack,
        }) = parse(&r)
        else {
            panic!("not a sample: {:?}", parse(&r));
        };
        assert_eq!((ip, pid, tid, time), (0x401000, 7, 8, 555));
        assert_eq!(
            regs,
            Some(Regs {
                ip: 0x401000,
                sp: 0x7ff0,
                bp: 0x70
            })
        );
        assert_eq!(stack.len(), 8);
    }

    #[test]
    fn mmap2_path_and_exec() {
        let mut b = Vec::new();
        b.extend_from_slice(&5u32.to_ne_bytes());
        b.extend_from_slice(&5u32.to_ne_bytes());
        for v in [0x7f00_0000_0000u64, 0x2000, 0x1000] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&8u32.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&77u64.to_ne_bytes());
        b.extend_from_slice(&0u64.to_ne_bytes());
        b.extend_from_slice(&5u32.to_ne_bytes()); // PROT_READ | PROT_EXEC
        b.extend_from_slice(&2u32.to_ne_bytes());
        b.extend_from_slice(b"/lib/libc.so.6\0\0");
        b.extend_from_slice(&id_trailer(5, 5, 1));
        let r = record(RECORD_MMAP2, 0, &b);
        assert_eq!(
            parse(&r),
            Some(Record::Mmap {
                pid: 5,
                start: 0x7f00_0000_0000,
                len: 0x2000,
                pgoff: 0x1000,
                dev: (8 << 32) | 1,
                inode: 77,
                exec: true,
                path: "/lib/libc.so.6".into()
            })
        );
    }

    #[test]
    fn comm_carries_the_new_name() {
        let mut b = 7u32.to_ne_bytes().to_vec();
        b.extend_from_slice(&7u32.to_ne_bytes());
        b.extend_from_slice(b"python3\0");
        b.extend_from_slice(&id_trailer(7, 7, 1));
        assert_eq!(
            parse(&record(RECORD_COMM, MISC_COMM_EXEC, &b)),
            Some(Record::Comm {
                pid: 7,
                tid: 7,
                exec: true,
                comm: "python3".into(),
                time: 1,
            })
        );
    }

    #[test]
    fn lost_and_truncated() {
        let mut b = 1u64.to_ne_bytes().to_vec();
        b.extend_from_slice(&42u64.to_ne_bytes());
        assert_eq!(parse(&record(RECORD_LOST, 0, &b)), Some(Record::Lost(42)));
        let r = record(RECORD_SAMPLE, 0, &[1, 2, 3]);
        assert_eq!(parse(&r), None);
        assert_eq!(parse(&[1, 2]), None);
    }
}
