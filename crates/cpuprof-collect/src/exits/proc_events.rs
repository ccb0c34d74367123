//! The process events connector: every fork, exec and exit on the machine, as it happens.
//!
//! A `NETLINK_CONNECTOR` socket bound to the `CN_IDX_PROC` group that sends
//! `PROC_CN_MCAST_LISTEN` receives one `struct proc_event` per event (`linux/cn_proc.h`):
//! what (u32), cpu (u32), `timestamp_ns` (u64, `CLOCK_MONOTONIC`: the clock every collector
//! stamps with), then the event's pids. Listening needs `CAP_NET_ADMIN`.
//!
//! It is what lets cpuprof follow its tree exactly: a fork is known before the child runs
//! (so a process that lives 5 ms is still known to be the target's, and an orphan re-parented
//! to init stays in the tree), an exec is known in time to read the new command line, and an
//! exit's time is the kernel's.

use std::io;

use cpuprof_model::{Pid, Tid};

use crate::netlink::{self, messages, read_i32, read_u32, read_u64, Builder, Socket};

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = netlink::NLMSG_DONE;
/// `struct cn_msg`: id (idx, val), seq, ack, len u16, flags u16.
const CN_MSG_LEN: usize = 20;

const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One process event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// A task was created: a process (`child_tid == child_pid`) or a thread.
    Fork {
        /// `CLOCK_MONOTONIC` ns.
        t: u64,
        /// The process that forked.
        parent_pid: Pid,
        /// The thread that forked.
        parent_tid: Tid,
        /// The new task's process.
        child_pid: Pid,
        /// The new task.
        child_tid: Tid,
    },
    /// A process called `exec`.
    Exec {
        /// `CLOCK_MONOTONIC` ns.
        t: u64,
        /// The process.
        pid: Pid,
    },
    /// A task exited.
    Exit {
        /// `CLOCK_MONOTONIC` ns.
        t: u64,
        /// Its process.
        pid: Pid,
        /// The task.
        tid: Tid,
    },
}

/// A subscribed proc connector socket.
#[derive(Debug)]
pub struct Listener {
    sock: Socket,
    buf: Vec<u8>,
}

impl Listener {
    /// Subscribes to the machine's process events.
    pub fn subscribe() -> io::Result<Listener> {
        let sock = Socket::open(libc::NETLINK_CONNECTOR, CN_IDX_PROC, 8 << 20)?;
        let mut cn = Vec::with_capacity(CN_MSG_LEN + 4);
        cn.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        cn.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        cn.extend_from_slice(&0u32.to_ne_bytes()); // seq
        cn.extend_from_slice(&0u32.to_ne_bytes()); // ack
        cn.extend_from_slice(&4u16.to_ne_bytes()); // len of the data
        cn.extend_from_slice(&0u16.to_ne_bytes()); // flags
        cn.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        let msg = Builder::new(NLMSG_DONE, 0, 0).bytes(&cn).finish();
        sock.send(&msg)?;
        Ok(Listener {
            sock,
            buf: vec![0u8; 64 << 10],
        })
    }

    /// The descriptor, for `poll`.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.sock.fd()
    }

    /// Reads every waiting event without blocking. Returns how many times the kernel
    /// reported dropped events.
    pub fn drain(&mut self, mut each: impl FnMut(ProcEvent)) -> u64 {
        self.sock.drain(&mut self.buf, |datagram| {
            for m in messages(datagram) {
                if let Some(e) = m.payload.get(CN_MSG_LEN..).and_then(parse) {
                    each(e);
                }
            }
        })
    }
}

/// Parses one `struct proc_event` (the event data starts at offset 16).
pub fn parse(b: &[u8]) -> Option<ProcEvent> {
    let what = read_u32(b, 0)?;
    let t = read_u64(b, 8)?;
    let pid = |at: usize| read_i32(b, 16 + at).map(|v| v.max(0) as u32);
    match what {
        PROC_EVENT_FORK => Some(ProcEvent::Fork {
            t,
            parent_tid: pid(0)?,
            parent_pid: pid(4)?,
            child_tid: pid(8)?,
            child_pid: pid(12)?,
        }),
        PROC_EVENT_EXEC => Some(ProcEvent::Exec { t, pid: pid(4)? }),
        PROC_EVENT_EXIT => Some(ProcEvent::Exit {
            t,
            tid: pid(0)?,
            pid: pid(4)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(what: u32, t: u64, pids: &[i32]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&what.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        for p in pids {
            b.extend_from_slice(&p.to_ne_bytes());
        }
        b
    }

    #[test]
    fn fork_exec_and_exit_events_parse_and_others_are_skipped() {
        assert_eq!(
            parse(&event(PROC_EVENT_FORK, 5, &[11, 10, 21, 20])),
            Some(ProcEvent::Fork {
                t: 5,
                parent_pid: 10,
                parent_tid: 11,
                child_pid: 20,
                child_tid: 21
            })
        );
        assert_eq!(
            parse(&event(PROC_EVENT_EXEC, 6, &[20, 20])),
            Some(ProcEvent::Exec { t: 6, pid: 20 })
        );
        assert_eq!(
            parse(&event(PROC_EVENT_EXIT, 7, &[21, 20, 0, 17, 1, 1])),
            Some(ProcEvent::Exit {
                t: 7,
                pid: 20,
                tid: 21
            })
        );
        // A uid change, and a truncated fork.
        assert_eq!(parse(&event(0x4, 8, &[20, 20, 0, 0])), None);
        assert_eq!(parse(&event(PROC_EVENT_FORK, 5, &[11, 10])), None);
    }
}
