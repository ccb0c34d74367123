//! `/proc/PID/maps`, reduced to the libraries of interest.
//!
//! Which BLAS / OpenMP / Python runtime a process loaded decides what the analysis looks for
//! (threadpoolctl reads the same file). Only file-backed mappings whose base name starts with
//! one of [`PREFIXES`] are kept, once each.

/// Base-name prefixes of the libraries cpuprof records: every runtime of the analysis's
/// table (`cpuprof-analysis/src/runtimes.rs`), and the interpreters.
pub const PREFIXES: &[&str] = &[
    "libopenblas",
    "libscipy_openblas",
    "libmkl_",
    "libblis",
    "libflexiblas",
    "libblas",
    "libcblas",
    "liblapack",
    "libgomp",
    "libiomp",
    "libomp",
    "libtbb",
    "libtorch_cpu",
    "libpython",
    "libnuma",
    "_multiarray_umath",
    "interpreter.cpython",
    "_polars_runtime",
    "polars.abi3",
    "libonnxruntime",
    "onnxruntime_pybind11_state",
    "workqueue.cpython",
    "omppool.cpython",
    "tbbpool.cpython",
];

/// Whether a library's base name is one of interest.
pub fn is_of_interest(base: &str) -> bool {
    PREFIXES.iter().any(|p| base.starts_with(p)) || base.contains("openblas")
}

/// Full paths of the libraries of interest mapped in `maps` text, in order of first mapping.
/// The lines are parsed by the one `maps` parser, `cpuprof_symbols::maps::parse_line` (the
/// symbol crate, below this one, needs it for unwinding).
pub fn libraries(text: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(text).lines() {
        let Some(m) = cpuprof_symbols::maps::parse_line(line) else {
            continue;
        };
        if !m.is_file() {
            continue;
        }
        if is_of_interest(m.base_name()) && !out.contains(&m.path) {
            out.push(m.path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_library_of_interest_once() {
        let t = b"55d0-55d1 r--p 00000000 08:01 123 /usr/bin/python3.11\n\
7f00-7f01 r--p 00000000 08:01 456 /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0\n\
7f01-7f02 r-xp 00001000 08:01 456 /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0\n\
7f02-7f03 r-xp 00001000 08:01 789 /venv/lib/numpy.libs/libscipy_openblas64_-ff651d7f.so\n\
7f03-7f04 r-xp 00001000 08:01 790 /usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0\n\
7f05-7f06 r-xp 00000000 08:01 791 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n";
        assert_eq!(
            libraries(t),
            vec![
                "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
                "/venv/lib/numpy.libs/libscipy_openblas64_-ff651d7f.so",
                "/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0",
            ]
        );
    }
}
