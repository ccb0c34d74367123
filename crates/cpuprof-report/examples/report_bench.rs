//! Renders the HTML report (and the other outputs) of a synthetic profile and prints how long
//! it took and how big the page is.
//!
//! `cargo run --release -p cpuprof-report --example report_bench -- [SECONDS [PROCS [THREADS [OUT.html]]]]`
//! (defaults: 3600 s, 4 processes × 25 threads).

use std::time::Instant;

use cpuprof_report::synthetic::{self, Shape};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut shape = Shape::default();
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok());
    if let Some(s) = num(0) {
        shape.seconds = s;
    }
    if let Some(p) = num(1) {
        shape.processes = p as u32;
    }
    if let Some(t) = num(2) {
        shape.threads_per_process = t as u32;
    }
    let out = args.get(3).cloned();
    let t0 = Instant::now();
    let (profile, analysis) = synthetic::profile(shape);
    let built = t0.elapsed();
    let points: usize = profile
        .processes
        .iter()
        .flat_map(|p| &p.threads)
        .map(|t| t.points.len())
        .sum();
    let t1 = Instant::now();
    let page = cpuprof_report::html::render(&profile, &analysis);
    let html_time = t1.elapsed();
    let t2 = Instant::now();
    let json = cpuprof_report::summary::to_json(&profile, &analysis)
        .unwrap()
        .to_string();
    let json_time = t2.elapsed();
    let t3 = Instant::now();
    let mut folded = Vec::new();
    cpuprof_report::collapsed::write(&profile, &mut folded).expect("in memory");
    let folded_time = t3.elapsed();
    println!(
        "profile: {} s, {} threads, {} points, {} samples (built in {:.2} s)",
        shape.seconds,
        profile.thread_count(),
        points,
        profile.samples.len(),
        built.as_secs_f64()
    );
    println!(
        "html: {:.2} s, {:.2} MB",
        html_time.as_secs_f64(),
        page.len() as f64 / 1e6
    );
    println!(
        "summary json: {:.2} s, {:.1} KB; collapsed: {:.2} s, {:.1} KB",
        json_time.as_secs_f64(),
        json.len() as f64 / 1e3,
        folded_time.as_secs_f64(),
        folded.len() as f64 / 1e3
    );
    if let Some(path) = out {
        std::fs::write(&path, page).expect("write the page");
        println!("wrote {path}");
    }
}
