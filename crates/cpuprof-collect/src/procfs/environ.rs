//! `/proc/PID/environ`, reduced to the thread-pool variables.
//!
//! The environment holds secrets (tokens, passwords), so only the names in [`WHITELIST`] —
//! the knobs that size or tune BLAS and OpenMP thread pools — are ever kept.

use std::collections::BTreeMap;

/// The only environment variables cpuprof records.
pub const WHITELIST: &[&str] = &[
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_THREAD_TIMEOUT",
    "MKL_NUM_THREADS",
    "MKL_DYNAMIC",
    "MKL_THREADING_LAYER",
    "BLIS_NUM_THREADS",
    "FLEXIBLAS_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "POLARS_MAX_THREADS",
    "RAYON_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
];

/// The whitelisted variables of NUL-separated `environ` text.
pub fn parse(text: &[u8]) -> BTreeMap<String, String> {
    text.split(|&b| b == 0)
        .filter_map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            let name = std::str::from_utf8(&kv[..eq]).ok()?;
            WHITELIST.contains(&name).then(|| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(&kv[eq + 1..]).into_owned(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_only_whitelisted_names() {
        let env = super::parse(
            b"HOME=/root\0AWS_SECRET_ACCESS_KEY=abc\0OMP_NUM_THREADS=4\0OPENBLAS_NUM_THREADS=1\0X=OMP_NUM_THREADS=9\0",
        );
        assert_eq!(env.len(), 2);
        assert_eq!(env["OMP_NUM_THREADS"], "4");
        assert_eq!(env["OPENBLAS_NUM_THREADS"], "1");
    }
}
