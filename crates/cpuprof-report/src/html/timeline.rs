//! Per-thread timeline lanes: for each time bucket, the share of it the thread was running and
//! the share it was runnable but waiting for a core (the rest of its life it slept).
//!
//! From the thread's context-switch bins where perf recorded them (running and
//! preempted-waiting time per few milliseconds, see `cpuprof_model::SchedBin`); otherwise from the `schedstat` series: between two polls, Δcpu/Δt running and Δrunq/Δt
//! waiting, spread evenly. The page gets a bounded number of buckets per lane, whatever the
//! length of the recording, so an hour-long profile stays small and fast.

use cpuprof_model::{Profile, Thread};

/// At most this many buckets per lane.
pub const MAX_BUCKETS: usize = 2000;
/// At least this many (when there are very many threads).
pub const MIN_BUCKETS: usize = 200;
/// Budget of lane bytes (two bytes per bucket and thread) for profiles with many threads:
/// 1.5 M buckets in all, about 4 MB of base64.
const TOTAL_BUCKETS: usize = 1_500_000;
/// How far the running time seen in switch bins may differ from the thread's `schedstat`
/// CPU (as a share of it, plus 20 ms) before the lane falls back to `schedstat`.
const SWITCH_TOLERANCE: f64 = 0.25;
/// Polling interval assumed when the profile does not say.
const DEFAULT_INTERVAL_NS: u64 = 50_000_000;

/// The time grid shared by all lanes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Number of buckets.
    pub buckets: usize,
    /// Width of one bucket, ns.
    pub bucket_ns: f64,
}

impl Grid {
    /// A grid over the recording: buckets as fine as the data (one poll interval, or one
    /// switch bin), at most [`MAX_BUCKETS`], fewer (down to [`MIN_BUCKETS`]) when there are
    /// so many threads that the lanes would pass a few MB.
    pub fn for_profile(profile: &Profile) -> Grid {
        let wall = profile.meta.wall_ns.max(1);
        let has_bins = profile
            .processes
            .iter()
            .flat_map(|p| &p.threads)
            .any(|t| !t.sched.is_empty());
        let res = if has_bins && profile.meta.sched_bin_ns > 0 {
            profile.meta.sched_bin_ns
        } else if profile.meta.interval_ns > 0 {
            profile.meta.interval_ns
        } else {
            DEFAULT_INTERVAL_NS
        };
        let threads = profile.thread_count().max(1);
        let cap = (TOTAL_BUCKETS / threads).clamp(MIN_BUCKETS, MAX_BUCKETS);
        let buckets = wall.div_ceil(res).clamp(1, cap as u64) as usize;
        Grid {
            buckets,
            bucket_ns: wall as f64 / buckets as f64,
        }
    }

    /// Adds `amount` (ns of state) spread evenly over `[t0, t1)` into `buf` as a share of
    /// each bucket.
    fn spread(&self, buf: &mut [f32], t0: f64, t1: f64, amount: f64) {
        if t1 <= t0 || amount <= 0.0 {
            return;
        }
        let density = amount / (t1 - t0);
        let first = ((t0 / self.bucket_ns).floor().max(0.0)) as usize;
        let mut b = first;
        while b < self.buckets {
            let b0 = b as f64 * self.bucket_ns;
            let b1 = b0 + self.bucket_ns;
            if b0 >= t1 {
                break;
            }
            let overlap = t1.min(b1) - t0.max(b0);
            if overlap > 0.0 {
                buf[b] += (density * overlap / self.bucket_ns) as f32;
            }
            b += 1;
        }
    }
}

/// Where a lane's states came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneSource {
    /// perf context-switch records.
    Switches,
    /// The `schedstat` series.
    Schedstat,
}

/// One thread's states per bucket, shares 0..1 (running + waiting <= 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// Share of each bucket on a CPU.
    pub run: Vec<f32>,
    /// Share of each bucket runnable, waiting for a core.
    pub wait: Vec<f32>,
    /// Where the states came from.
    pub source: LaneSource,
}

/// The lane of one thread.
pub fn lane(grid: &Grid, profile: &Profile, thread: &Thread) -> Lane {
    let mut run = vec![0f32; grid.buckets];
    let mut wait = vec![0f32; grid.buckets];
    let mut source = LaneSource::Schedstat;
    let width = profile.meta.sched_bin_ns as f64;
    if !thread.sched.is_empty() && width > 0.0 {
        for b in &thread.sched {
            let t0 = f64::from(b.bin) * width;
            grid.spread(&mut run, t0, t0 + width, f64::from(b.running_us) * 1e3);
            grid.spread(&mut wait, t0, t0 + width, f64::from(b.waiting_us) * 1e3);
        }
        source = LaneSource::Switches;
        // Lost switch records leave a thread "running" or "asleep" for too long; when the
        // switches disagree with the thread's own CPU counter, trust the counter.
        let switch_cpu: f64 = thread
            .sched
            .iter()
            .map(|b| f64::from(b.running_us) * 1e3)
            .sum();
        let cpu = thread.cpu_ns as f64;
        if !thread.points.is_empty() && (switch_cpu - cpu).abs() > SWITCH_TOLERANCE * cpu + 0.02e9 {
            run.iter_mut().for_each(|x| *x = 0.0);
            wait.iter_mut().for_each(|x| *x = 0.0);
            source = LaneSource::Schedstat;
        }
    }
    if source == LaneSource::Schedstat {
        from_points(grid, profile, thread, &mut run, &mut wait);
    }
    for (r, w) in run.iter_mut().zip(wait.iter_mut()) {
        let sum = *r + *w;
        if sum > 1.0 {
            *r /= sum;
            *w /= sum;
        }
    }
    Lane { run, wait, source }
}

fn from_points(grid: &Grid, profile: &Profile, t: &Thread, run: &mut [f32], wait: &mut [f32]) {
    let Some(first) = t.points.first() else {
        return;
    };
    // Attached: the first poll's counters include the thread's whole past; use it as the base.
    // Launched: the thread was born at most one interval before it was first seen.
    let (mut prev_t, mut prev_cpu, mut prev_runq) = if profile.meta.attached {
        (first.t as f64, first.cpu_ns, first.runq_ns)
    } else {
        let interval = if profile.meta.interval_ns > 0 {
            profile.meta.interval_ns
        } else {
            DEFAULT_INTERVAL_NS
        };
        let span = interval.max(first.cpu_ns.saturating_add(first.runq_ns));
        (first.t.saturating_sub(span) as f64, 0, 0)
    };
    for p in &t.points {
        let pt = p.t as f64;
        let dcpu = p.cpu_ns.saturating_sub(prev_cpu) as f64;
        let drunq = p.runq_ns.saturating_sub(prev_runq) as f64;
        if pt > prev_t {
            grid.spread(run, prev_t, pt, dcpu);
            grid.spread(wait, prev_t, pt, drunq);
        } else if dcpu + drunq > 0.0 {
            // Two polls at the same instant: put the delta into that bucket.
            grid.spread(run, pt, pt + 1.0, dcpu);
            grid.spread(wait, pt, pt + 1.0, drunq);
        }
        prev_t = pt;
        prev_cpu = p.cpu_ns;
        prev_runq = p.runq_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpuprof_model::{Meta, SchedBin, Thread, ThreadPoint};

    const MS: u64 = 1_000_000;

    fn profile(wall: u64, interval: u64) -> Profile {
        Profile {
            meta: Meta {
                wall_ns: wall,
                interval_ns: interval,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn grid_follows_the_interval_and_is_bounded() {
        let g = Grid::for_profile(&profile(1000 * MS, 50 * MS));
        assert_eq!(g.buckets, 20);
        let mut p = profile(3600 * 1000 * MS, 50 * MS);
        let g = Grid::for_profile(&p);
        assert_eq!(g.buckets, MAX_BUCKETS);
        p.processes = vec![cpuprof_model::Process {
            threads: vec![Thread::default(); 5000],
            ..Default::default()
        }];
        assert_eq!(Grid::for_profile(&p).buckets, 300);
    }

    #[test]
    fn schedstat_deltas_become_shares() {
        let p = profile(200 * MS, 50 * MS);
        let g = Grid::for_profile(&p);
        let point = |t, cpu, runq| ThreadPoint {
            t,
            cpu_ns: cpu,
            runq_ns: runq,
            ..Default::default()
        };
        // Seen at 50 ms with 50 ms CPU; then half running half waiting; then asleep.
        let th = Thread {
            points: vec![
                point(50 * MS, 50 * MS, 0),
                point(100 * MS, 75 * MS, 25 * MS),
                point(150 * MS, 75 * MS, 25 * MS),
            ],
            ..Default::default()
        };
        let l = lane(&g, &p, &th);
        assert_eq!(l.source, LaneSource::Schedstat);
        let r: Vec<_> = l.run.iter().map(|x| (x * 100.0).round()).collect();
        let w: Vec<_> = l.wait.iter().map(|x| (x * 100.0).round()).collect();
        assert_eq!(r, vec![100.0, 50.0, 0.0, 0.0]);
        assert_eq!(w, vec![0.0, 50.0, 0.0, 0.0]);
    }

    fn bins(list: &[(u32, u32, u32)]) -> Vec<SchedBin> {
        list.iter()
            .map(|&(bin, running_us, waiting_us)| SchedBin {
                bin,
                running_us,
                waiting_us,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn switch_bins_give_running_and_waiting() {
        let g = Grid {
            buckets: 4,
            bucket_ns: 10.0 * MS as f64,
        };
        let mut p = profile(40 * MS, 0);
        p.meta.sched_bin_ns = 5 * MS;
        // Runs 0-10, waits 10-12.5 and runs 12.5-15, sleeps 15-30, runs 30-40.
        let th = Thread {
            sched: bins(&[
                (0, 5000, 0),
                (1, 5000, 0),
                (2, 2500, 2500),
                (6, 5000, 0),
                (7, 5000, 0),
            ]),
            ..Default::default()
        };
        let l = lane(&g, &p, &th);
        assert_eq!(l.source, LaneSource::Switches);
        assert_eq!(l.run, vec![1.0, 0.25, 0.0, 1.0]);
        assert_eq!(l.wait, vec![0.0, 0.25, 0.0, 0.0]);
    }

    #[test]
    fn bins_that_contradict_the_cpu_counter_give_way_to_schedstat() {
        let g = Grid {
            buckets: 4,
            bucket_ns: 10.0 * MS as f64,
        };
        let mut p = profile(40 * MS, 10 * MS);
        p.meta.sched_bin_ns = 10 * MS;
        let point = ThreadPoint {
            t: 40 * MS,
            cpu_ns: 5 * MS,
            ..Default::default()
        };
        // 30 ms running in the bins against 5 ms of CPU: schedstat wins.
        let th = Thread {
            cpu_ns: 5 * MS,
            points: vec![point],
            sched: bins(&[(0, 10_000, 0), (1, 10_000, 0), (2, 10_000, 0)]),
            ..Default::default()
        };
        assert_eq!(lane(&g, &p, &th).source, LaneSource::Schedstat);
        // 5 ms running: the bins stand.
        let th = Thread {
            sched: bins(&[(3, 5_000, 0)]),
            ..th
        };
        let l = lane(&g, &p, &th);
        assert_eq!(l.source, LaneSource::Switches);
        assert_eq!(l.run, vec![0.0, 0.0, 0.0, 0.5]);
    }
}
