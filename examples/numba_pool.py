"""A multiprocessing pool of numba `parallel=True` loops: N processes x numba's N threads.

numba runs a `prange` loop on its threading layer. A pip install has no `tbb`, so the layer
is OpenMP (libgomp): a team of N threads per process, the calling thread one of them, and
idle members spin in libgomp while they wait. In a pool of N worker processes that is N x N
spinning threads on N cores.

    cpuprof -- .venv/bin/python examples/numba_pool.py
    NUMBA_NUM_THREADS=1 cpuprof -- .venv/bin/python examples/numba_pool.py

The fix is `NUMBA_NUM_THREADS=1` in the environment before numba is imported (the workers
inherit it), or `numba.set_num_threads(1)` in the task.
"""

import argparse
import multiprocessing
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=600)
    return parser.parse_args()


_KERNEL = None


def kernel():
    """The parallel loop, compiled once per worker process on its first task."""
    global _KERNEL
    if _KERNEL is None:
        import numpy as np
        from numba import njit, prange

        @njit(parallel=True)
        def norms(x, rounds):
            total = 0.0
            for _ in range(rounds):
                s = 0.0
                for i in prange(x.shape[0]):
                    s += np.sqrt(x[i] * x[i] + 1.0)
                total += s
            return total

        _KERNEL = norms
    return _KERNEL


def task(args):
    """Many short parallel regions: each `prange` forks and joins numba's team."""
    n, rounds, seed = args
    import numpy as np
    x = np.arange(n, dtype=np.float64) + seed
    return kernel()(x, rounds)


def main():
    args = parse_args()
    wall0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        total = sum(pool.map(task, [(args.n, args.rounds, i) for i in range(args.tasks)]))
    print(f"numba: {args.tasks} tasks on {args.workers} processes in "
          f"{time.perf_counter() - wall0:.2f} s (checksum {total:.1f})")


if __name__ == "__main__":
    main()
