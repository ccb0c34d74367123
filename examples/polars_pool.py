"""A multiprocessing pool of polars queries: N processes x a Rayon pool of N threads.

polars runs every query on its own Rayon thread pool (threads named `polars-N`), sized to
all cores. In a pool of N worker processes that is N x N threads on N cores.

    cpuprof -- .venv/bin/python examples/polars_pool.py
    POLARS_MAX_THREADS=1 cpuprof -- .venv/bin/python examples/polars_pool.py

The fix is `POLARS_MAX_THREADS=1` in the environment before polars is imported (the pool
size is fixed when polars starts its pool; the workers inherit the environment).
"""

import argparse
import multiprocessing
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--rows", type=int, default=400_000)
    return parser.parse_args()


def task(args):
    """Group-bys of a frame with many keys: each query fans out to polars's pool."""
    rows, seed = args
    import polars as pl
    df = pl.DataFrame({"k": (pl.int_range(0, rows, eager=True) * 7919 + seed) % 50_000,
                       "v": pl.int_range(0, rows, eager=True).cast(pl.Float64)})
    total = 0.0
    for _ in range(6):
        out = (df.group_by("k").agg(pl.col("v").sum(), pl.col("v").mean().alias("m"))
               .sort("k"))
        total += float(out["m"][0])
    return total


def main():
    args = parse_args()
    wall0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        total = sum(pool.map(task, [(args.rows, i) for i in range(args.tasks)]))
    print(f"polars: {args.tasks} queries on {args.workers} processes in "
          f"{time.perf_counter() - wall0:.2f} s (checksum {total:.1f})")


if __name__ == "__main__":
    main()
