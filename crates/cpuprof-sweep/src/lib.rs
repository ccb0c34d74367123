//! `cpuprof sweep`: run a program under alternative thread-pool settings, measure each, and
//! recommend the setting that is really best on this machine.
//!
//! A first recording (stacks on) gives the analysis and the candidates ([`candidates`]); it is
//! also the warm-up of the program as it is. Each other candidate gets one warm-up run, then
//! the candidates alternate (A B C A B C ...), `runs` each, recorded with the procfs recorder
//! only (the cheapest mode), so that wall, CPU, run-queue wait and the findings of every run
//! are known. When a candidate's interval is still wide, more rounds follow, up to
//! `max_runs` or `max_time`. [`stats`] sums the runs up and picks the recommendation.
#![deny(missing_docs)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cpuprof_model::sweep::{
    setting_label, CheckedFinding, FailedRun, Recommended, Stat, Sweep, SweepCandidate,
    SWEEP_SCHEMA,
};
use cpuprof_model::Profile;
use cpuprof_session::{Options, Recording, Session, Target};

pub mod candidates;
pub mod stats;

use candidates::Candidate;

/// Rounds continue while some candidate's interval is wider than this share of its median...
pub const WIDE_SPREAD: f64 = 0.10;
/// ...or while the fastest candidate differs from the program as it is by more than this
/// share of its wall time without being beyond noise yet (2% is a quiet machine's noise).
pub const MIN_EFFECT: f64 = 0.03;

/// How to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// `--set VAR=a,b,c`: the candidates (else chosen from the first recording).
    pub sets: Vec<(String, Vec<String>)>,
    /// Measured runs per candidate.
    pub runs: usize,
    /// Most runs per candidate when the spread is wide.
    pub max_runs: usize,
    /// Stop starting runs after this long.
    pub max_time: Duration,
    /// Most candidates.
    pub max_candidates: usize,
    /// Poll interval of the procfs recorder.
    pub interval: Duration,
    /// Where each run's output goes.
    pub out_dir: PathBuf,
}

/// Where the sweep is, for a progress bar.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The candidate running (`as it is`, `OPENBLAS_NUM_THREADS=1`).
    pub candidate: String,
    /// Its run: 0 for the warm-up (or the first recording).
    pub run: usize,
    /// Runs each candidate gets.
    pub runs: usize,
    /// Runs finished, all candidates.
    pub done: usize,
    /// Runs planned, all candidates.
    pub total: usize,
    /// Estimated time left.
    pub left: Duration,
}

/// One run's figures.
#[derive(Debug, Clone)]
struct RunResult {
    round: usize,
    wall_s: f64,
    cpu_s: f64,
    runq_s: f64,
    findings: Vec<String>,
    failed: Option<(Option<i32>, Option<i32>)>,
}

/// Every candidate's runs so far.
struct Tally {
    cand: Candidate,
    runs: Vec<RunResult>,
    failed: Vec<FailedRun>,
    dir: PathBuf,
}

/// Runs the sweep. `progress` is called before each run; `interrupted` is asked after each
/// one (and while a run is going: an interrupted run is discarded).
pub fn sweep(
    command: &[OsString],
    opts: &SweepOptions,
    progress: &mut dyn FnMut(&Progress),
    interrupted: &dyn Fn() -> bool,
) -> Result<Sweep> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("cannot create {}", opts.out_dir.display()))?;
    // The first recording: the program as it is, with stacks, for the analysis.
    progress(&Progress {
        candidate: "as it is (first recording, with stacks)".into(),
        run: 0,
        runs: opts.runs,
        done: 0,
        total: 0,
        left: Duration::ZERO,
    });
    let base_dir = opts.out_dir.join("c0-as-it-is");
    let first = record(
        command,
        &Default::default(),
        &base_dir,
        0,
        true,
        opts,
        interrupted,
    )?;
    let first_rec = match first {
        Some(r) => r,
        None => bail!("interrupted during the first recording: nothing was measured"),
    };
    let meta = &first_rec.profile.meta;
    if meta.exit_code.unwrap_or(0) != 0 || meta.signal.is_some() {
        bail!(
            "the command fails as it is ({}): a sweep needs a program that succeeds; its output is in {}",
            match (meta.exit_code, meta.signal) {
                (_, Some(s)) => format!("killed by signal {s}"),
                (Some(c), None) => format!("exit code {c}"),
                _ => "failed".into(),
            },
            base_dir.display()
        );
    }
    let cands = if opts.sets.is_empty() {
        candidates::from_analysis(&first_rec.profile, &first_rec.analysis, opts.max_candidates)
    } else {
        candidates::from_sets(&opts.sets, opts.max_candidates)
    };
    let mut tallies: Vec<Tally> = cands
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let slug: String = setting_label(&c.setting)
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() {
                        ch.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            Tally {
                dir: opts.out_dir.join(format!("c{i}-{slug}")),
                cand: c,
                runs: Vec::new(),
                failed: Vec::new(),
            }
        })
        .collect();
    let first_run_s = first_rec.profile.meta.wall_ns as f64 / 1e9;
    let mut per_run = Duration::from_secs_f64(first_run_s.max(0.01));
    let mut stopped_early = false;
    let mut done = 0;
    let mut total = tallies.len() - 1 + opts.runs * tallies.len();
    let mut recorder_prev = first_rec
        .profile
        .meta
        .recorder_cpu
        .map(|c| c.total_ns())
        .unwrap_or(0);
    let mut recorder_per_run: Vec<f64> = Vec::new();
    let mut runs_total = 1;
    let mut target_wall_total_s = first_run_s;

    // Warm-ups (the program as it is had the first recording), then rounds.
    let mut schedule: Vec<(usize, usize)> = (1..tallies.len()).map(|i| (i, 0)).collect();
    for r in 1..=opts.runs {
        schedule.extend((0..tallies.len()).map(|i| (i, r)));
    }
    let mut round = opts.runs;
    let mut k = 0;
    while k < schedule.len() || {
        // More rounds while a candidate's interval is wide, within the limits.
        let wide = tallies.iter().any(|t| {
            let w: Vec<f64> = t.runs.iter().map(|r| r.wall_s).collect();
            w.len() >= 2 && stats::spread(&stats::summarize(&w)) > WIDE_SPREAD
        }) || {
            let m: Vec<stats::Measured> = tallies.iter().map(measured_of).collect();
            stats::undecided(&m, MIN_EFFECT)
        };
        let room = started.elapsed() + per_run * tallies.len() as u32 <= opts.max_time;
        if wide && room && round < opts.max_runs {
            round += 1;
            total += tallies.len();
            schedule.extend((0..tallies.len()).map(|i| (i, round)));
            true
        } else {
            false
        }
    } {
        let (i, run) = schedule[k];
        k += 1;
        if started.elapsed() >= opts.max_time || interrupted() {
            stopped_early = true;
            break;
        }
        progress(&Progress {
            candidate: setting_label(&tallies[i].cand.setting),
            run,
            runs: round,
            done,
            total,
            left: per_run * (total.saturating_sub(done)) as u32,
        });
        let t = &tallies[i];
        let rec = record(
            command,
            &t.cand.setting,
            &t.dir,
            run,
            false,
            opts,
            interrupted,
        )?;
        let Some(rec) = rec else {
            stopped_early = true;
            break;
        };
        done += 1;
        let r = run_result(&rec, run);
        runs_total += 1;
        target_wall_total_s += r.wall_s;
        let now = rec
            .profile
            .meta
            .recorder_cpu
            .map(|c| c.total_ns())
            .unwrap_or(0);
        recorder_per_run.push(now.saturating_sub(recorder_prev) as f64 / 1e9);
        recorder_prev = now;
        // A running mean of the run time for the time left.
        per_run = Duration::from_secs_f64(
            (per_run.as_secs_f64() * done as f64 + r.wall_s) / (done + 1) as f64,
        );
        let t = &mut tallies[i];
        if run == 0 {
            continue; // warm-up
        }
        if let Some((code, sig)) = r.failed {
            t.failed.push(FailedRun {
                run,
                exit_code: code,
                signal: sig,
            });
        }
        t.runs.push(r);
    }
    let mut s = summarize(
        command,
        &first_rec,
        tallies,
        stopped_early,
        started.elapsed(),
        stats::median(&recorder_per_run),
    );
    s.runs_total = runs_total;
    s.target_wall_total_s = target_wall_total_s;
    Ok(s)
}

/// One recording of the command with a setting; `None` when interrupted.
fn record(
    command: &[OsString],
    setting: &std::collections::BTreeMap<String, String>,
    dir: &std::path::Path,
    run: usize,
    stacks: bool,
    opts: &SweepOptions,
    interrupted: &dyn Fn() -> bool,
) -> Result<Option<Recording>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = if run == 0 {
        "warm-up".to_string()
    } else {
        format!("run-{run}")
    };
    let out = File::create(dir.join(format!("{name}.out")))?;
    let err = File::create(dir.join(format!("{name}.err")))?;
    let mut session_opts = Options {
        interval: opts.interval,
        env: setting
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect(),
        stdout: Some(out),
        stderr: Some(err),
        ..Options::default()
    };
    if !stacks {
        session_opts.perf = None;
        session_opts.python = None;
    }
    let mut s = Session::launch(Target::Command(command.to_vec()), session_opts)?;
    s.release()?;
    let mut was_interrupted = false;
    while !s.tick(Duration::from_millis(200)) {
        if interrupted() {
            was_interrupted = true;
            // The target's process group got the terminal's Ctrl-C; without a terminal it
            // did not: end it.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(s.pid() as i32, libc::SIGTERM) };
            s.stop();
        }
    }
    let rec = s.finish()?;
    Ok((!was_interrupted).then_some(rec))
}

fn run_result(rec: &Recording, round: usize) -> RunResult {
    let p: &Profile = &rec.profile;
    let failed = match (p.meta.exit_code, p.meta.signal) {
        (Some(0), None) | (None, None) => None,
        (c, s) => Some((c, s)),
    };
    RunResult {
        round,
        wall_s: p.meta.wall_ns as f64 / 1e9,
        cpu_s: p.cpu().total_ns() as f64 / 1e9,
        runq_s: p.runq_ns() as f64 / 1e9,
        findings: rec.analysis.findings.iter().map(|f| f.id.clone()).collect(),
        failed,
    }
}

/// A candidate's successful runs by round, for the choice rule.
fn measured_of(t: &Tally) -> stats::Measured {
    let ok = t.runs.iter().filter(|r| r.failed.is_none());
    stats::Measured {
        wall: ok.clone().map(|r| (r.round, r.wall_s)).collect(),
        cpu: ok.map(|r| (r.round, r.cpu_s)).collect(),
    }
}

fn stat_of(runs: &[&RunResult], f: impl Fn(&RunResult) -> f64) -> Stat {
    let xs: Vec<f64> = runs.iter().map(|r| f(r)).collect();
    stats::summarize(&xs)
}

fn summarize(
    command: &[OsString],
    first: &Recording,
    tallies: Vec<Tally>,
    stopped_early: bool,
    elapsed: Duration,
    recorder_cpu_per_run_s: f64,
) -> Sweep {
    let mut measured = Vec::new();
    let mut out = Vec::new();
    for t in &tallies {
        let ok: Vec<&RunResult> = t.runs.iter().filter(|r| r.failed.is_none()).collect();
        let m = measured_of(t);
        let findings: BTreeSet<String> = t.runs.iter().flat_map(|r| r.findings.clone()).collect();
        out.push(SweepCandidate {
            setting: t.cand.setting.clone(),
            origin: t.cand.origin.clone(),
            runs: t.runs.len(),
            run_wall_s: ok.iter().map(|r| r.wall_s).collect(),
            failed: t.failed.len(),
            failed_runs: t.failed.clone(),
            wall_s: stat_of(&ok, |r| r.wall_s),
            cpu_s: stat_of(&ok, |r| r.cpu_s),
            runq_wait_s: stat_of(&ok, |r| r.runq_s),
            wall_ratio: None,
            findings: findings.into_iter().collect(),
            output: t.dir.display().to_string(),
        });
        measured.push(m);
    }
    let base_wall = out
        .first()
        .filter(|c| c.runs > c.failed)
        .map(|c| c.wall_s.median);
    for c in &mut out {
        c.wall_ratio = base_wall
            .filter(|b| *b > 0.0 && c.wall_s.median.is_finite())
            .map(|b| c.wall_s.median / b);
    }
    let recommended = stats::choose(&measured).map(|(i, reason)| {
        let (base, m) = (&out[0], &out[i]);
        Recommended {
            setting: out[i].setting.clone(),
            saving_wall_s: base.wall_s.median - m.wall_s.median,
            saving_cpu_s: base.cpu_s.median - m.cpu_s.median,
            reason: match reason {
                stats::Reason::Fastest => "fastest, beyond the noise of the program as it is",
                stats::Reason::LeastCpu => {
                    "least CPU among the settings within noise of the fastest"
                }
                stats::Reason::KeepDefault => {
                    "nothing beats the program as it is beyond noise: keep it"
                }
            }
            .into(),
            python: python_code(first, &out[i].setting),
        }
    });
    let analysis = first
        .analysis
        .findings
        .iter()
        .map(|f| CheckedFinding {
            id: f.id.clone(),
            title: f.title.clone(),
            setting: f.setting.clone(),
            est_saving_wall_s: f.est_saving_wall_s,
            measured_saving_wall_s: out
                .iter()
                .zip(&measured)
                .find(|(c, m)| !f.setting.is_empty() && c.setting == f.setting && !m.failed())
                .zip(base_wall)
                .map(|((c, _), b)| b - c.wall_s.median),
        })
        .collect();
    let recorded = &first.profile.meta.command;
    Sweep {
        schema: SWEEP_SCHEMA.into(),
        command: if recorded.is_empty() {
            command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        } else {
            recorded.clone()
        },
        cpu_budget: first.profile.machine.cpu_budget(),
        candidates: out,
        recommended,
        analysis,
        stopped_early,
        elapsed_s: elapsed.as_secs_f64(),
        recorder_cpu_per_run_s,
        runs_total: 0,
        target_wall_total_s: 0.0,
    }
}

/// For a Python program, the setting in code: first thing in the script, before the imports
/// that start the pools.
fn python_code(
    first: &Recording,
    setting: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let python = first
        .profile
        .processes
        .first()
        .is_some_and(cpuprof_analysis::roles::is_python);
    if !python || setting.is_empty() {
        return None;
    }
    let mut s = String::from("import os  # first thing in the script, before numpy and friends\n");
    for (k, v) in setting {
        s.push_str(&format!("os.environ[\"{k}\"] = \"{v}\"\n"));
    }
    Some(s)
}
