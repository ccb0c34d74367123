//! `cpuprof-rayon [ROUNDS [LEN]]`: ROUNDS parallel reductions (default 1000) over LEN numbers
//! (default 65 536) on Rayon's global pool, and the sum printed.
//!
//! Each round is one `par_chunks` reduction, short (about a millisecond on one core at the
//! default size), so the pool's workers join, steal and go idle between rounds many times a
//! second: the shape of a Rust library's data-parallel calls (polars' operations, ndarray's
//! `par_` methods). Rayon sizes its pool to the cores unless `RAYON_NUM_THREADS` says
//! otherwise, so two of these at once on N cores run 2 × N workers; tests/libraries.rs and
//! bench/estimates.py run it that way.

use rayon::prelude::*;

/// Numbers per task: enough work per task to be worth stealing, few enough tasks per round
/// that the round ends with workers out of work.
const CHUNK: usize = 4096;

fn parse(arg: Option<String>, what: &str, default: usize) -> usize {
    match arg {
        None => default,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("cpuprof-rayon: {what} must be a positive integer, not {s:?}");
                eprintln!("usage: cpuprof-rayon [ROUNDS [LEN]]");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds = parse(args.next(), "ROUNDS", 1000);
    let len = parse(args.next(), "LEN", 1 << 16);
    let data: Vec<f64> = (0..len).map(|i| (i % 1000) as f64 * 1e-3).collect();
    let mut total = 0.0;
    for round in 0..rounds {
        let shift = round as f64 * 1e-6;
        total += data
            .par_chunks(CHUNK)
            .map(|c| {
                c.iter()
                    .map(|x| ((x + shift) * x + 1.0).sqrt())
                    .sum::<f64>()
            })
            .sum::<f64>();
    }
    println!("{total:.6}");
}
