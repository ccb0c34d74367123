//! `cpu-quota`: pools sized from the host's cores inside a cgroup CPU quota.
//!
//! OpenBLAS, MKL and OpenMP size their pools from the CPUs in the affinity mask and never
//! look at the cgroup's `cpu.max` / `cfs_quota_us`, so in a container limited to fewer CPUs
//! than the host has, every process starts a pool the quota cannot run. The kernel then
//! throttles the group: all its threads stop until the next period.

use cpuprof_model::{Finding, Severity};

use crate::fixes;
use crate::oversubscription::{Over, OVER_FACTOR};
use crate::roles::is_python;
use crate::Context;

/// Throttled periods below this share are noise (one burst at start-up).
pub const MIN_THROTTLED_SHARE: f64 = 0.05;

/// Checks for pools wider than the quota.
pub fn check(cx: &Context, over: Option<&Over>) -> Option<Finding> {
    let m = &cx.profile.machine;
    let q = m.quota_cpus()?;
    let mut host = f64::from(m.online_cpus.max(1));
    if m.affinity_cpus > 0 {
        host = host.min(f64::from(m.affinity_cpus));
    }
    if q >= host {
        return None;
    }
    // Processes whose pool is wider than the quota allows.
    let mut wide = Vec::new();
    for p in &cx.profile.processes {
        let Some(rt) = cx.pool_runtime(p.pid) else {
            continue;
        };
        let workers = cx.workers_of(p.pid, rt);
        let size = cx.at_once(p.pid, &workers) + usize::from(rt.caller_works());
        if size as f64 > q * OVER_FACTOR && size > 1 {
            wide.push((p, rt, size, workers));
        }
    }
    if wide.is_empty() {
        return None;
    }
    let cg = m.cgroup.as_ref()?;
    let throttled = match (cg.throttling_start, cg.throttling_end) {
        (Some(a), Some(b)) => Some((
            b.nr_periods.saturating_sub(a.nr_periods),
            b.nr_throttled.saturating_sub(a.nr_throttled),
            b.throttled_ns.saturating_sub(a.throttled_ns),
        )),
        (None, Some(b)) => Some((b.nr_periods, b.nr_throttled, b.throttled_ns)),
        _ => None,
    };
    let throttled_share = throttled
        .map(|(p, t, _)| t as f64 / p.max(1) as f64)
        .unwrap_or(0.0);
    if throttled_share < MIN_THROTTLED_SHARE && over.is_none() {
        return None;
    }
    let (_, rt, size, _) = &wide[0];
    let size = *size;
    let k = fixes::threads_per_process(q, wide.len());
    let python = wide.iter().any(|(p, ..)| is_python(p));
    let mut detail = format!(
        "{} process{} run{} a pool of {size} {} threads (sized from the host's {}) while the \
         cgroup {} (v{}) allows {q:.2} CPUs",
        wide.len(),
        if wide.len() == 1 { "" } else { "es" },
        if wide.len() == 1 { "s" } else { "" },
        rt.name,
        fixes::cores(host),
        cg.path,
        cg.version,
    );
    if let Some((periods, thr, ns)) = throttled {
        detail.push_str(&format!(
            "; throttled in {thr} of {periods} periods ({:.0}%), {:.2} s in total",
            100.0 * throttled_share,
            ns as f64 / 1e9
        ));
    }
    detail.push('.');
    // Throttled threads are off the run queue, so the demand may not show the contention:
    // without it, the pools' waste is modelled as for oversubscription (docs/findings.md).
    let (cpu_s, wall_s) = over
        .map(|o| (o.waste_cpu_s, o.finding.est_saving_wall_s))
        .unwrap_or_else(|| {
            let cpu: f64 = wide
                .iter()
                .map(|(p, ..)| p.cpu.total_ns() as f64 / 1e9)
                .sum();
            let waste =
                crate::oversubscription::NO_STACKS_WASTE * (1.0 - q / size as f64).max(0.0) * cpu;
            (waste, waste / q.max(0.05))
        });
    Some(Finding {
        id: "cpu-quota".into(),
        // Set from the estimated saving by `crate::analyze`.
        severity: Severity::Warning,
        title: format!(
            "{} pools sized for {} in a {q:.2}-CPU cgroup quota",
            rt.name,
            fixes::cores(host)
        ),
        detail,
        fix: fixes::limit_pool(rt, k, python),
        setting: fixes::pool_setting(rt, k),
        est_saving_cpu_s: cpu_s,
        est_saving_wall_s: wall_s,
        pids: wide.iter().map(|(p, ..)| p.pid).collect(),
        tids: wide.iter().flat_map(|(_, _, _, w)| w.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{busy_thread, profile_with, with_library};
    use cpuprof_model::{CgroupInfo, Throttling};

    fn profile(quota: Option<f64>, throttled: u64) -> cpuprof_model::Profile {
        let mut th = vec![
            busy_thread(10, 2.0, 0.25, 0.75),
            busy_thread(11, 2.0, 0.25, 0.75),
        ];
        th[0].name = "m".into();
        th[1].name = "m".into();
        let mut p = profile_with(2, vec![(10, th)]);
        with_library(&mut p, 10, "/usr/lib/libopenblas.so.0");
        p.machine.cgroup = Some(CgroupInfo {
            version: 1,
            path: "/cpuprof-test".into(),
            quota_cpus: quota,
            throttling_start: Some(Throttling::default()),
            throttling_end: Some(Throttling {
                nr_periods: 20,
                nr_throttled: throttled,
                throttled_ns: throttled * 50_000_000,
            }),
        });
        p
    }

    #[test]
    fn pool_wider_than_quota_is_found() {
        let p = profile(Some(0.5), 19);
        let f = crate::analyze(&p);
        let q = f
            .findings
            .iter()
            .find(|f| f.id == "cpu-quota")
            .expect("quota");
        assert!(q.detail.contains("19 of 20 periods"), "{}", q.detail);
        assert!(q.fix.starts_with("OPENBLAS_NUM_THREADS=1"));
        assert_eq!(q.tids, vec![11]);
    }

    #[test]
    fn no_quota_or_loose_quota_says_nothing() {
        let cx_none = profile(None, 0);
        assert!(check(&Context::new(&cx_none), None).is_none());
        let loose = profile(Some(4.0), 0);
        assert!(check(&Context::new(&loose), None).is_none());
        // A tight quota but nothing throttled and no oversubscription (pool idle).
        let idle = profile(Some(0.5), 0);
        assert!(check(&Context::new(&idle), None).is_none());
    }
}
