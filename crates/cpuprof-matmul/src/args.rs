//! Command-line arguments of `cpuprof-matmul`.
//!
//! Parsed with clap so that every bad value (size 0, procs 0, an unknown dtype, a thread count
//! that is neither `auto` nor a positive number) becomes a usage error with exit code 2. The
//! hidden `--worker` flag marks a re-executed child of `--procs`; users never pass it.

use std::fmt;

use clap::{Parser, ValueEnum};

/// Dense matrix products with ndarray on OpenBLAS, across processes and BLAS threads.
///
/// Every process multiplies two SIZE x SIZE matrices ITERS times. With --procs P the binary
/// re-executes itself P times (the shape of a multiprocessing pool) and adds up the results.
/// With --threads auto (the default) OpenBLAS keeps its own default, one thread per core, which
/// oversubscribes the machine as soon as P > 1.
#[derive(Debug, Clone, Parser)]
#[command(name = "cpuprof-matmul", version)]
pub struct Args {
    /// Matrix dimension N (N x N matrices)
    #[arg(long, default_value = "1024", value_parser = positive_usize, value_name = "N")]
    pub size: usize,

    /// Matrix products per process
    #[arg(long, default_value = "10", value_parser = positive_usize, value_name = "K")]
    pub iters: usize,

    /// Worker processes (each runs the whole loop)
    #[arg(long, default_value = "1", value_parser = positive_usize, value_name = "P")]
    pub procs: usize,

    /// OpenBLAS threads per process: a number, or `auto` for the library's default
    #[arg(long, default_value = "auto", value_parser = parse_threads, value_name = "T|auto")]
    pub threads: Threads,

    /// Element type
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    pub dtype: Dtype,

    /// Print one JSON object instead of key=value lines
    #[arg(long)]
    pub json: bool,

    /// Internal: run as worker number I of a --procs parent and print one JSON line
    #[arg(long, hide = true, value_name = "I")]
    pub worker: Option<usize>,
}

/// The element type of the matrices, which picks `cblas_sgemm` or `cblas_dgemm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    /// 32-bit floats (sgemm)
    F32,
    /// 64-bit floats (dgemm)
    F64,
}

impl Dtype {
    /// The spelling used on the command line and in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many BLAS threads each process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Leave OpenBLAS's default (one per CPU of the affinity mask, or OPENBLAS_NUM_THREADS).
    Auto,
    /// Call `openblas_set_num_threads(n)` before the loop.
    Fixed(usize),
}

impl fmt::Display for Threads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threads::Auto => f.write_str("auto"),
            Threads::Fixed(n) => write!(f, "{n}"),
        }
    }
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a positive whole number")),
    }
}

fn parse_threads(s: &str) -> Result<Threads, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Threads::Auto);
    }
    positive_usize(s)
        .map(Threads::Fixed)
        .map_err(|e| format!("{e} (or `auto`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("cpuprof-matmul").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.size, 1024);
        assert_eq!(a.procs, 1);
        assert_eq!(a.threads, Threads::Auto);
        assert_eq!(a.dtype, Dtype::F64);
        assert_eq!(a.worker, None);
    }

    #[test]
    fn full_command_line() {
        let a = parse(&[
            "--size",
            "2048",
            "--iters",
            "3",
            "--procs",
            "2",
            "--threads",
            "1",
            "--dtype",
            "f32",
        ])
        .unwrap();
        assert_eq!((a.size, a.iters, a.procs), (2048, 3, 2));
        assert_eq!(a.threads, Threads::Fixed(1));
        assert_eq!(a.dtype, Dtype::F32);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--size", "0"][..],
            &["--procs", "0"],
            &["--iters", "0"],
            &["--dtype", "f16"],
            &["--threads", "0"],
            &["--threads", "many"],
            &["--size", "-3"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
