//! The measured work: `iters` products of two `size x size` matrices.
//!
//! [`matmul`] is deliberately a named, never-inlined function: with frame pointers on, a
//! profiler's stacks read `main` → `run` → `matmul` → ndarray's `general_mat_mul` →
//! `cblas_dgemm`/`cblas_sgemm` → OpenBLAS's threads and kernels, which is the picture cpuprof's
//! tests and demo look for.

use std::time::Instant;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, LinalgScalar};

/// What one process did and how long its products took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelRun {
    /// Seconds spent in the product loop (matrix setup excluded).
    pub compute_s: f64,
    /// CLOCK_MONOTONIC ns when the loop started (comparable across processes).
    pub start_ns: u64,
    /// CLOCK_MONOTONIC ns when the loop ended.
    pub end_ns: u64,
    /// Floating-point operations performed: `2 * size^3 * iters`.
    pub flops: f64,
    /// Sum of the last product's elements, so the work cannot be skipped and runs can be compared.
    pub checksum: f64,
}

impl KernelRun {
    /// Achieved GFLOP/s of the product loop.
    pub fn gflops(&self) -> f64 {
        if self.compute_s > 0.0 {
            self.flops / self.compute_s / 1e9
        } else {
            0.0
        }
    }
}

/// Element types the workload multiplies: those ndarray hands to BLAS.
pub trait Element: LinalgScalar + From<f32> + Into<f64> {}
impl Element for f32 {}
impl Element for f64 {}

/// `c = a · b`, through ndarray's BLAS path (`cblas_?gemm` on OpenBLAS).
#[inline(never)]
pub fn matmul<T: Element>(a: &Array2<T>, b: &Array2<T>, c: &mut Array2<T>) {
    general_mat_mul(T::one(), a, b, T::zero(), c);
}

/// Builds the inputs and runs `iters` products of `size x size` matrices.
#[inline(never)]
pub fn run<T: Element>(size: usize, iters: usize) -> KernelRun {
    // Small, bounded values: the product stays finite for any size and the checksum is exact
    // enough to compare runs.
    let a = Array2::<T>::from_shape_fn((size, size), |(i, j)| {
        T::from((((i + 2 * j) % 17) as f32 - 8.0) / 17.0)
    });
    let b = Array2::<T>::from_shape_fn((size, size), |(i, j)| {
        T::from((((3 * i + j) % 13) as f32 - 6.0) / 13.0)
    });
    let mut c = Array2::<T>::zeros((size, size));

    let start_ns = monotonic_ns();
    let start = Instant::now();
    for _ in 0..iters {
        matmul(&a, &b, &mut c);
    }
    let compute_s = start.elapsed().as_secs_f64();
    let end_ns = monotonic_ns();

    let checksum: f64 = c.iter().map(|&x| x.into()).sum();
    let n = size as f64;
    KernelRun {
        compute_s,
        start_ns,
        end_ns,
        flops: 2.0 * n * n * n * iters as f64,
        checksum,
    }
}

/// CLOCK_MONOTONIC in ns: the clock cpuprof's events use, shared by all processes.
pub fn monotonic_ns() -> u64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime only writes into it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is valid and writable for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product computed without BLAS, for checking the BLAS path on small inputs.
    pub fn reference_dot<T: Element>(a: &Array2<T>, b: &Array2<T>) -> Array2<f64> {
        let (n, k) = a.dim();
        let m = b.dim().1;
        Array2::from_shape_fn((n, m), |(i, j)| {
            (0..k).map(|p| a[(i, p)].into() * b[(p, j)].into()).sum()
        })
    }

    /// `a.dot(b)` as a user of ndarray would write it (used by tests to cross-check [`matmul`]).
    pub fn dot<T: Element>(a: &Array2<T>, b: &Array2<T>) -> Array2<T> {
        a.dot(b)
    }

    fn sample<T: Element>(n: usize, m: usize, seed: usize) -> Array2<T> {
        Array2::from_shape_fn((n, m), |(i, j)| {
            T::from(((i * 7 + j * 3 + seed) % 11) as f32 - 5.0)
        })
    }

    #[test]
    fn blas_product_matches_reference_f64() {
        let a = sample::<f64>(37, 37, 1);
        let b = sample::<f64>(37, 37, 2);
        let mut c = Array2::zeros((37, 37));
        matmul(&a, &b, &mut c);
        let want = reference_dot(&a, &b);
        for (x, y) in c.iter().zip(want.iter()) {
            assert_eq!(*x, *y);
        }
        assert_eq!(dot(&a, &b), c);
    }

    #[test]
    fn blas_product_matches_reference_f32() {
        let a = sample::<f32>(20, 20, 3);
        let b = sample::<f32>(20, 20, 4);
        let mut c = Array2::zeros((20, 20));
        matmul(&a, &b, &mut c);
        let want = reference_dot(&a, &b);
        for (x, y) in c.iter().zip(want.iter()) {
            assert_eq!(f64::from(*x), *y);
        }
    }

    #[test]
    fn run_counts_flops_and_is_deterministic() {
        let r1 = run::<f64>(64, 3);
        let r2 = run::<f64>(64, 3);
        assert_eq!(r1.flops, 2.0 * 64f64.powi(3) * 3.0);
        assert_eq!(r1.checksum, r2.checksum);
        assert!(r1.compute_s > 0.0 && r1.gflops() > 0.0);
    }
}
