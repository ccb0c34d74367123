"""The slowdown of paired runs, with a 95% confidence interval.

    python3 bench/ratio.py "BASE1 BASE2 ..." "RUN1 RUN2 ..."

Run i of the second list was made right after run i of the first (the benchmark alternates
them), so each pair saw the same machine. Each run is compared with the mean of the base
runs just before and just after it, which cancels a slow drift of the machine's speed. The
result is the geometric mean of those ratios and a 95% interval from the t distribution of
their logarithms, and the median of the ratios (the measure issue 13 was filed with, "median
of 8 pairs": one slow run on a noisy host moves it less than the mean). Prints one line:
`ratio=R lo=L hi=H median=M n=N`. Standard library only.
"""

import math
import statistics
import sys

# Two-sided 95% quantiles of Student's t by degrees of freedom (1.96 beyond 30).
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
       10: 2.23, 11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11,
       18: 2.10, 19: 2.09, 20: 2.09, 21: 2.08, 22: 2.07, 23: 2.07, 24: 2.06, 25: 2.06,
       26: 2.06, 27: 2.05, 28: 2.05, 29: 2.05, 30: 2.04}


def paired_log_ratios(base, runs):
    """log(run_i / mean(base_i, base_i+1)); the last run has only the base before it."""
    out = []
    for i, r in enumerate(runs):
        neighbours = base[i:i + 2]
        out.append(math.log(r / statistics.fmean(neighbours)))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    base = [float(x) for x in sys.argv[1].split()]
    runs = [float(x) for x in sys.argv[2].split()]
    if len(base) != len(runs) or len(runs) < 2:
        sys.exit("ratio.py: need two lists of the same length, at least 2 runs each")
    logs = paired_log_ratios(base, runs)
    n = len(logs)
    mean = statistics.fmean(logs)
    half = T95.get(n - 1, 1.96) * statistics.stdev(logs) / math.sqrt(n)
    print(f"ratio={math.exp(mean):.4f} lo={math.exp(mean - half):.4f} "
          f"hi={math.exp(mean + half):.4f} median={math.exp(statistics.median(logs)):.4f} n={n}")


if __name__ == "__main__":
    main()
