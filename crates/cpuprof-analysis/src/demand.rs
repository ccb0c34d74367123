//! Runnable demand over time: how many threads wanted a core, bin by bin.
//!
//! A thread's demand over a poll interval is the time it was on a CPU plus the time it waited
//! on a run queue (`schedstat` fields 1 and 2), divided by the interval: 1.0 means it was
//! runnable the whole time. Summed over the tree it is the concurrency the program asked for,
//! which is what is compared with the CPU budget. It is measured, not guessed: a thread that
//! sleeps adds nothing however many threads exist, and load from outside the target raises
//! its wait but not its demand (each thread counts at most 1).

use std::collections::HashMap;

use cpuprof_model::{Pid, Profile, Tid};

/// Bin width when the profile does not say how often it polled.
const DEFAULT_BIN_NS: u64 = 100_000_000;
/// Smallest bin: below ~10 ms the `schedstat` deltas of one poll are mostly jitter.
const MIN_BIN_NS: u64 = 10_000_000;
/// Most bins kept; longer recordings get wider bins (a 2-hour attach at 100 ms = 72k bins).
const MAX_BINS: u64 = 20_000;
/// A thread's wait counts as demand up to this many times its CPU over the same poll. N
/// always-runnable threads on C cores wait (N/C - 1) times their CPU, so this credits up to
/// 11x the cores in full. A thread that wakes often to find nothing to do (an event loop, a
/// Rayon worker told about a job another thread takes) waits far longer than it runs: its
/// waiting says the machine was busy, not that it wanted the core.
pub const MAX_WAIT_PER_CPU: f64 = 10.0;

/// Per-bin CPU and demand of one thread.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// ns on CPU in each bin.
    pub cpu: Vec<f64>,
    /// ns runnable (on CPU or waiting for one) in each bin.
    pub runnable: Vec<f64>,
}

/// The demand timeline of a profile.
#[derive(Debug, Clone, Default)]
pub struct Demand {
    /// Width of a bin, ns.
    pub bin_ns: u64,
    /// Threads wanting a core, summed over the tree, per bin (mean over the bin).
    pub total: Vec<f64>,
    /// Per thread.
    pub threads: HashMap<(Pid, Tid), Series>,
}

impl Demand {
    /// Computes the timeline from the threads' cumulative points.
    pub fn of(profile: &Profile) -> Demand {
        let end = profile
            .processes
            .iter()
            .flat_map(|p| p.threads.iter())
            .filter_map(|t| t.points.last().map(|p| p.t))
            .max()
            .unwrap_or(0)
            .max(profile.meta.wall_ns);
        let mut bin_ns = if profile.meta.interval_ns > 0 {
            profile.meta.interval_ns.max(MIN_BIN_NS)
        } else {
            DEFAULT_BIN_NS
        };
        bin_ns = bin_ns.max(end / MAX_BINS + 1);
        let nbins = (end / bin_ns + 1) as usize;
        let mut total = vec![0.0; nbins];
        let mut threads = HashMap::new();
        for p in &profile.processes {
            for th in &p.threads {
                let mut s = Series {
                    cpu: vec![0.0; nbins],
                    runnable: vec![0.0; nbins],
                };
                let mut prev: Option<(u64, u64, u64)> = None;
                for pt in &th.points {
                    let (t0, cpu0, rq0) = match prev {
                        Some(x) => x,
                        // A thread born during the recording: its first counters accumulated
                        // since birth, at most one interval before the first poll.
                        None if th.start_ns > 0 && profile.meta.interval_ns > 0 => {
                            (pt.t.saturating_sub(profile.meta.interval_ns), 0, 0)
                        }
                        None => {
                            prev = Some((pt.t, pt.cpu_ns, pt.runq_ns));
                            continue;
                        }
                    };
                    prev = Some((pt.t, pt.cpu_ns, pt.runq_ns));
                    if pt.t <= t0 {
                        continue;
                    }
                    let span = (pt.t - t0) as f64;
                    let dcpu = (pt.cpu_ns.saturating_sub(cpu0) as f64).min(span);
                    let dwait =
                        (pt.runq_ns.saturating_sub(rq0) as f64).min(MAX_WAIT_PER_CPU * dcpu);
                    let drun = (dcpu + dwait).min(span);
                    spread(&mut s.cpu, bin_ns, t0, pt.t, dcpu);
                    spread(&mut s.runnable, bin_ns, t0, pt.t, drun);
                }
                for (i, r) in s.runnable.iter().enumerate() {
                    total[i] += r / bin_ns as f64;
                }
                threads.insert((p.pid, th.tid), s);
            }
        }
        Demand {
            bin_ns,
            total,
            threads,
        }
    }

    /// Bins where demand exceeds `limit` threads.
    pub fn over(&self, limit: f64) -> Vec<bool> {
        self.total.iter().map(|d| *d > limit).collect()
    }

    /// Sum of a thread's series over the selected bins, ns: (cpu, runnable).
    pub fn thread_in(&self, pid: Pid, tid: Tid, bins: &[bool]) -> (f64, f64) {
        let Some(s) = self.threads.get(&(pid, tid)) else {
            return (0.0, 0.0);
        };
        let mut c = 0.0;
        let mut r = 0.0;
        for (i, sel) in bins.iter().enumerate() {
            if *sel {
                c += s.cpu[i];
                r += s.runnable[i];
            }
        }
        (c, r)
    }
}

/// Adds `amount` spread evenly over `[t0, t1)` into the bins.
fn spread(bins: &mut [f64], bin_ns: u64, t0: u64, t1: u64, amount: f64) {
    if amount <= 0.0 || t1 <= t0 {
        return;
    }
    let rate = amount / (t1 - t0) as f64;
    let mut t = t0;
    while t < t1 {
        let i = (t / bin_ns) as usize;
        let bin_end = (i as u64 + 1) * bin_ns;
        let e = bin_end.min(t1);
        if let Some(b) = bins.get_mut(i) {
            *b += rate * (e - t) as f64;
        }
        t = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{busy_thread, profile_with};

    #[test]
    fn two_always_runnable_threads_make_demand_two() {
        // 2 threads, each on CPU half the time and waiting the other half, for 1 s.
        let p = profile_with(
            2,
            vec![(
                10,
                vec![
                    busy_thread(10, 1.0, 0.5, 0.5),
                    busy_thread(11, 1.0, 0.5, 0.5),
                ],
            )],
        );
        let d = Demand::of(&p);
        let mid = d.total.len() / 2;
        assert!((d.total[mid] - 2.0).abs() < 0.01, "{:?}", d.total);
    }

    #[test]
    fn sleeping_threads_add_nothing() {
        let p = profile_with(
            2,
            vec![(
                10,
                (10..50).map(|t| busy_thread(t, 1.0, 0.0, 0.0)).collect(),
            )],
        );
        let d = Demand::of(&p);
        assert!(d.total.iter().all(|x| *x == 0.0));
    }

    #[test]
    fn spread_splits_across_bins() {
        let mut b = vec![0.0; 3];
        spread(&mut b, 10, 5, 25, 20.0);
        assert_eq!(b, vec![5.0, 10.0, 5.0]);
    }
}
