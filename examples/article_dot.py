"""The article's case: one process, one large matrix product, BLAS threads on or off.

From "The Parallelism Blues: when faster code is slower": NumPy's `a.dot(a)` runs on
OpenBLAS, which by default starts one thread per core. The product finishes sooner
(less wall time) but costs *more* CPU time than the single-threaded run, because the
threads spend part of their time coordinating and waiting. On its own that is a fine
trade; inside a process pool that already keeps every core busy it is pure loss.

Run it both ways and compare CPU against wall time:

    cpuprof -- .venv/bin/python examples/article_dot.py default
    cpuprof -- .venv/bin/python examples/article_dot.py limit1

`default` leaves OpenBLAS's thread pool alone; `limit1` wraps the product in
`threadpoolctl.threadpool_limits(1, user_api="blas")`, as the article does.
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def product(a, repeat):
    """The measured work; returns the BLAS thread count in effect while it ran."""
    for _ in range(repeat):
        a.dot(a)
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["default", "limit1"], default="default",
                        help="default BLAS threads, or threadpool_limits(1)")
    parser.add_argument("--size", type=int, default=4096, help="matrix dimension (default 4096)")
    parser.add_argument("--repeat", type=int, default=1, help="products to compute (default 1)")
    args = parser.parse_args()
    if args.size < 1 or args.repeat < 1:
        parser.error("--size and --repeat must be at least 1")

    a = np.ones((args.size, args.size))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if args.mode == "limit1":
        with threadpool_limits(limits=1, user_api="blas"):
            blas_threads = product(a, args.repeat)
    else:
        blas_threads = product(a, args.repeat)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    print(f"article_dot mode={args.mode} size={args.size} repeat={args.repeat} "
          f"blas_threads={blas_threads} wall_s={wall:.3f} cpu_s={cpu:.3f}")


if __name__ == "__main__":
    main()
