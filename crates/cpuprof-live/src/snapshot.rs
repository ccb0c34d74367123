//! One refresh of the live view: the machine and every watched process in the last window,
//! with the analysis's findings. Its JSON is `cpuprof top --once --json` (docs/top.md,
//! schema `cpuprof-top/1`); the terminal view and the agent's metrics render it.

use serde::{Deserialize, Serialize};

use cpuprof_model::{Analysis, Pid, Process, Profile, RunState, Thread, Tid};

/// The schema name of [`Snapshot`]'s JSON.
pub const SCHEMA: &str = "cpuprof-top/1";

/// One refresh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SCHEMA`].
    pub schema: String,
    /// When the window ended, ms since the Unix epoch.
    pub time_unix_ms: u64,
    /// Length of the window the figures are over, s.
    pub window_s: f64,
    /// The machine.
    pub machine: MachineRow,
    /// Every watched process alive in the window, most CPU first.
    pub processes: Vec<ProcessRow>,
    /// Why some processes show less than others (unprivileged), if they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<String>,
    /// The recording's notices (perf refused, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// The machine in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineRow {
    /// Cores the watched processes may use together (online CPUs, affinity, the watched
    /// cgroup's quota).
    pub budget_cores: f64,
    /// Online CPUs.
    pub online_cpus: u32,
    /// Cores busy with anything (`/proc/stat`), averaged over the window.
    pub cores_busy: f64,
    /// CPU pressure: the share of the last 10 s in which some task waited for a core, % (PSI
    /// `some avg10`); `None` without PSI.
    pub psi_some: Option<f64>,
    /// Processes shown.
    pub processes: usize,
}

/// One process in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRow {
    /// Process id.
    pub pid: Pid,
    /// Parent.
    pub ppid: Pid,
    /// Its main thread's name (`comm`).
    pub name: String,
    /// Command line.
    pub command: Vec<String>,
    /// Its CPU cgroup's path (`""` when unknown).
    #[serde(default)]
    pub cgroup: String,
    /// Cores used, averaged over the window.
    pub cpu_cores: f64,
    /// Cores it may use: online CPUs, its affinity and its cgroup's quota.
    pub budget_cores: f64,
    /// Run-queue wait as a share of its runnable time (wait / (wait + CPU)).
    pub runq_wait_share: f64,
    /// Its threads at the latest poll.
    pub threads: ThreadCounts,
    /// Its thread pools (runtimes with threads).
    pub pools: Vec<PoolRow>,
    /// What the analysis found involving it in the window.
    pub findings: Vec<FindingRow>,
    /// Its threads, most CPU first.
    pub thread_list: Vec<ThreadRow>,
    /// The functions its stack samples were in over the window, most first (`--stacks`
    /// only; at most [`TOP_FUNCTIONS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_functions: Vec<FunctionRow>,
}

/// How many functions a row's `top_functions` lists.
pub const TOP_FUNCTIONS: usize = 8;
/// ...and the least share of the process's samples one needs to be listed.
pub const MIN_FUNCTION_SHARE: f64 = 0.01;

/// A function and its share of a process's stack samples (where the sampled thread was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRow {
    /// The function, with its library or file (`dgemm_kernel (libopenblas.so.0)`).
    pub name: String,
    /// Share of the process's samples in the window with it as the innermost frame.
    pub share: f64,
}

/// Threads by state at the latest poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCounts {
    /// On a core (runnable, and ran more than it waited since the poll before).
    pub running: u32,
    /// Runnable but waiting for a core (waited more than it ran since the poll before).
    pub runnable: u32,
    /// Anything else: sleeping, blocked on I/O, stopped.
    pub sleeping: u32,
}

/// A pool in a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRow {
    /// The runtime (`OpenBLAS`, `GNU OpenMP`, `Rayon (polars)`, ...).
    pub runtime: String,
    /// Its threads: its workers, and the calling thread where the runtime makes the caller
    /// work too (BLAS, OpenMP: a pool of n has n - 1 workers), as the findings count them.
    pub threads: usize,
    /// Its worker threads.
    pub workers: usize,
    /// Workers that used at least [`BUSY_CORES`] of a core over the window: 0 is a pool
    /// that sits idle (loaded, not used now).
    pub busy_workers: usize,
}

/// A worker busier than this share of a core over the window counts as working.
pub const BUSY_CORES: f64 = 0.05;

/// A finding, as the report states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRow {
    /// `oversubscription`, `spin-wait`, `cpu-quota`, ...
    pub id: String,
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// One line.
    pub title: String,
    /// The evidence.
    pub detail: String,
    /// The fix.
    pub fix: String,
    /// Estimated wall time the fix saves over the window, s.
    pub est_saving_wall_s: f64,
    /// Estimated CPU the fix saves over the window, s.
    pub est_saving_cpu_s: f64,
}

/// One thread in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadRow {
    /// Thread id.
    pub tid: Tid,
    /// Name.
    pub name: String,
    /// Its role (`main`, `python`, `blas-worker`, ...).
    pub role: String,
    /// The runtime whose pool it belongs to.
    pub runtime: Option<String>,
    /// Cores used, averaged over the window.
    pub cpu_cores: f64,
    /// Run-queue wait as a share of its runnable time.
    pub runq_wait_share: f64,
    /// `running`, `runnable` or `sleeping` at the latest poll.
    pub state: String,
}

/// What a row needs beyond the window: its budget.
pub trait Budgets {
    /// Cores `pid` may use.
    fn budget_cores(&self, pid: Pid) -> f64;
}

/// Figures of the machine measured beside the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineFigures {
    /// Cores busy over the window.
    pub cores_busy: f64,
    /// PSI `some avg10`.
    pub psi_some: Option<f64>,
}

fn share(wait: u64, cpu: u64) -> f64 {
    match wait + cpu {
        0 => 0.0,
        n => wait as f64 / n as f64,
    }
}

/// A thread's state at the latest poll: runnable threads are split by what they did since
/// the poll before (procfs says `R` for both).
fn state(t: &Thread) -> &'static str {
    let n = t.points.len();
    let Some(last) = t.points.last() else {
        return "sleeping";
    };
    if t.end_ns.is_some() || last.state != RunState::Runnable {
        return "sleeping";
    }
    match n {
        0 | 1 => "running",
        _ => {
            let prev = t.points[n - 2];
            let ran = last.cpu_ns.saturating_sub(prev.cpu_ns);
            let waited = last.runq_ns.saturating_sub(prev.runq_ns);
            if waited > ran {
                "runnable"
            } else {
                "running"
            }
        }
    }
}

/// The rows of `window` (one group of processes analysed together as `analysis`) added to
/// `into`.
pub fn add_rows(
    into: &mut Vec<ProcessRow>,
    window: &Profile,
    analysis: &Analysis,
    budgets: &dyn Budgets,
) {
    let wall = (window.meta.wall_ns as f64 / 1e9).max(1e-9);
    let mut leaves: std::collections::HashMap<Pid, std::collections::HashMap<u32, u64>> =
        Default::default();
    for s in &window.samples {
        if let Some(stack) = s.stack {
            let leaf = window.stacks.nodes[stack as usize].1;
            *leaves.entry(s.pid).or_default().entry(leaf).or_default() += 1;
        }
    }
    for p in &window.processes {
        // Ended in the window, or seen starting but none of its threads read yet: not a
        // process to show.
        if p.end_ns.is_some() || p.threads.iter().all(|t| t.end_ns.is_some()) {
            continue;
        }
        let mut r = row(p, wall, analysis, budgets);
        if let Some(counts) = leaves.get(&p.pid) {
            let total: u64 = counts.values().sum();
            let mut top: Vec<(&u32, &u64)> = counts.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            r.top_functions = top
                .into_iter()
                .take(TOP_FUNCTIONS)
                .filter(|(_, n)| **n as f64 >= total as f64 * MIN_FUNCTION_SHARE)
                .map(|(frame, n)| FunctionRow {
                    name: window.stacks.frame(*frame).label(),
                    share: *n as f64 / total as f64,
                })
                .collect();
        }
        into.push(r);
    }
}

fn row(p: &Process, wall: f64, analysis: &Analysis, budgets: &dyn Budgets) -> ProcessRow {
    let mut threads = ThreadCounts::default();
    let mut thread_list: Vec<ThreadRow> = p
        .threads
        .iter()
        .filter(|t| t.end_ns.is_none())
        .map(|t| {
            let st = state(t);
            match st {
                "running" => threads.running += 1,
                "runnable" => threads.runnable += 1,
                _ => threads.sleeping += 1,
            }
            let class = analysis.threads.get(&t.tid);
            ThreadRow {
                tid: t.tid,
                name: t.name.clone(),
                role: class.map_or("other", |c| c.role.as_str()).to_string(),
                runtime: class.and_then(|c| c.runtime.clone()),
                cpu_cores: t.cpu_ns as f64 / 1e9 / wall,
                runq_wait_share: share(t.runq_ns, t.cpu_ns),
                state: st.to_string(),
            }
        })
        .collect();
    thread_list.sort_by(|a, b| b.cpu_cores.total_cmp(&a.cpu_cores).then(a.tid.cmp(&b.tid)));
    let pools = analysis
        .runtimes
        .iter()
        .filter(|r| r.pid == p.pid && !r.threads.is_empty())
        .map(|r| {
            let caller =
                cpuprof_analysis::runtimes::by_name(&r.name).is_some_and(|rt| rt.caller_works());
            let busy = r
                .threads
                .iter()
                .filter_map(|tid| p.thread(*tid))
                .filter(|t| t.cpu_ns as f64 / 1e9 / wall >= BUSY_CORES)
                .count();
            PoolRow {
                runtime: r.name.clone(),
                threads: r.threads.len() + usize::from(caller),
                workers: r.threads.len(),
                busy_workers: busy,
            }
        })
        .collect();
    let findings = analysis
        .findings
        .iter()
        .filter(|f| f.pids.contains(&p.pid))
        .map(|f| FindingRow {
            id: f.id.clone(),
            severity: f.severity.as_str().to_string(),
            title: f.title.clone(),
            detail: f.detail.clone(),
            fix: f.fix.clone(),
            est_saving_wall_s: f.est_saving_wall_s,
            est_saving_cpu_s: f.est_saving_cpu_s,
        })
        .collect();
    ProcessRow {
        pid: p.pid,
        ppid: p.ppid,
        name: p
            .thread(p.pid)
            .or(p.threads.first())
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        command: p.command.clone(),
        cgroup: String::new(),
        cpu_cores: p.cpu_ns() as f64 / 1e9 / wall,
        budget_cores: budgets.budget_cores(p.pid),
        runq_wait_share: share(p.runq_ns, p.cpu_ns()),
        threads,
        pools,
        findings,
        thread_list,
        top_functions: Vec::new(),
    }
}

/// Puts the rows in order (most CPU first) and fills the machine's header.
pub fn finish(
    mut processes: Vec<ProcessRow>,
    window: &Profile,
    figures: MachineFigures,
) -> Snapshot {
    processes.sort_by(|a, b| b.cpu_cores.total_cmp(&a.cpu_cores).then(a.pid.cmp(&b.pid)));
    Snapshot {
        schema: SCHEMA.to_string(),
        time_unix_ms: window.meta.start_unix_ms + window.meta.wall_ns / 1_000_000,
        window_s: window.meta.wall_ns as f64 / 1e9,
        machine: MachineRow {
            budget_cores: window.machine.cpu_budget(),
            online_cpus: window.machine.online_cpus,
            cores_busy: figures.cores_busy,
            psi_some: figures.psi_some,
            processes: processes.len(),
        },
        processes,
        hidden: None,
        notices: window.notices.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpuprof_model::{Finding, Severity, ThreadClass, ThreadPoint, ThreadRole};

    struct Two;
    impl Budgets for Two {
        fn budget_cores(&self, _: Pid) -> f64 {
            2.0
        }
    }

    fn pt(t: u64, cpu: u64, runq: u64, state: RunState) -> ThreadPoint {
        ThreadPoint {
            t,
            cpu_ns: cpu,
            runq_ns: runq,
            state,
            ..Default::default()
        }
    }

    #[test]
    fn rows_count_states_and_carry_findings() {
        let mut w = Profile::default();
        w.meta.wall_ns = 2_000_000_000;
        let t = |tid, a: ThreadPoint, b: ThreadPoint| Thread {
            tid,
            name: format!("t{tid}"),
            points: vec![a, b],
            cpu_ns: b.cpu_ns,
            runq_ns: b.runq_ns,
            ..Default::default()
        };
        let r = RunState::Runnable;
        w.processes.push(Process {
            pid: 10,
            threads: vec![
                t(
                    10,
                    pt(0, 0, 0, r),
                    pt(1_000_000_000, 900_000_000, 100_000_000, r),
                ),
                t(
                    11,
                    pt(0, 0, 0, r),
                    pt(1_000_000_000, 300_000_000, 700_000_000, r),
                ),
                t(
                    12,
                    pt(0, 0, 0, r),
                    pt(1_000_000_000, 0, 0, RunState::Sleeping),
                ),
            ],
            cpu: cpuprof_model::CpuTimes {
                user_ns: 1_200_000_000,
                sys_ns: 0,
            },
            runq_ns: 800_000_000,
            ..Default::default()
        });
        let mut a = Analysis::default();
        a.threads.insert(
            11,
            ThreadClass {
                role: ThreadRole::BlasWorker,
                runtime: Some("OpenBLAS".into()),
            },
        );
        a.findings.push(Finding {
            id: "oversubscription".into(),
            severity: Severity::Error,
            title: "t".into(),
            detail: "d".into(),
            fix: "f".into(),
            setting: Default::default(),
            est_saving_cpu_s: 0.0,
            est_saving_wall_s: 0.5,
            pids: vec![10],
            tids: vec![],
        });
        let mut rows = Vec::new();
        add_rows(&mut rows, &w, &a, &Two);
        let s = finish(rows, &w, MachineFigures::default());
        let p = &s.processes[0];
        assert_eq!(
            p.threads,
            ThreadCounts {
                running: 1,
                runnable: 1,
                sleeping: 1
            }
        );
        assert!((p.cpu_cores - 0.6).abs() < 1e-9);
        assert!((p.runq_wait_share - 0.4).abs() < 1e-9);
        assert_eq!(p.findings[0].id, "oversubscription");
        assert_eq!(p.thread_list[1].runtime.as_deref(), Some("OpenBLAS"));
        assert_eq!(p.thread_list[1].state, "runnable");
        assert_eq!(s.schema, SCHEMA);
    }
}
