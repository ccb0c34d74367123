//! A small hand-built profile for unit tests.

use cpuprof_model::{
    Analysis, Event, Finding, Frame, FrameKind, Machine, Meta, Profile, ProfileBuilder, Severity,
    ThreadClass, ThreadPoint, ThreadRole,
};

const S: u64 = 1_000_000_000;

fn native(name: &str) -> Frame {
    Frame {
        kind: FrameKind::Native,
        name: name.into(),
        module: Some("/usr/lib/libopenblas.so.0".into()),
        line: None,
        short_file: None,
    }
}

fn py(name: &str, line: u32) -> Frame {
    Frame {
        kind: FrameKind::Python,
        name: name.into(),
        module: Some("/src/x.py".into()),
        line: Some(line),
        short_file: None,
    }
}

/// Process 100 `python x.py` (running at the end) with threads 100 (0.5 s CPU) and 101
/// `worker <b>` (1.5 s CPU, 0.5 s run-queue wait); process 200 `sh -c true` that ended at 1 s.
/// Wall 2 s on 2 CPUs; 6 samples.
pub fn profile() -> Profile {
    let machine = Machine {
        online_cpus: 2,
        affinity_cpus: 2,
        ..Default::default()
    };
    let mut meta = Meta::new(vec!["python".into(), "x.py".into()]);
    meta.pid = 100;
    meta.sample_rate_hz = Some(3);
    meta.interval_ns = S / 20;
    let mut b = ProfileBuilder::new(meta, machine, 0);
    b.handle(Event::ProcessStart {
        t: 0,
        pid: 100,
        ppid: 1,
        command: vec!["python".into(), "x.py".into()],
        exe: Some("/usr/bin/python3.11".into()),
    });
    b.handle(Event::ProcessStart {
        t: S / 2,
        pid: 200,
        ppid: 100,
        command: vec!["sh".into(), "-c".into(), "true".into()],
        exe: None,
    });
    for i in 1..=4u64 {
        let t = i * S / 2;
        b.handle(Event::ThreadPoint {
            pid: 100,
            tid: 100,
            name: "python".into(),
            point: ThreadPoint {
                t,
                cpu_ns: i * S / 8,
                user_ns: i * S / 8,
                ..Default::default()
            },
        });
        b.handle(Event::ThreadPoint {
            pid: 100,
            tid: 101,
            name: "worker <b>".into(),
            point: ThreadPoint {
                t,
                cpu_ns: i * 3 * S / 8,
                runq_ns: i * S / 8,
                user_ns: i * 3 * S / 8,
                ivcsw: i * 10,
                ..Default::default()
            },
        });
    }
    b.handle(Event::ThreadPoint {
        pid: 200,
        tid: 200,
        name: "sh".into(),
        point: ThreadPoint {
            t: S * 3 / 4,
            ..Default::default()
        },
    });
    b.handle(Event::ProcessEnd {
        t: S,
        pid: 200,
        cpu: None,
    });
    for (i, leaf) in [
        "dgemm_kernel",
        "dgemm_kernel",
        "blas_thread_server",
        "dgemm_kernel",
    ]
    .iter()
    .enumerate()
    {
        b.handle(Event::Sample {
            t: (i as u64 + 1) * S / 3,
            pid: 100,
            tid: 101,
            frames: vec![native("start_thread").into(), native(leaf).into()],
        });
    }
    for i in 0..2u64 {
        b.handle(Event::Sample {
            t: S / 4 + i * S,
            pid: 100,
            tid: 100,
            frames: vec![
                py("<module>", 1).into(),
                py("work", 7).into(),
                native("cblas_dgemm").into(),
            ],
        });
    }
    b.handle(Event::Exit {
        code: Some(0),
        signal: None,
    });
    b.finish(2 * S)
}

/// An analysis of [`profile`]: one oversubscription warning, thread 101 an OpenBLAS worker.
pub fn analysis() -> Analysis {
    let mut a = Analysis {
        findings: vec![Finding {
            id: "oversubscription".into(),
            severity: Severity::Warning,
            title: "3 threads on 2 cores".into(),
            detail: "waited 0.5 s for a core".into(),
            fix: "OPENBLAS_NUM_THREADS=1".into(),
            setting: [("OPENBLAS_NUM_THREADS".to_string(), "1".to_string())].into(),
            est_saving_cpu_s: 0.25,
            est_saving_wall_s: 0.5,
            pids: vec![100],
            tids: vec![101],
        }],
        ..Default::default()
    };
    a.threads.insert(
        101,
        ThreadClass {
            role: ThreadRole::BlasWorker,
            runtime: Some("OpenBLAS".into()),
        },
    );
    a.threads.insert(
        100,
        ThreadClass {
            role: ThreadRole::Python,
            runtime: None,
        },
    );
    a
}
