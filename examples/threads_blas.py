"""Application threads that call BLAS at the same time.

Each of the program's own threads multiplies matrices with NumPy, and every call fans out
to OpenBLAS's pool, which is sized to all cores. With T calling threads on N cores that is
T x N busy threads: the pool and the callers fight over the cores.

    cpuprof -- .venv/bin/python examples/threads_blas.py executor
    cpuprof -- .venv/bin/python examples/threads_blas.py joblib
    OPENBLAS_NUM_THREADS=1 cpuprof -- .venv/bin/python examples/threads_blas.py executor

`executor` runs the tasks on a `concurrent.futures.ThreadPoolExecutor`; `joblib` on
joblib's `threading` backend. Both call threads release the GIL inside BLAS, so they run
at once. The fix is one BLAS thread per calling thread: `OPENBLAS_NUM_THREADS=1` before
NumPy is imported, or `threadpoolctl.threadpool_limits(1)` around the parallel section.
"""

import argparse
import os
import time

import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["executor", "joblib"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="calling threads (default: number of CPUs)")
    parser.add_argument("--tasks", type=int, default=48, help="matrix products (default 48)")
    parser.add_argument("--size", type=int, default=384, help="matrix dimension (default 384)")
    parser.add_argument("--limit", action="store_true",
                        help="the fix at run time: threadpoolctl.threadpool_limits(1)")
    return parser.parse_args()


def task(args, seed):
    a = np.full((args.size, args.size), 1.0 / (seed + 1))
    b = np.eye(args.size) + a
    for _ in range(3):
        a = (a @ b) / args.size
    return float(a.trace())


def run(args):
    if args.mode == "executor":
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.threads) as ex:
            return sum(ex.map(lambda i: task(args, i), range(args.tasks)))
    from joblib import Parallel, delayed
    return sum(Parallel(n_jobs=args.threads, backend="threading")(
        delayed(task)(args, i) for i in range(args.tasks)))


def main():
    args = parse_args()
    wall0 = time.perf_counter()
    if args.limit:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):
            total = run(args)
    else:
        total = run(args)
    print(f"{args.mode}: {args.tasks} products on {args.threads} threads in "
          f"{time.perf_counter() - wall0:.2f} s (checksum {total:.3f})")


if __name__ == "__main__":
    main()
