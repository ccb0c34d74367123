//! Per-thread timeline lanes: for each time bucket, the share of it the thread was running and
//! the share it was runnable but waiting for a core (the rest of its life it slept).
//!
//! Exact where perf context-switch records exist for the thread (a switch-out that was a
//! preemption starts a wait, a blocking one starts a sleep, a switch-in starts running);
//! otherwise from the `schedstat` series: between two polls, Δcpu/Δt running and Δrunq/Δt
//! waiting, spread evenly. The page gets a bounded number of buckets per lane, whatever the
//! length of the recording, so an hour-long profile stays small and fast.

use std::collections::HashMap;

use cpuprof_model::{Ns, Profile, Switch, Thread, Tid};

/// At most this many buckets per lane.
pub const MAX_BUCKETS: usize = 2000;
/// At least this many (when there are very many threads).
pub const MIN_BUCKETS: usize = 200;
/// Budget of lane bytes (two bytes per bucket and thread) for profiles with many threads:
/// 1.5 M buckets in all, about 4 MB of base64.
const TOTAL_BUCKETS: usize = 1_500_000;
/// Finest bucket when switch records give exact intervals.
const SWITCH_RESOLUTION_NS: u64 = 1_000_000;
/// How far the running time seen in switch records may differ from the thread's `schedstat`
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
    /// A grid over the recording: buckets as fine as the data (one poll interval, or 1 ms with
    /// switch records), at most [`MAX_BUCKETS`], fewer (down to [`MIN_BUCKETS`]) when there are
    /// so many threads that the lanes would pass a few MB.
    pub fn for_profile(profile: &Profile) -> Grid {
        let wall = profile.meta.wall_ns.max(1);
        let res = if profile.switches.is_empty() {
            if profile.meta.interval_ns > 0 {
                profile.meta.interval_ns
            } else {
                DEFAULT_INTERVAL_NS
            }
        } else {
            SWITCH_RESOLUTION_NS
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

/// The switch records of each thread, in time order.
pub fn switches_by_thread(profile: &Profile) -> HashMap<Tid, Vec<Switch>> {
    let mut m: HashMap<Tid, Vec<Switch>> = HashMap::new();
    for s in &profile.switches {
        m.entry(s.tid).or_default().push(*s);
    }
    m
}

/// The lane of one thread.
pub fn lane(
    grid: &Grid,
    profile: &Profile,
    thread: &Thread,
    switches: Option<&Vec<Switch>>,
) -> Lane {
    let mut run = vec![0f32; grid.buckets];
    let mut wait = vec![0f32; grid.buckets];
    let end = thread.end_ns.unwrap_or(profile.meta.wall_ns) as f64;
    let mut source = LaneSource::Schedstat;
    if let Some(sw) = switches.filter(|sw| !sw.is_empty()) {
        let cpu = (!thread.points.is_empty()).then_some(thread.cpu_ns as f64);
        from_switches(grid, sw, thread.start_ns, end, cpu, &mut run, &mut wait);
        source = LaneSource::Switches;
        // Lost switch records leave a thread "running" or "asleep" for too long; when the
        // switches disagree with the thread's own CPU counter, trust the counter.
        let switch_cpu = run.iter().map(|&r| f64::from(r)).sum::<f64>() * grid.bucket_ns;
        if let Some(cpu) = cpu {
            if (switch_cpu - cpu).abs() > SWITCH_TOLERANCE * cpu + 0.02e9 {
                run.iter_mut().for_each(|x| *x = 0.0);
                wait.iter_mut().for_each(|x| *x = 0.0);
                source = LaneSource::Schedstat;
            }
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

#[derive(Clone, Copy, PartialEq)]
enum State {
    Running,
    Waiting,
    Sleeping,
}

fn from_switches(
    grid: &Grid,
    sw: &[Switch],
    start: Ns,
    end: f64,
    cpu_ns: Option<f64>,
    run: &mut [f32],
    wait: &mut [f32],
) {
    let state_after = |s: &Switch| match (s.out, s.preempted) {
        (false, _) => State::Running,
        (true, true) => State::Waiting,
        (true, false) => State::Sleeping,
    };
    let mut add = |state: State, t0: f64, t1: f64| match state {
        State::Running => grid.spread(run, t0, t1, t1 - t0),
        State::Waiting => grid.spread(wait, t0, t1, t1 - t0),
        State::Sleeping => {}
    };
    // Between the first and the last record the records say everything.
    let mut middle_running = 0.0;
    for w in sw.windows(2) {
        let (t0, t1) = (w[0].t as f64, w[1].t as f64);
        let st = state_after(&w[0]);
        if st == State::Running {
            middle_running += t1 - t0;
        }
        add(st, t0, t1);
    }
    // Before the first record (a switch-out: it was running) and after the last one (a
    // switch-in: running until it ended, unless the exit went unrecorded) the thread's own
    // CPU counter bounds how long it can have run: whatever it has left over the middle.
    let mut left = cpu_ns.map_or(f64::INFINITY, |c| (c - middle_running).max(0.0));
    let first = &sw[0];
    if first.out {
        let t1 = first.t as f64;
        let t0 = (start as f64).min(t1).max(t1 - left);
        left -= t1 - t0;
        add(State::Running, t0, t1);
    }
    let last = &sw[sw.len() - 1];
    let t0 = last.t as f64;
    match state_after(last) {
        State::Running => add(State::Running, t0, end.max(t0).min(t0 + left.max(0.0))),
        st => add(st, t0, end.max(t0)),
    }
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
        let span = interval.max(first.cpu_ns + first.runq_ns);
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
    use cpuprof_model::{Meta, Thread, ThreadPoint};

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
        let l = lane(&g, &p, &th, None);
        assert_eq!(l.source, LaneSource::Schedstat);
        let r: Vec<_> = l.run.iter().map(|x| (x * 100.0).round()).collect();
        let w: Vec<_> = l.wait.iter().map(|x| (x * 100.0).round()).collect();
        assert_eq!(r, vec![100.0, 50.0, 0.0, 0.0]);
        assert_eq!(w, vec![0.0, 50.0, 0.0, 0.0]);
    }

    #[test]
    fn switches_give_running_waiting_and_sleeping() {
        // 10 ms buckets (1 ms resolution, but wall 40 ms -> 40 buckets; use 4 for clarity).
        let g = Grid {
            buckets: 4,
            bucket_ns: 10.0 * MS as f64,
        };
        let p = profile(40 * MS, 0);
        let sw = |t, out, preempted| Switch {
            t: t * MS,
            pid: 1,
            tid: 1,
            out,
            preempted,
        };
        // Runs 0-10, preempted (waits) 10-15, runs 15-20, blocks 20-30, runs 30-40.
        let records = vec![
            sw(10, true, true),
            sw(15, false, false),
            sw(20, true, false),
            sw(30, false, false),
        ];
        let th = Thread::default();
        let l = lane(&g, &p, &th, Some(&records));
        assert_eq!(l.source, LaneSource::Switches);
        assert_eq!(l.run, vec![1.0, 0.5, 0.0, 1.0]);
        assert_eq!(l.wait, vec![0.0, 0.5, 0.0, 0.0]);
    }

    #[test]
    fn cpu_counter_bounds_the_unrecorded_tail() {
        let g = Grid {
            buckets: 4,
            bucket_ns: 10.0 * MS as f64,
        };
        let p = profile(40 * MS, 0);
        let sw = |t, out| Switch {
            t: t * MS,
            pid: 1,
            tid: 1,
            out,
            preempted: false,
        };
        // Runs until 10, sleeps 10-20, switched in at 20 and then exits unrecorded; schedstat
        // says 15 ms of CPU in all: the tail ran 5 ms, not until the end.
        let records = vec![sw(10, true), sw(20, false)];
        let th = Thread {
            cpu_ns: 15 * MS,
            points: vec![ThreadPoint {
                t: 30 * MS,
                cpu_ns: 15 * MS,
                ..Default::default()
            }],
            ..Default::default()
        };
        let l = lane(&g, &p, &th, Some(&records));
        assert_eq!(l.source, LaneSource::Switches);
        assert_eq!(l.run, vec![1.0, 0.0, 0.5, 0.0]);
        // Records that contradict the counter (30 ms running vs 5 ms): schedstat wins.
        let th = Thread {
            cpu_ns: 5 * MS,
            points: vec![ThreadPoint {
                t: 40 * MS,
                cpu_ns: 5 * MS,
                ..Default::default()
            }],
            ..Default::default()
        };
        let records = vec![sw(30, true)];
        let l = lane(&g, &p, &th, Some(&records));
        assert_eq!(l.source, LaneSource::Switches);
        let records = vec![sw(10, false), sw(39, true)];
        let l = lane(&g, &p, &th, Some(&records));
        assert_eq!(l.source, LaneSource::Schedstat);
    }
}
