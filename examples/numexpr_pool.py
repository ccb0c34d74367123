"""A multiprocessing pool of numexpr evaluations: N processes x numexpr's N threads.

numexpr evaluates each expression on its own thread pool (sized from the cores, at most 8 by
default). In a pool of N worker processes that is N x N threads on N cores.

    cpuprof -- .venv/bin/python examples/numexpr_pool.py
    NUMEXPR_NUM_THREADS=1 cpuprof -- .venv/bin/python examples/numexpr_pool.py

The fix is `NUMEXPR_NUM_THREADS=1` in the environment before numexpr is imported, or
`numexpr.set_num_threads(1)` in each worker.
"""

import argparse
import multiprocessing
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--size", type=int, default=1_500_000)
    return parser.parse_args()


def task(args):
    size, seed = args
    import numexpr as ne
    import numpy as np
    a = np.linspace(0.0, 1.0 + seed, size)
    b = np.linspace(1.0, 2.0, size)
    out = np.empty_like(a)
    total = 0.0
    for _ in range(20):
        ne.evaluate("sin(a) * cos(b) + sqrt(a * b + 1)", out=out)
        total += float(out[::1000].sum())
    return total


def main():
    args = parse_args()
    wall0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        total = sum(pool.map(task, [(args.size, i) for i in range(args.tasks)]))
    print(f"numexpr: {args.tasks} tasks on {args.workers} processes in "
          f"{time.perf_counter() - wall0:.2f} s (checksum {total:.1f})")


if __name__ == "__main__":
    main()
