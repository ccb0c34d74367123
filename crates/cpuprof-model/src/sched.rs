//! Context switches, aggregated into per-thread on/off-CPU time bins.
//!
//! perf reports every switch of every thread: an oversubscribed OpenBLAS pool yields tens of
//! thousands per second, so keeping the records would make an hour-long profile gigabytes.
//! The timeline and the analysis need, per thread and per short time bin, how long the thread
//! ran, how long it was runnable but waiting for a core (switched out by preemption until it
//! ran again), and how often it was preempted or blocked. That is what a [`SchedBin`] holds.
//!
//! Bins start at [`INITIAL_BIN_NS`]; when a recording would hold more than [`MAX_BINS`] of them,
//! the width doubles and neighbours merge, so memory stays bounded for any length. Records
//! from different CPUs' ring buffers arrive slightly out of order: they wait in a buffer until
//! [`REORDER_WINDOW_NS`] behind the newest record before they are binned.

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use crate::profile::Switch;
use crate::{Ns, Pid, Tid};

/// Bin width at the start of a recording: finer than the 50 ms polls, which already give
/// running and waiting time per interval.
pub const INITIAL_BIN_NS: u64 = 5_000_000;
/// Most bins kept over all threads (20 bytes each: 40 MB) before the width doubles.
pub const MAX_BINS: usize = 2_000_000;
/// How far behind the newest record a record may arrive (perf drains its per-CPU rings every
/// ~50 ms; one second leaves a wide margin for a slow drain).
pub const REORDER_WINDOW_NS: u64 = 1_000_000_000;
/// Buffered records at which the oldest are binned.
const PENDING_FLUSH: usize = 65_536;

/// One thread's scheduling in one time bin (`[bin * width, (bin + 1) * width)`, width =
/// `Meta::sched_bin_ns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedBin {
    /// Index of the bin.
    pub bin: u32,
    /// Microseconds on a CPU.
    pub running_us: u32,
    /// Microseconds runnable but waiting for a core (after a preemption).
    pub waiting_us: u32,
    /// Switch-outs that were preemptions.
    pub preemptions: u32,
    /// Switch-outs that blocked (sleep, I/O, lock).
    pub blocks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Waiting,
    Sleeping,
}

fn state_after(s: &Switch) -> State {
    match (s.out, s.preempted) {
        (false, _) => State::Running,
        (true, true) => State::Waiting,
        (true, false) => State::Sleeping,
    }
}

#[derive(Debug)]
struct ThreadSched {
    pid: Pid,
    first: Switch,
    last: Switch,
    running_ns: u64,
    bins: Vec<SchedBin>,
}

/// One thread's bins, when the recording ends.
#[derive(Debug)]
pub(crate) struct ClosedThread {
    pub(crate) pid: Pid,
    pub(crate) tid: Tid,
    /// Time of its first record (its start, if nothing else saw it).
    pub(crate) first_t: Ns,
    pub(crate) bins: Vec<SchedBin>,
    /// On-CPU time between its records only (switch-in to switch-out), without the estimates
    /// for before its first record and after its last.
    pub(crate) recorded_running_ns: u64,
}

/// Turns a stream of switch records into per-thread bins.
#[derive(Debug)]
pub(crate) struct SwitchBinner {
    bin_ns: u64,
    pending: Vec<Switch>,
    /// Buffer length at which the next flush happens: [`PENDING_FLUSH`] more than what the
    /// last flush had to keep, so a busy second never makes every push sort the buffer.
    flush_at: usize,
    newest: Ns,
    threads: FxHashMap<Tid, ThreadSched>,
    total_bins: usize,
}

impl Default for SwitchBinner {
    fn default() -> Self {
        SwitchBinner {
            bin_ns: INITIAL_BIN_NS,
            pending: Vec::new(),
            flush_at: PENDING_FLUSH,
            newest: 0,
            threads: FxHashMap::default(),
            total_bins: 0,
        }
    }
}

impl SwitchBinner {
    /// Takes one record (time relative to the recording start).
    pub(crate) fn push(&mut self, s: Switch) {
        self.newest = self.newest.max(s.t);
        self.pending.push(s);
        if self.pending.len() >= self.flush_at {
            self.flush_before(self.newest.saturating_sub(REORDER_WINDOW_NS));
            self.flush_at = self.pending.len() + PENDING_FLUSH;
        }
    }

    /// Bins everything buffered and closes each thread's last interval. `facts` gives what the
    /// thread's own counters say: `(start, end, cpu_ns)`, with `cpu_ns` `None` when it was never
    /// polled. Returns the bin width and, per thread, its bins.
    pub(crate) fn finish(
        mut self,
        wall: Ns,
        facts: impl Fn(Pid, Tid) -> Option<(Ns, Option<Ns>, Option<u64>)>,
    ) -> (u64, Vec<ClosedThread>) {
        self.flush_before(Ns::MAX);
        let mut out = Vec::with_capacity(self.threads.len());
        for (tid, mut ts) in self.threads {
            let (start, end, cpu) = facts(ts.pid, tid).unwrap_or((ts.first.t, None, None));
            // Before the first record and after the last one, the thread's own CPU counter
            // bounds how long it ran: whatever the records between did not account for.
            let mut left = cpu.map_or(u64::MAX, |c| c.saturating_sub(ts.running_ns));
            if ts.first.out {
                let t1 = ts.first.t;
                let t0 = start.min(t1).max(t1.saturating_sub(left));
                left -= t1 - t0;
                add(&mut ts.bins, self.bin_ns, State::Running, t0, t1);
            }
            let end = end.unwrap_or(wall).max(ts.last.t);
            match state_after(&ts.last) {
                State::Running => {
                    let t1 = end.min(ts.last.t.saturating_add(left));
                    add(&mut ts.bins, self.bin_ns, State::Running, ts.last.t, t1);
                }
                st => add(&mut ts.bins, self.bin_ns, st, ts.last.t, end),
            }
            out.push(ClosedThread {
                pid: ts.pid,
                tid,
                first_t: ts.first.t,
                bins: ts.bins,
                recorded_running_ns: ts.running_ns,
            });
        }
        out.sort_by_key(|c| c.tid);
        (self.bin_ns, out)
    }

    fn flush_before(&mut self, limit: Ns) {
        // A run per CPU ring and drain, each in order: the stable sort merges runs.
        self.pending.sort_by_key(|s| s.t);
        let n = self.pending.partition_point(|s| s.t < limit);
        let mut pending = std::mem::take(&mut self.pending);
        for s in pending.drain(..n) {
            self.take(s);
        }
        self.pending = pending;
        if self.total_bins > MAX_BINS {
            self.coarsen();
        }
    }

    fn take(&mut self, s: Switch) {
        let bin_ns = self.bin_ns;
        let ts = self.threads.entry(s.tid).or_insert_with(|| ThreadSched {
            pid: s.pid,
            first: s,
            last: s,
            running_ns: 0,
            bins: Vec::new(),
        });
        let before = ts.bins.len();
        if ts.last != s {
            let st = state_after(&ts.last);
            if st == State::Running {
                ts.running_ns += s.t.saturating_sub(ts.last.t);
            }
            add(&mut ts.bins, bin_ns, st, ts.last.t, s.t);
        }
        if s.out {
            let b = bin_mut(&mut ts.bins, (s.t / bin_ns) as u32);
            if s.preempted {
                b.preemptions += 1;
            } else {
                b.blocks += 1;
            }
        }
        ts.last = s;
        self.total_bins += ts.bins.len() - before;
    }

    fn coarsen(&mut self) {
        self.bin_ns *= 2;
        self.total_bins = 0;
        for ts in self.threads.values_mut() {
            let mut merged: Vec<SchedBin> = Vec::with_capacity(ts.bins.len() / 2 + 1);
            for b in &ts.bins {
                let bin = b.bin / 2;
                match merged.last_mut() {
                    Some(m) if m.bin == bin => {
                        m.running_us += b.running_us;
                        m.waiting_us += b.waiting_us;
                        m.preemptions += b.preemptions;
                        m.blocks += b.blocks;
                    }
                    _ => merged.push(SchedBin { bin, ..*b }),
                }
            }
            self.total_bins += merged.len();
            ts.bins = merged;
        }
    }
}

/// The bin with index `bin`, inserted in order if new.
fn bin_mut(bins: &mut Vec<SchedBin>, bin: u32) -> &mut SchedBin {
    // Records come in time order: nearly always the last bin or a new one after it.
    let i = match bins.last() {
        Some(last) if last.bin == bin => bins.len() - 1,
        Some(last) if last.bin > bin => bins.partition_point(|b| b.bin < bin),
        _ => bins.len(),
    };
    if bins.get(i).is_none_or(|b| b.bin != bin) {
        bins.insert(
            i,
            SchedBin {
                bin,
                ..Default::default()
            },
        );
    }
    &mut bins[i]
}

/// Adds `[t0, t1)` spent in `state` to the bins it covers.
fn add(bins: &mut Vec<SchedBin>, bin_ns: u64, state: State, t0: Ns, t1: Ns) {
    if state == State::Sleeping || t1 <= t0 {
        return;
    }
    let mut t = t0;
    while t < t1 {
        let bin = t / bin_ns;
        let bin_end = ((bin + 1) * bin_ns).min(t1);
        let us = ((bin_end - t) / 1000) as u32;
        let b = bin_mut(bins, bin as u32);
        match state {
            State::Running => b.running_us += us,
            State::Waiting => b.waiting_us += us,
            State::Sleeping => {}
        }
        t = bin_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(t_ms: u64, out: bool, preempted: bool) -> Switch {
        Switch {
            t: t_ms * 1_000_000,
            pid: 1,
            tid: 2,
            out,
            preempted,
        }
    }

    fn run(records: &[Switch], cpu_ms: u64, wall_ms: u64) -> (Vec<SchedBin>, u64) {
        let mut b = SwitchBinner::default();
        for &s in records {
            b.push(s);
        }
        let (w, mut closed) = b.finish(wall_ms * 1_000_000, |_, _| {
            Some((0, None, Some(cpu_ms * 1_000_000)))
        });
        assert_eq!(closed.len(), 1);
        (closed.pop().unwrap().bins, w)
    }

    fn count(bins: &[SchedBin]) -> (u32, u32) {
        (
            bins.iter().map(|b| b.preemptions).sum(),
            bins.iter().map(|b| b.blocks).sum(),
        )
    }

    fn totals(bins: &[SchedBin]) -> (u32, u32) {
        (
            bins.iter().map(|b| b.running_us).sum(),
            bins.iter().map(|b| b.waiting_us).sum(),
        )
    }

    //  ms:   0    10   12        20   23        30
    //  in ───run──┤pre wait├─run──┤block sleep ├─in── run (until the CPU counter is spent)
    #[test]
    fn running_waiting_and_sleeping_from_records() {
        let recs = [
            sw(0, false, false),
            sw(10, true, true),
            sw(12, false, false),
            sw(20, true, false),
            sw(30, false, false),
        ];
        let (th, w) = run(&recs, 22, 100);
        assert_eq!(w, INITIAL_BIN_NS);
        // 10 + 8 ms from the records, then 4 ms left on the CPU counter after 30 ms.
        assert_eq!(totals(&th), (22_000, 2_000));
        assert_eq!(count(&th), (1, 1));
        assert!(th.windows(2).all(|w| w[0].bin < w[1].bin));
    }

    #[test]
    fn records_out_of_order_across_cpus_are_reordered() {
        let recs = [
            sw(0, false, false),
            sw(12, false, false),
            sw(10, true, true),
            sw(20, true, false),
        ];
        let (th, _) = run(&recs, 18, 50);
        assert_eq!(totals(&th), (18_000, 2_000));
    }

    #[test]
    fn a_first_switch_out_means_it_ran_before_within_its_cpu() {
        // Ran 5 ms (by its counter) before the first record, a switch-out at 20 ms.
        let (th, _) = run(&[sw(20, true, false)], 5, 50);
        assert_eq!(totals(&th), (5_000, 0));
        assert_eq!(th[0].bin, 3);
    }

    #[test]
    fn a_busy_second_does_not_make_every_record_sort_the_buffer() {
        // 300 000 records within one reorder window (more than PENDING_FLUSH): the buffer is
        // flushed a handful of times, not once per record.
        let mut b = SwitchBinner::default();
        let mut flushes = 0;
        for i in 0..300_000u64 {
            let before = b.flush_at;
            b.push(Switch {
                t: i * 2_000,
                pid: 1,
                tid: 2 + (i % 4) as u32,
                out: i % 2 == 0,
                preempted: true,
            });
            flushes += usize::from(b.flush_at != before);
        }
        assert!(flushes <= 300_000 / PENDING_FLUSH, "{flushes} flushes");
        let (_, closed) = b.finish(1_000_000_000, |_, _| None);
        let waited: u64 = closed
            .iter()
            .flat_map(|c| &c.bins)
            .map(|b| u64::from(b.waiting_us))
            .sum();
        assert!(waited > 0);
    }

    #[test]
    fn bins_coarsen_instead_of_growing_without_bound() {
        let mut b = SwitchBinner {
            total_bins: MAX_BINS + 1,
            ..Default::default()
        };
        b.threads.insert(
            2,
            ThreadSched {
                pid: 1,
                first: sw(0, false, false),
                last: sw(0, false, false),
                running_ns: 0,
                bins: (0..4)
                    .map(|i| SchedBin {
                        bin: i,
                        running_us: 100,
                        ..Default::default()
                    })
                    .collect(),
            },
        );
        b.coarsen();
        assert_eq!(b.bin_ns, 2 * INITIAL_BIN_NS);
        let bins = &b.threads[&2].bins;
        assert_eq!(
            bins.iter()
                .map(|b| (b.bin, b.running_us))
                .collect::<Vec<_>>(),
            vec![(0, 200), (1, 200)]
        );
        assert_eq!(b.total_bins, 2);
    }
}
