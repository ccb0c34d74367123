//! The two OpenBLAS entry points the workload needs beyond BLAS itself.
//!
//! `openblas_set_num_threads` is how `--threads T` fixes the pool size of one process (the same
//! call threadpoolctl makes for NumPy); `openblas_get_num_threads` reports what the library
//! actually uses, so `--threads auto` prints the default it picked. Both are exported by the
//! system `libopenblas` that `openblas-src` links.

use std::ffi::c_int;

extern "C" {
    fn openblas_set_num_threads(num_threads: c_int);
    fn openblas_get_num_threads() -> c_int;
}

/// Sets the number of threads OpenBLAS uses for the following calls of this process.
pub fn set_num_threads(n: usize) {
    let n = c_int::try_from(n).unwrap_or(c_int::MAX);
    // SAFETY: plain setter of the library's global thread count; no pointers involved.
    unsafe { openblas_set_num_threads(n) }
}

/// The number of threads OpenBLAS will use for the next call.
pub fn num_threads() -> usize {
    // SAFETY: plain getter of the library's global thread count.
    let n = unsafe { openblas_get_num_threads() };
    usize::try_from(n).unwrap_or(0)
}
