//! Small hand-built profiles for the unit tests of the rules.

use cpuprof_model::{
    Frame, FrameKind, Machine, Meta, Process, Profile, Sample, Thread, ThreadPoint,
};

/// Poll interval of the test profiles.
pub const INTERVAL: u64 = 100_000_000;

/// A thread polled every 100 ms for `secs` seconds, on CPU `cpu` of the time and waiting
/// for a core `runq` of the time.
pub fn busy_thread(tid: u32, secs: f64, cpu: f64, runq: f64) -> Thread {
    let n = (secs * 1e9 / INTERVAL as f64).round() as u64;
    let points: Vec<ThreadPoint> = (0..=n)
        .map(|i| ThreadPoint {
            t: i * INTERVAL,
            cpu_ns: (i as f64 * INTERVAL as f64 * cpu) as u64,
            runq_ns: (i as f64 * INTERVAL as f64 * runq) as u64,
            user_ns: (i as f64 * INTERVAL as f64 * cpu) as u64,
            ..Default::default()
        })
        .collect();
    let last = *points.last().unwrap_or(&ThreadPoint::default());
    Thread {
        tid,
        name: "t".into(),
        cpu_ns: last.cpu_ns,
        runq_ns: last.runq_ns,
        user_ns: last.user_ns,
        points,
        ..Default::default()
    }
}

/// A profile on `cores` cores with these processes (pid, threads); ppid 1, no libraries.
pub fn profile_with(cores: u32, procs: Vec<(u32, Vec<Thread>)>) -> Profile {
    let mut wall = 0;
    let processes = procs
        .into_iter()
        .map(|(pid, threads)| {
            let cpu: u64 = threads.iter().map(|t| t.cpu_ns).sum();
            for t in &threads {
                wall = wall.max(t.points.last().map(|p| p.t).unwrap_or(0));
            }
            Process {
                pid,
                ppid: 1,
                command: vec!["prog".into()],
                cpu: cpuprof_model::CpuTimes {
                    user_ns: cpu,
                    sys_ns: 0,
                },
                runq_ns: threads.iter().map(|t| t.runq_ns).sum(),
                threads,
                ..Default::default()
            }
        })
        .collect();
    Profile {
        meta: Meta {
            interval_ns: INTERVAL,
            wall_ns: wall,
            ..Meta::new(vec!["prog".into()])
        },
        machine: Machine {
            online_cpus: cores,
            affinity_cpus: cores,
            ..Default::default()
        },
        processes,
        ..Default::default()
    }
}

/// Gives a process a library (and so a runtime).
pub fn with_library(p: &mut Profile, pid: u32, lib: &str) {
    if let Some(proc_) = p.processes.iter_mut().find(|x| x.pid == pid) {
        proc_.libraries.push(lib.into());
    }
}

/// A native frame.
pub fn native(name: &str, module: &str) -> Frame {
    Frame {
        kind: FrameKind::Native,
        name: name.into(),
        module: Some(module.into()),
        line: None,
        short_file: None,
    }
}

/// A Python frame.
pub fn py(name: &str, file: &str) -> Frame {
    Frame {
        kind: FrameKind::Python,
        name: name.into(),
        module: Some(file.into()),
        line: Some(1),
        short_file: None,
    }
}

/// Adds `n` samples of one stack for a thread, spread over the first second.
pub fn add_samples(p: &mut Profile, pid: u32, tid: u32, frames: &[Frame], n: u64) {
    let ids: Vec<_> = frames
        .iter()
        .map(|f| p.stacks.intern_frame(f.clone()))
        .collect();
    let stack = p.stacks.intern_stack(&ids);
    for i in 0..n {
        p.samples.push(Sample {
            t: i * 1_000_000_000 / n.max(1),
            pid,
            tid,
            stack,
        });
    }
    p.samples.sort_by_key(|s| s.t);
}
