//! `spin-wait`: CPU burned by pool threads busy-waiting in the runtime's wait loops.
//!
//! A sample whose innermost user frame is a wait loop ([`crate::waitloops`]) is CPU spent
//! waiting, not working. On an idle machine that is only wasted CPU; when cores are
//! contended it also takes a core another thread wanted. Needs stacks: with no samples this
//! rule says nothing rather than guess.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cpuprof_model::{Finding, Pid, Profile, Sample, Severity, StackId, Tid};

use crate::fixes;
use crate::oversubscription::Over;
use crate::runtimes::{self, Runtime};
use crate::Context;

/// Spinning must reach this share of all CPU: OpenBLAS workers spin ~0.1 s after every call
/// and callers wait a little in `exec_blas_async_wait` even in a healthy pool; a tenth of
/// the CPU is where it becomes the program's cost rather than the runtime's normal overhead.
pub const MIN_SPIN_SHARE: f64 = 0.10;
/// ...and at least this many CPU seconds (two OpenBLAS spin timeouts): less is not worth a
/// setting.
pub const MIN_SPIN_S: f64 = 0.2;

/// Spin samples among a selection of samples.
#[derive(Debug, Default, Clone)]
pub struct SpinStats {
    /// Samples looked at.
    pub samples: u64,
    /// Of which in a wait loop.
    pub spin: u64,
    /// CPU seconds in wait loops.
    pub spin_s: f64,
    /// Spin samples by runtime name.
    pub by_runtime: BTreeMap<&'static str, u64>,
    /// Processes that spun.
    pub pids: BTreeSet<Pid>,
    /// Threads that spun.
    pub tids: BTreeSet<Tid>,
}

/// CPU nanoseconds one sample stands for.
pub fn ns_per_sample(profile: &Profile) -> f64 {
    match profile.meta.sample_rate_hz {
        Some(hz) if hz > 0 => 1e9 / f64::from(hz),
        _ => profile.cpu().total_ns() as f64 / profile.samples.len().max(1) as f64,
    }
}

/// Counts wait-loop samples among the samples `keep` selects.
pub fn stats(cx: &Context, keep: impl Fn(&Sample) -> bool) -> SpinStats {
    let mut cache = HashMap::new();
    let mut st = SpinStats::default();
    for s in cx.profile.samples.iter().filter(|s| keep(s)) {
        st.samples += 1;
        if let Some(rt) = wait_runtime(cx, &mut cache, s) {
            st.spin += 1;
            *st.by_runtime.entry(rt.name).or_default() += 1;
            st.pids.insert(s.pid);
            st.tids.insert(s.tid);
        }
    }
    st.spin_s = st.spin as f64 * ns_per_sample(cx.profile) / 1e9;
    st
}

/// CPU seconds of the samples `keep` selects that are in the wait loops of the runtimes
/// `counts` accepts.
pub fn spin_s(
    cx: &Context,
    keep: impl Fn(&Sample) -> bool,
    counts: impl Fn(&Runtime) -> bool,
) -> f64 {
    let mut cache = HashMap::new();
    let n = cx
        .profile
        .samples
        .iter()
        .filter(|s| keep(s) && wait_runtime(cx, &mut cache, s).is_some_and(&counts))
        .count();
    n as f64 * ns_per_sample(cx.profile) / 1e9
}

/// The runtime whose wait loop a sample is in ([`crate::waitloops::WaitLoops::wait`]), memoised
/// per stack.
fn wait_runtime(
    cx: &Context,
    cache: &mut HashMap<StackId, Option<&'static Runtime>>,
    s: &Sample,
) -> Option<&'static Runtime> {
    let stack = s.stack?;
    *cache.entry(stack).or_insert_with(|| {
        cx.wait_loops
            .wait(&cx.profile.stacks, stack)
            .map(|w| w.runtime)
    })
}

/// Whether a sample's stack waits inside a call ([`crate::waitloops::Wait::in_call`]).
fn in_call(cx: &Context, s: &Sample) -> bool {
    s.stack.is_some_and(|stack| {
        cx.wait_loops
            .wait(&cx.profile.stacks, stack)
            .is_some_and(|w| w.in_call)
    })
}

/// CPU seconds of the spinning `keep` selects (in the loops of the runtimes `counts`
/// accepts) that delayed the program: all of it where a thread waits inside a call for its
/// partners' share — a caller of the pool (`worker` false), or a worker in a call's own
/// synchronisation ([`crate::waitloops::Wait::in_call`]): with the fix one thread does the whole
/// call — and a worker's wait for its next piece of work where it took a core another thread
/// wanted ([`contended_s`]).
pub fn delaying_s(
    cx: &Context,
    keep: impl Fn(&Sample) -> bool,
    worker: impl Fn(&Sample) -> bool,
    counts: impl Fn(&Runtime) -> bool,
) -> f64 {
    let waiting_in_call = |s: &Sample| !worker(s) || in_call(cx, s);
    spin_s(cx, |s| keep(s) && waiting_in_call(s), &counts)
        + contended_s(cx, |s| keep(s) && !waiting_in_call(s), &counts)
}

/// CPU seconds of the spinning `keep` selects, in the wait loops of the runtimes `counts`
/// accepts, that took a core another thread wanted: in each bin of the demand timeline, the
/// spin up to the demand beyond the budget (the threads that waited for a core then).
/// Spinning while cores are free delays nobody, and in a bin where one thread waited, at most
/// one thread's worth of spin could have gone to it.
pub fn contended_s(
    cx: &Context,
    keep: impl Fn(&Sample) -> bool,
    counts: impl Fn(&Runtime) -> bool,
) -> f64 {
    let d = &cx.demand;
    let bin_s = d.bin_ns as f64 / 1e9;
    let per_sample = ns_per_sample(cx.profile) / 1e9;
    let mut spin = vec![0.0; d.total.len()];
    let mut cache = HashMap::new();
    for s in cx.profile.samples.iter().filter(|s| keep(s)) {
        if !wait_runtime(cx, &mut cache, s).is_some_and(&counts) {
            continue;
        }
        if let Some(b) = spin.get_mut((s.t / d.bin_ns) as usize) {
            *b += per_sample;
        }
    }
    spin.iter()
        .zip(&d.total)
        .map(|(s, demand)| s.min((demand - cx.budget).max(0.0) * bin_s))
        .sum()
}

/// Checks for spinning.
pub fn check(cx: &Context, over: Option<&Over>) -> Option<Finding> {
    if cx.profile.samples.is_empty() {
        return None;
    }
    let st = stats(cx, |_| true);
    let cpu_s = (cx.profile.cpu().total_ns() as f64 / 1e9)
        .max(st.samples as f64 * ns_per_sample(cx.profile) / 1e9);
    let share = st.spin_s / cpu_s.max(1e-9);
    if share < MIN_SPIN_SHARE || st.spin_s < MIN_SPIN_S {
        return None;
    }
    let (rt_name, _) = st.by_runtime.iter().max_by_key(|(_, n)| **n)?;
    let rt = runtimes::ALL.iter().find(|r| r.name == *rt_name)?;
    // Wall cost: spinning only delays others while cores are contended.
    let contended_s = match over {
        Some(_) => contended_s(cx, |_| true, |_| true),
        None => 0.0,
    };
    let per_rt: Vec<String> = st
        .by_runtime
        .iter()
        .map(|(n, c)| format!("{n} {:.0}%", 100.0 * *c as f64 / st.spin.max(1) as f64))
        .collect();
    let detail = format!(
        "{:.2} s of CPU ({:.0}% of all {:.2} s) was spent in the runtime's wait loops \
         ({} of {} samples; {}) in {} thread{} of {} process{}{}",
        st.spin_s,
        100.0 * share,
        cpu_s,
        st.spin,
        st.samples,
        per_rt.join(", "),
        st.tids.len(),
        if st.tids.len() == 1 { "" } else { "s" },
        st.pids.len(),
        if st.pids.len() == 1 { "" } else { "es" },
        if contended_s > 0.0 {
            format!("; {contended_s:.2} s of it took a core another thread waited for")
        } else {
            String::new()
        }
    );
    Some(Finding {
        id: "spin-wait".into(),
        // Set from the estimated saving by `crate::analyze`.
        severity: Severity::Warning,
        title: format!(
            "{} threads spin-waiting: {:.0}% of the CPU ({:.1} s) buys nothing",
            rt.name,
            100.0 * share,
            st.spin_s
        ),
        detail,
        fix: fixes::stop_spinning(rt),
        setting: fixes::spin_setting(rt),
        est_saving_cpu_s: st.spin_s,
        est_saving_wall_s: contended_s / cx.budget,
        pids: st.pids.into_iter().collect(),
        tids: st.tids.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{add_samples, busy_thread, native, profile_with, with_library};

    const OB: &str = "/v/numpy.libs/libscipy_openblas64_-1.so";

    /// Process 10 on 2 cores: threads 10 and 11, busy all along, sampled at 100 Hz, with
    /// OpenBLAS mapped.
    fn two_threads() -> cpuprof_model::Profile {
        let mut p = profile_with(
            2,
            vec![(
                10,
                vec![
                    busy_thread(10, 1.0, 1.0, 0.0),
                    busy_thread(11, 1.0, 1.0, 0.0),
                ],
            )],
        );
        p.meta.sample_rate_hz = Some(100);
        with_library(&mut p, 10, OB);
        p
    }

    fn profile(spin: u64, work: u64) -> cpuprof_model::Profile {
        let mut p = two_threads();
        let start = native("start_thread", "/lib/libc.so.6");
        add_samples(
            &mut p,
            10,
            11,
            &[start.clone(), native("blas_thread_server", OB)],
            spin,
        );
        add_samples(
            &mut p,
            10,
            10,
            &[
                start,
                native("dgemm_", OB),
                native("dgemm_kernel_HASWELL", OB),
            ],
            work,
        );
        p
    }

    #[test]
    fn spinning_worker_is_found() {
        let p = profile(50, 150);
        let f = check(&Context::new(&p), None).expect("spin");
        assert_eq!(f.id, "spin-wait");
        assert!((f.est_saving_cpu_s - 0.5).abs() < 1e-6);
        assert_eq!(f.tids, vec![11]);
        assert!(f.fix.contains("OPENBLAS_THREAD_TIMEOUT"));
        assert_eq!(f.setting["OPENBLAS_NUM_THREADS"], "1");
        assert!(f.title.starts_with("OpenBLAS"));
        assert_eq!(f.severity, Severity::Warning);
    }

    #[test]
    fn only_spin_that_took_a_wanted_core_delays_anyone() {
        // 2 cores, 1 s. Thread 10 works, thread 11 spins (50 samples of 10 ms = 0.5 s).
        let spin_share = |third: Option<(f64, f64)>| {
            let mut p = profile(50, 150);
            // A third thread on CPU `cpu` and waiting `runq` of the time: demand 2 + both.
            if let Some((cpu, runq)) = third {
                p.processes[0].threads.push(busy_thread(12, 1.0, cpu, runq));
            }
            let cx = Context::new(&p);
            contended_s(&cx, |_| true, |_| true)
        };
        // Nobody else wants a core: the spin delayed nobody.
        assert!(spin_share(None).abs() < 1e-9);
        // A fifth of a thread more than the cores all along: at most a fifth of a core's spin
        // could go to it, 0.2 s of the 0.5 s.
        let some = spin_share(Some((0.05, 0.15)));
        assert!((some - 0.2).abs() < 0.03, "{some}");
        // More demand beyond the cores than spinning: all the spin counts.
        let all = spin_share(Some((0.1, 0.9)));
        assert!((all - 0.5).abs() < 0.03, "{all}");
        // A pool that is not the spinning runtime's gets none of it.
        let mut p = profile(50, 150);
        p.processes[0].threads.push(busy_thread(12, 1.0, 0.1, 0.9));
        let cx = Context::new(&p);
        assert_eq!(contended_s(&cx, |_| true, |r| r.name == "numexpr"), 0.0);
    }

    #[test]
    fn a_worker_waiting_inside_a_call_delays_the_program_without_contention() {
        // Thread 11 is the pool's worker; nobody else wants a core (2 threads, 2 cores).
        let delaying = |wait: &str| {
            let mut p = two_threads();
            let start = native("start_thread", "/lib/libc.so.6");
            add_samples(
                &mut p,
                10,
                11,
                &[start, native("blas_thread_server", OB), native(wait, OB)],
                50,
            );
            let cx = Context::new(&p);
            delaying_s(&cx, |_| true, |s| s.tid == 11, |_| true)
        };
        // Waiting in `inner_thread` for the partner's share of the call: all of it.
        assert!((delaying("inner_thread") - 0.5).abs() < 1e-6);
        // Polling for the next call with a core to spare: none of it.
        assert!(delaying("blas_thread_server").abs() < 1e-9);
    }

    #[test]
    fn a_blas_on_openmp_waits_in_the_openmp_barrier() {
        use crate::runtimes::{GNU_OPENMP, NUMEXPR, OPENBLAS, OPENBLAS_OPENMP};
        assert!(crate::waitloops::waits_for(&OPENBLAS, &OPENBLAS));
        assert!(crate::waitloops::waits_for(&OPENBLAS_OPENMP, &GNU_OPENMP));
        assert!(!crate::waitloops::waits_for(&NUMEXPR, &OPENBLAS));
        assert!(!crate::waitloops::waits_for(&GNU_OPENMP, &OPENBLAS));
    }

    #[test]
    fn kernels_are_work_and_no_samples_says_nothing() {
        assert!(check(&Context::new(&profile(5, 195)), None).is_none());
        let p = profile_with(2, vec![(10, vec![busy_thread(10, 1.0, 1.0, 0.0)])]);
        assert!(check(&Context::new(&p), None).is_none());
    }
}
