//! Synthetic profiles of any length and width, for measuring the report on sizes no quick
//! recording reaches (an hour, a hundred threads) and for rendering tests without a target.
//!
//! The shape imitates an oversubscribed pool: processes of one Python main thread and BLAS
//! workers on a 2-core machine, phases of work and idle, stacks through the interpreter into
//! OpenBLAS kernels and wait loops. Deterministic (a fixed pseudo-random sequence).

use cpuprof_model::{
    Analysis, Event, Finding, Frame, FrameKind, Machine, Meta, Profile, ProfileBuilder, Sample,
    Severity, StackId, ThreadClass, ThreadPoint, ThreadRole,
};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Length, seconds.
    pub seconds: u64,
    /// Processes.
    pub processes: u32,
    /// Threads per process (the first is the Python main thread).
    pub threads_per_process: u32,
    /// procfs polling interval, ms.
    pub interval_ms: u64,
    /// perf sampling rate, Hz per busy core.
    pub rate_hz: u32,
}

impl Default for Shape {
    /// One hour, 4 processes × 25 threads, 50 ms polls, 1000 Hz.
    fn default() -> Self {
        Shape {
            seconds: 3600,
            processes: 4,
            threads_per_process: 25,
            interval_ms: 50,
            rate_hz: 1000,
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn frame(kind: FrameKind, name: &str, module: &str, line: Option<u32>) -> Frame {
    Frame {
        kind,
        name: name.into(),
        module: Some(module.into()),
        line,
        short_file: None,
    }
}

const MS: u64 = 1_000_000;

/// A profile of `shape` and a matching analysis (one oversubscription finding, roles set).
pub fn profile(shape: Shape) -> (Profile, Analysis) {
    let machine = Machine {
        online_cpus: 2,
        affinity_cpus: 2,
        kernel: "6.1.0".into(),
        cpu_model: "synthetic".into(),
        ..Default::default()
    };
    let mut meta = Meta::new(vec!["python".into(), "pool.py".into()]);
    meta.pid = 1000;
    meta.interval_ns = shape.interval_ms * MS;
    meta.sample_rate_hz = Some(shape.rate_hz);
    let mut b = ProfileBuilder::new(meta, machine, 0);
    let mut rng = Rng(42);
    let wall = shape.seconds * 1000 * MS;
    let interval = shape.interval_ms.max(1) * MS;
    let nthreads = (shape.processes * shape.threads_per_process).max(1) as u64;
    let mut analysis = Analysis::default();
    for pi in 0..shape.processes {
        let pid = 1000 + pi * 100;
        b.handle(Event::ProcessStart {
            t: 0,
            pid,
            ppid: if pi == 0 { 1 } else { 1000 },
            command: vec!["python".into(), "pool.py".into(), format!("--worker={pi}")],
            exe: Some("/usr/bin/python3.11".into()),
        });
        for ti in 0..shape.threads_per_process {
            let tid = pid + ti;
            analysis.threads.insert(
                tid,
                if ti == 0 {
                    ThreadClass {
                        role: ThreadRole::Python,
                        runtime: None,
                    }
                } else {
                    ThreadClass {
                        role: ThreadRole::BlasWorker,
                        runtime: Some("OpenBLAS".into()),
                    }
                },
            );
        }
    }
    // Polls: every thread alternates phases of work and idle; when working it gets its share
    // of the 2 cores and waits the rest of the time.
    let share = (2.0 / nthreads as f64).min(1.0);
    let mut state: Vec<(u64, u64, bool, u64)> = vec![(0, 0, true, 0); nthreads as usize];
    let mut t = interval;
    while t <= wall {
        for (i, st) in state.iter_mut().enumerate() {
            if st.3 == 0 {
                st.2 = !st.2;
                st.3 = 5 + rng.below(100);
            }
            st.3 -= 1;
            if st.2 {
                let run = (interval as f64 * share * 2.0).min(interval as f64) as u64;
                st.0 += run;
                st.1 += interval - run;
            }
            let pi = i as u32 / shape.threads_per_process.max(1);
            let ti = i as u32 % shape.threads_per_process.max(1);
            let pid = 1000 + pi * 100;
            b.handle(Event::ThreadPoint {
                pid,
                tid: pid + ti,
                name: if ti == 0 {
                    "python".into()
                } else {
                    format!("openblas{ti}")
                },
                point: ThreadPoint {
                    t,
                    cpu_ns: st.0,
                    runq_ns: st.1,
                    user_ns: st.0,
                    ivcsw: st.1 / MS,
                    ..Default::default()
                },
            });
        }
        t += interval;
    }
    b.handle(Event::Exit {
        code: Some(0),
        signal: None,
    });
    let mut profile = b.finish(wall);
    // Stacks: interned once, samples pushed directly (millions of them).
    let py = "/src/pool.py";
    let lib = "/usr/lib/libopenblas.so.0";
    let pyl = "/usr/lib/libpython3.11.so";
    let st = &mut profile.stacks;
    let base_main: Vec<_> = [
        frame(FrameKind::Native, "_start", "/usr/bin/python3.11", None),
        frame(FrameKind::Native, "Py_RunMain", pyl, None),
        frame(FrameKind::Python, "<module>", py, Some(3)),
        frame(FrameKind::Python, "main", py, Some(40)),
    ]
    .into_iter()
    .map(|f| st.intern_frame(f))
    .collect();
    let base_worker: Vec<_> = [
        frame(FrameKind::Native, "clone3", "/usr/lib/libc.so.6", None),
        frame(
            FrameKind::Native,
            "start_thread",
            "/usr/lib/libc.so.6",
            None,
        ),
        frame(FrameKind::Native, "blas_thread_server", lib, None),
    ]
    .into_iter()
    .map(|f| st.intern_frame(f))
    .collect();
    let mut main_stacks: Vec<StackId> = Vec::new();
    for i in 0..12u32 {
        let mut v = base_main.clone();
        v.push(st.intern_frame(frame(
            FrameKind::Python,
            &format!("step_{}", i % 4),
            py,
            Some(50 + i),
        )));
        v.push(st.intern_frame(frame(FrameKind::Native, "cblas_dgemm", lib, None)));
        v.push(st.intern_frame(frame(
            FrameKind::Native,
            &format!("dgemm_kernel_{}", i % 3),
            lib,
            None,
        )));
        main_stacks.extend(st.intern_stack(&v));
    }
    let mut worker_stacks: Vec<StackId> = Vec::new();
    for i in 0..16u32 {
        let mut v = base_worker.clone();
        if i % 4 != 0 {
            v.push(st.intern_frame(frame(FrameKind::Native, "inner_thread", lib, None)));
            v.push(st.intern_frame(frame(
                FrameKind::Native,
                ["dgemm_kernel_HASWELL", "dgemm_oncopy", "dgemm_beta"][i as usize % 3],
                lib,
                None,
            )));
        }
        worker_stacks.extend(st.intern_stack(&v));
    }
    // Samples: 2 busy cores at rate_hz, spread over the threads.
    let step = 1_000_000_000 / u64::from(shape.rate_hz.max(1)) / 2;
    let mut samples = Vec::with_capacity((wall / step.max(1)) as usize);
    let mut t = 0;
    while t < wall {
        let i = rng.below(nthreads) as u32;
        let pi = i / shape.threads_per_process.max(1);
        let ti = i % shape.threads_per_process.max(1);
        let pid = 1000 + pi * 100;
        let stack = if ti == 0 {
            main_stacks[rng.below(main_stacks.len() as u64) as usize]
        } else {
            worker_stacks[rng.below(worker_stacks.len() as u64) as usize]
        };
        samples.push(Sample {
            t,
            pid,
            tid: pid + ti,
            stack: Some(stack),
        });
        t += step;
    }
    profile.samples = samples;
    analysis.findings.push(Finding {
        id: "oversubscription".into(),
        severity: Severity::Warning,
        title: format!(
            "{} processes × {} OpenBLAS threads = {} threads on 2 cores",
            shape.processes,
            shape.threads_per_process.saturating_sub(1),
            nthreads
        ),
        detail: "synthetic".into(),
        fix: "OPENBLAS_NUM_THREADS=1".into(),
        setting: [("OPENBLAS_NUM_THREADS".to_string(), "1".to_string())].into(),
        est_saving_cpu_s: 1.0,
        est_saving_wall_s: 1.0,
        pids: profile.processes.iter().map(|p| p.pid).collect(),
        tids: vec![],
    });
    (profile, analysis)
}
