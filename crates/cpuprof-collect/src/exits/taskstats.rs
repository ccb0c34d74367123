//! Taskstats: the kernel's own final figures of every task, sent as it exits.
//!
//! A listener registers a CPU list with `TASKSTATS_CMD_GET` + `REGISTER_CPUMASK` (this needs
//! `CAP_NET_ADMIN`); from then on, each task that exits on one of those CPUs sends it a
//! `TASKSTATS_CMD_NEW` message holding `TASKSTATS_TYPE_AGGR_PID` { `PID`, `STATS` } — the
//! same data `getdelays` prints (Documentation/accounting/taskstats.rst). The fields read here
//! and where each comes from in the kernel:
//!
//! | field | offset | source |
//! |---|---|---|
//! | `cpu_delay_total` | 24 | `sched_info.run_delay`: ns runnable on a run queue (as `schedstat`) |
//! | `cpu_run_virtual_total` | 72 | `se.sum_exec_runtime`: ns on CPU, exact (as `schedstat`; `cpu_run_real_total` at 64 is `utime + stime`) |
//! | `ac_comm` | 80 | `comm` |
//! | `ac_pid`, `ac_ppid` | 128, 132 | tid, parent process |
//! | `ac_etime` | 144 | µs from the task's start to its exit |
//! | `ac_utime`, `ac_stime` | 152, 160 | µs user / system (sampled: for the split only) |
//! | `nvcsw`, `nivcsw` | 272, 280 | voluntary / involuntary context switches |
//! | `ac_tgid` | 368 | process (version 13 and later) |
//!
//! `cpu_delay_total` and `cpu_run_virtual_total` are filled only while delay accounting is on
//! (`kernel.task_delayacct`, off by default since Linux 5.14): [`DelayAccounting`] turns it on
//! for the recording when it may, and puts it back as it was.

use std::io;

use cpuprof_model::{Pid, Tid};

use crate::netlink::{self, attributes, messages, read_u16, read_u32, read_u64, Builder, Socket};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const TASKSTATS_CMD_GET: u8 = 1;
const TASKSTATS_CMD_NEW: u8 = 2;
const TASKSTATS_CMD_ATTR_REGISTER_CPUMASK: u16 = 3;
const TASKSTATS_TYPE_PID: u16 = 1;
const TASKSTATS_TYPE_STATS: u16 = 3;
const TASKSTATS_TYPE_AGGR_PID: u16 = 4;
/// The first version with `ac_tgid`.
const MIN_VERSION: u16 = 13;

/// One task's figures at its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStats {
    /// Thread id.
    pub tid: Tid,
    /// Process (thread group) id.
    pub tgid: Pid,
    /// Parent process.
    pub ppid: Pid,
    /// `comm` at exit.
    pub comm: String,
    /// CPU on CPU, ns, exact; `None` when delay accounting was off.
    pub cpu_ns: Option<u64>,
    /// Run-queue wait, ns; `None` when delay accounting was off.
    pub runq_ns: Option<u64>,
    /// User time, ns (tick-sampled).
    pub user_ns: u64,
    /// System time, ns (tick-sampled).
    pub sys_ns: u64,
    /// From start to exit, ns (µs resolution).
    pub elapsed_ns: u64,
    /// Voluntary context switches.
    pub vcsw: u64,
    /// Involuntary context switches.
    pub ivcsw: u64,
    /// The exit status word (`code << 8 | signal`) as `wait` reports it.
    pub exit_status: u32,
}

impl TaskStats {
    /// Parses a `struct taskstats` (`None` if too short or older than version 13).
    /// `delayacct` says whether delay accounting was on, so that zeros are not taken for
    /// measurements.
    pub fn parse(tid: Tid, b: &[u8], delayacct: bool) -> Option<TaskStats> {
        let version = read_u16(b, 0)?;
        if version < MIN_VERSION {
            return None;
        }
        let comm = b.get(80..112)?;
        let comm = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(comm.len())];
        Some(TaskStats {
            tid,
            tgid: read_u32(b, 368)?,
            ppid: read_u32(b, 132)?,
            comm: String::from_utf8_lossy(comm).into_owned(),
            cpu_ns: delayacct.then_some(read_u64(b, 72)?),
            runq_ns: delayacct.then_some(read_u64(b, 24)?),
            user_ns: read_u64(b, 152)?.saturating_mul(1000),
            sys_ns: read_u64(b, 160)?.saturating_mul(1000),
            elapsed_ns: read_u64(b, 144)?.saturating_mul(1000),
            vcsw: read_u64(b, 272)?,
            ivcsw: read_u64(b, 280)?,
            exit_status: read_u32(b, 4)?,
        })
    }
}

/// A registered taskstats listener.
#[derive(Debug)]
pub struct Listener {
    sock: Socket,
    family: u16,
    buf: Vec<u8>,
}

impl Listener {
    /// Registers for the exits on `cpus` (a CPU list such as `0-3`). Fails with the
    /// kernel's error: `EPERM` without `CAP_NET_ADMIN`, `ENOENT` without taskstats.
    pub fn register(cpus: &str) -> io::Result<Listener> {
        let sock = Socket::open(libc::NETLINK_GENERIC, 0, 8 << 20)?;
        let family = resolve_family(&sock, "TASKSTATS")?;
        let msg = Builder::new(family, netlink::NLM_F_REQUEST | netlink::NLM_F_ACK, 2)
            .bytes(&[TASKSTATS_CMD_GET, 1, 0, 0])
            .attr_str(TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, cpus)
            .finish();
        let mut buf = vec![0u8; 64 << 10];
        let reply = sock.request(&msg, &mut buf)?;
        for m in messages(reply) {
            if let Some(code) = m.error_code() {
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
            }
        }
        Ok(Listener { sock, family, buf })
    }

    /// The descriptor, for `poll`.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.sock.fd()
    }

    /// Reads every waiting exit without blocking, calling `each` for each one. Returns how
    /// many notifications the kernel had to drop (the buffer overflowed), 0 or 1 per call.
    pub fn drain(&mut self, delayacct: bool, mut each: impl FnMut(TaskStats)) -> u64 {
        let mut dropped = 0;
        loop {
            let datagram = match self.sock.recv(&mut self.buf) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    dropped += 1;
                    continue;
                }
                Err(_) => break,
            };
            for m in messages(datagram) {
                if m.kind != self.family || m.payload.first() != Some(&TASKSTATS_CMD_NEW) {
                    continue;
                }
                if let Some(s) = parse_notification(m.payload.get(4..).unwrap_or(&[]), delayacct) {
                    each(s);
                }
            }
        }
        dropped
    }
}

/// The per-task part of an exit notification (the per-process aggregate that follows a
/// multi-threaded process's last exit adds nothing its tasks did not already say).
fn parse_notification(attrs: &[u8], delayacct: bool) -> Option<TaskStats> {
    let (_, nested) = attributes(attrs).find(|&(k, _)| k == TASKSTATS_TYPE_AGGR_PID)?;
    let mut tid = None;
    let mut stats = None;
    for (k, v) in attributes(nested) {
        match k {
            TASKSTATS_TYPE_PID => tid = read_u32(v, 0),
            TASKSTATS_TYPE_STATS => stats = Some(v),
            _ => {}
        }
    }
    TaskStats::parse(tid?, stats?, delayacct)
}

/// The id of the generic netlink family `name`.
fn resolve_family(sock: &Socket, name: &str) -> io::Result<u16> {
    let msg = Builder::new(GENL_ID_CTRL, netlink::NLM_F_REQUEST, 1)
        .bytes(&[CTRL_CMD_GETFAMILY, 1, 0, 0])
        .attr_str(CTRL_ATTR_FAMILY_NAME, name)
        .finish();
    let mut buf = vec![0u8; 16 << 10];
    let reply = sock.request(&msg, &mut buf)?;
    for m in messages(reply) {
        if let Some(code) = m.error_code() {
            return Err(io::Error::from_raw_os_error(-code));
        }
        if m.kind == GENL_ID_CTRL {
            let id = attributes(m.payload.get(4..).unwrap_or(&[]))
                .find(|&(k, _)| k == CTRL_ATTR_FAMILY_ID)
                .and_then(|(_, v)| read_u16(v, 0));
            if let Some(id) = id {
                return Ok(id);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no generic netlink family {name}"),
    ))
}

/// `kernel.task_delayacct`, turned on for the recording and put back on drop.
#[derive(Debug)]
pub struct DelayAccounting {
    /// It is on now.
    pub on: bool,
    /// cpuprof turned it on (and will turn it off again).
    pub enabled_here: bool,
}

const DELAYACCT: &str = "/proc/sys/kernel/task_delayacct";

impl DelayAccounting {
    /// Turns delay accounting on if it is off and cpuprof may write the setting.
    pub fn enable() -> DelayAccounting {
        let on = |t: String| t.trim() == "1";
        match std::fs::read_to_string(DELAYACCT) {
            Ok(t) if on(t.clone()) => DelayAccounting {
                on: true,
                enabled_here: false,
            },
            Ok(_) => {
                let ok = std::fs::write(DELAYACCT, "1").is_ok()
                    && std::fs::read_to_string(DELAYACCT).is_ok_and(on);
                DelayAccounting {
                    on: ok,
                    enabled_here: ok,
                }
            }
            // Kernels before 5.14 have no switch: accounting is on unless booted `nodelayacct`.
            Err(_) => DelayAccounting {
                on: true,
                enabled_here: false,
            },
        }
    }
}

impl Drop for DelayAccounting {
    fn drop(&mut self) {
        if self.enabled_here {
            let _ = std::fs::write(DELAYACCT, "0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `struct taskstats` of version `version` with the fields this module reads.
    fn raw(version: u16) -> Vec<u8> {
        let mut b = vec![0u8; 416];
        let put = |b: &mut Vec<u8>, at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(&mut b, 0, &version.to_ne_bytes());
        put(&mut b, 4, &(3u32 << 8).to_ne_bytes());
        put(&mut b, 24, &7_000u64.to_ne_bytes());
        put(&mut b, 64, &20_000_000u64.to_ne_bytes());
        put(&mut b, 72, &20_123_456u64.to_ne_bytes());
        put(&mut b, 80, b"burn\0");
        put(&mut b, 128, &101u32.to_ne_bytes());
        put(&mut b, 132, &99u32.to_ne_bytes());
        put(&mut b, 144, &25_000u64.to_ne_bytes());
        put(&mut b, 152, &16_000u64.to_ne_bytes());
        put(&mut b, 160, &4_000u64.to_ne_bytes());
        put(&mut b, 272, &2u64.to_ne_bytes());
        put(&mut b, 280, &5u64.to_ne_bytes());
        put(&mut b, 368, &100u32.to_ne_bytes());
        b
    }

    #[test]
    fn parses_the_fields_and_trusts_delay_figures_only_when_accounting_was_on() {
        let s = TaskStats::parse(101, &raw(16), true).unwrap();
        assert_eq!(
            s,
            TaskStats {
                tid: 101,
                tgid: 100,
                ppid: 99,
                comm: "burn".into(),
                cpu_ns: Some(20_123_456),
                runq_ns: Some(7_000),
                user_ns: 16_000_000,
                sys_ns: 4_000_000,
                elapsed_ns: 25_000_000,
                vcsw: 2,
                ivcsw: 5,
                exit_status: 3 << 8,
            }
        );
        let off = TaskStats::parse(101, &raw(16), false).unwrap();
        assert_eq!((off.cpu_ns, off.runq_ns), (None, None));
        assert!(TaskStats::parse(101, &raw(12), true).is_none());
        assert!(TaskStats::parse(101, &raw(16)[..300], true).is_none());
    }

    #[test]
    fn a_notification_is_unwrapped_from_its_nested_attributes() {
        let inner = Builder::new(0, 0, 0)
            .attr(TASKSTATS_TYPE_PID, &101u32.to_ne_bytes())
            .attr(TASKSTATS_TYPE_STATS, &raw(16))
            .finish();
        let attrs = Builder::new(0, 0, 0)
            .attr(TASKSTATS_TYPE_AGGR_PID | 0x8000, &inner[16..])
            .finish();
        let s = parse_notification(&attrs[16..], true).unwrap();
        assert_eq!((s.tid, s.tgid, s.cpu_ns), (101, 100, Some(20_123_456)));
        assert!(parse_notification(&attrs[16..40], true).is_none());
    }
}
