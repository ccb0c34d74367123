"""N processes x N threads: a multiprocessing pool of NumPy matrix products.

Each of the pool's workers multiplies matrices with NumPy, and each worker's OpenBLAS
starts its own thread pool sized to *all* cores. With N workers on N cores that is
N x N busy threads fighting over N cores: more CPU time, more wall time, and run-queue
waiting that no per-process view shows.

    cpuprof -- .venv/bin/python examples/pool_matmul.py oversubscribed
    cpuprof -- .venv/bin/python examples/pool_matmul.py fixed

`oversubscribed` keeps NumPy's default BLAS threads in every worker. `fixed` applies the
usual fix: set OPENBLAS_NUM_THREADS=1 (and friends) *before NumPy is imported*, so every
worker runs one BLAS thread and the pool alone provides the parallelism. Setting it
after the import has no effect on OpenBLAS.

The last line reports the pool's wall time (`wall_s`), the whole script's from its first line
(`script_s`: with NumPy's import, as a profiler slows it) and the CPU time of the process tree.
"""

import time

SCRIPT_T0 = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["oversubscribed", "fixed"],
                        default="oversubscribed",
                        help="default BLAS threads per worker, or 1 set before importing numpy")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="pool size (default: number of CPUs)")
    parser.add_argument("--tasks", type=int, default=16, help="matrix products in total (default 16)")
    parser.add_argument("--size", type=int, default=2048, help="matrix dimension (default 2048)")
    args = parser.parse_args()
    if min(args.workers, args.tasks, args.size) < 1:
        parser.error("--workers, --tasks and --size must be at least 1")
    return args


ARGS = parse_args()
if ARGS.mode == "fixed":
    # The fix: one BLAS thread per process, decided before OpenBLAS is loaded.
    # Worker processes inherit the environment, so this covers them too.
    for name in THREAD_VARS:
        os.environ[name] = "1"

import multiprocessing  # noqa: E402

import numpy as np  # noqa: E402


def task(seed):
    """One unit of work: a product of two size x size matrices (cheap to build)."""
    a = np.full((ARGS.size, ARGS.size), 1.0 / (seed + 1))
    b = np.eye(ARGS.size) + a
    return float((a @ b).trace())


def main():
    wall0 = time.perf_counter()
    with multiprocessing.Pool(ARGS.workers) as pool:
        results = pool.map(task, range(ARGS.tasks), chunksize=1)
        pool.close()
        pool.join()
    end = time.perf_counter()
    wall = end - wall0

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    env = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"pool_matmul mode={ARGS.mode} workers={ARGS.workers} tasks={len(results)} "
          f"size={ARGS.size} OPENBLAS_NUM_THREADS={env} wall_s={wall:.3f} "
          f"script_s={end - SCRIPT_T0:.4f} cpu_s={cpu:.3f}")


if __name__ == "__main__":
    main()
