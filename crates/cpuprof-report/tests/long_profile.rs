//! The report of a long, wide profile (1 hour, 100 threads, 7.2 M polls and 7.2 M samples) is
//! generated in seconds and stays a few MB. Ignored by default (it needs a release build to be
//! meaningful): `cargo test --release -p cpuprof-report --test long_profile -- --ignored`.

use std::time::Instant;

use cpuprof_report::synthetic::{self, Shape};

#[test]
#[ignore]
fn one_hour_hundred_threads_renders_in_seconds_and_stays_small() {
    let (profile, analysis) = synthetic::profile(Shape::default());
    assert_eq!(profile.thread_count(), 100);
    let t = Instant::now();
    let page = cpuprof_report::html::render(&profile, &analysis);
    let secs = t.elapsed().as_secs_f64();
    let mb = page.len() as f64 / 1e6;
    eprintln!("html: {secs:.2} s, {mb:.2} MB");
    assert!(secs < 15.0, "rendering took {secs:.1} s");
    assert!(mb < 6.0, "page is {mb:.1} MB");
    // Every thread has its lane and the flamegraph data is there.
    assert_eq!(page.matches("\"tid\":").count(), 100);
}
