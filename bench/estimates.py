"""cpuprof's estimated saving against the saving measured, on the real-library test set.

    .venv/bin/python bench/estimates.py                 # every case
    .venv/bin/python bench/estimates.py exec polars     # the named cases
    RECORDINGS=8 MAX_PAIRS=60 .venv/bin/python bench/estimates.py

For each case, two measurements, each with its 95% interval (Student's t over the runs):

* **The recordings.** RECORDINGS runs under `cpuprof --json`, each beside a recording of the
  program with the fix (alternating). A recording's estimate is the largest estimated wall
  saving among its pool findings (with the finding's severity and the fix's variable; a pool
  finding in a recording with the fix is a false alarm, counted); *the recorded runs'
  saving* is each recording's wall time less the mean of the fixed ones (the recorder on
  both sides). The estimate is a claim about the run recorded ("this run would
  have been X s shorter with the fix"), so *est. / recorded saving* (the mean estimate over
  the mean of those savings) tests the model with the program's run-to-run spread taken out:
  where a program's own run time varies by more than its saving (the OpenMP OpenBLAS pair
  runs 2-5 s as it is, the matmul at 256 0.5-0.9 s), the estimate follows its run.
* **The program without cpuprof.** Alternating timed runs as it is and with the fix in its
  environment, in pairs, at least MIN_PAIRS and until the mean of the pairs' savings is known
  to within ±10% (half-width of its 95% interval) or to 0.02 s, or MAX_PAIRS or the case's
  PAIR_BUDGET seconds are spent. Each run's CPU time is the children's rusage: the CPU saved
  divided by the cores is what the wall estimate models. *est. / measured* is the mean
  estimate over the mean saving, with its interval from both sides' (in quadrature): what a
  user saves on average, the issue's measure.

A case is *within* when the ratio is in 0.7-1.3, or when the saving measured is not told
apart from none (its interval reaches zero) and the estimate is under 0.02 s (a pool whose
fix will not pay, estimated so). It is *consistent* when the ratio's interval meets 0.7-1.3:
the measurement cannot say the estimate is outside.
Prints a Markdown table for docs/findings.md and a count of each.
Expects release binaries (`make build`) and `make setup` (the .venv with the libraries).
Standard library only.
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("CPUPROF_BIN_DIR") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
CPUPROF = os.path.join(BIN, "cpuprof")
MATMUL = os.path.join(BIN, "cpuprof-matmul")
RAYON = os.path.join(BIN, "cpuprof-rayon")
PY = os.path.join(ROOT, ".venv", "bin", "python")
EX = os.path.join(ROOT, "examples")
RECORDINGS = int(os.environ.get("RECORDINGS", "6"))
MIN_PAIRS = int(os.environ.get("MIN_PAIRS", "8"))
MAX_PAIRS = int(os.environ.get("MAX_PAIRS", "40"))
PAIR_BUDGET = float(os.environ.get("PAIR_BUDGET", "150"))
POOL_FINDINGS = ("oversubscription", "nested-pools", "spin-wait", "too-many-processes")
OPENBLAS_OPENMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
BLIS_PTHREAD = "/usr/lib/x86_64-linux-gnu/blis-pthread"


def compile_programs(work):
    """The C workloads of examples/c, built here: dgemm on Debian's OpenMP OpenBLAS and on
    Debian's pthreads BLIS, and the OpenMP regions with clang (LLVM libomp). Missing
    compilers or libraries skip the case."""
    out = {}
    src = os.path.join(EX, "c")
    for name, libdir, lib in (("dgemm_openmp", OPENBLAS_OPENMP, "libopenblas.so.0"),
                              ("dgemm_blis", BLIS_PTHREAD, "libblis.so.4")):
        if shutil.which("gcc") and os.path.exists(os.path.join(libdir, lib)):
            exe = os.path.join(work, name)
            subprocess.run(["gcc", "-O2", os.path.join(src, "dgemm.c"), "-o", exe,
                            os.path.join(libdir, lib), f"-Wl,-rpath,{libdir}"], check=True)
            out[name] = exe
    if shutil.which("clang"):
        exe = os.path.join(work, "omp_llvm")
        subprocess.run(["clang", "-O2", "-fopenmp", os.path.join(src, "omp_regions.c"),
                        "-o", exe], check=True)
        out["omp_llvm"] = exe
    return out


# How many times more recordings, pairs and pair budget a chaotic case gets: the dgemm on the
# OpenMP OpenBLAS runs anywhere from 1.3 to 4.9 s as it is, recorded or not (two processes
# whose OpenMP barriers spin against each other: alternating runs of each, 2026-12-02/03), and
# polars' pool (two processes whose Rayon pools wait for each other's preempted threads)
# 1.0-2.2 s, its pairs' savings -0.4..+0.5 s: their means need more runs to be known.
CHAOTIC = 2


def cases(progs):
    """(name, argv, fix environment, how many times the recordings and pairs, environment as
    it is, argv with the fix) of every case. A fix in code (onnxruntime's session option) is
    an argument of the program: the argv with the fix."""
    two = lambda exe, *args: ["sh", "-c", f"{exe} {' '.join(args)} & {exe} {' '.join(args)}; wait"]
    out = [
        ("matmul --procs 2 --size 256", [MATMUL, "--procs", "2", "--size", "256", "--iters",
                                         "600", "--threads", "auto"],
         {"OPENBLAS_NUM_THREADS": "1"}, 1),
        ("matmul --procs 2 --size 2048", [MATMUL, "--procs", "2", "--size", "2048", "--iters",
                                          "6", "--threads", "auto"],
         {"OPENBLAS_NUM_THREADS": "1"}, 1),
        ("pool_matmul.py (multiprocessing, NumPy)", [PY, os.path.join(EX, "pool_matmul.py"),
                                                     "--size", "512", "--tasks", "64"],
         {"OPENBLAS_NUM_THREADS": "1"}, 1),
        ("threads_blas.py executor", [PY, os.path.join(EX, "threads_blas.py"), "executor",
                                      "--tasks", "120"],
         {"OPENBLAS_NUM_THREADS": "1"}, 1),
        ("threads_blas.py joblib (threading)", [PY, os.path.join(EX, "threads_blas.py"),
                                                "joblib", "--tasks", "120"],
         {"OPENBLAS_NUM_THREADS": "1"}, 1),
        ("polars_pool.py", [PY, os.path.join(EX, "polars_pool.py")],
         {"POLARS_MAX_THREADS": "1"}, CHAOTIC),
        ("numexpr_pool.py", [PY, os.path.join(EX, "numexpr_pool.py")],
         {"NUMEXPR_NUM_THREADS": "1"}, 1),
        ("numba_pool.py (numba's OpenMP layer)", [PY, os.path.join(EX, "numba_pool.py"),
                                                  "--tasks", "4"],
         {"NUMBA_NUM_THREADS": "1"}, CHAOTIC),
    ]
    out.append(("cpuprof-rayon (Rust, Rayon), 2 processes", two(RAYON, "6000"),
                {"RAYON_NUM_THREADS": "1"}, 1))
    if "dgemm_openmp" in progs:
        out.append(("dgemm on OpenBLAS (OpenMP build), 2 processes",
                    two(progs["dgemm_openmp"], "256", "600"), {"OMP_NUM_THREADS": "1"}, CHAOTIC))
    if "dgemm_blis" in progs:
        # Single-threaded unless told: as a user who asked for a thread per core.
        out.append(("dgemm on BLIS (pthreads build) at BLIS_NUM_THREADS=2, 2 processes",
                    two(progs["dgemm_blis"], "256", "100"), {"BLIS_NUM_THREADS": "1"}, CHAOTIC,
                    {"BLIS_NUM_THREADS": "2"}))
    if "omp_llvm" in progs:
        out.append(("clang -fopenmp regions, 2 processes",
                    two(progs["omp_llvm"], "70000"), {"OMP_NUM_THREADS": "1"}, 1))
    onnx = [PY, os.path.join(EX, "onnx_pool.py")]
    out.append(("onnx_pool.py (onnxruntime sessions)", onnx, {}, 1, {},
                onnx + ["--intra-op-threads", "1"]))
    out = [c if len(c) >= 5 else c + ({},) for c in out]
    return [c if len(c) == 6 else c + (c[1],) for c in out]


def timed(argv, env):
    """(wall s, CPU s) of one run."""
    e = dict(os.environ, **env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def recorded(argv, work, env=None):
    """One recording: (largest estimated wall saving, its finding, wall, its CPU estimate)."""
    js = os.path.join(work, "s.json")
    subprocess.run([CPUPROF, "-q", "--json", js, "-o", os.devnull, "--"] + argv,
                   env=dict(os.environ, **(env or {})), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    with open(js) as f:
        v = json.load(f)
    fs = [f for f in v["findings"] if f["id"] in POOL_FINDINGS]
    if not fs:
        return 0.0, None, v["wall_s"], 0.0
    best = max(fs, key=lambda f: f["est_saving_wall_s"])
    return best["est_saving_wall_s"], best, v["wall_s"], best["est_saving_cpu_s"]


def knob(fix):
    """The setting a fix names: its leading `VAR=value`, else the assignment in its code."""
    first = fix.split(" ", 1)[0]
    if "=" in first:
        return first
    code = fix.split("`")[1] if fix.count("`") >= 2 else fix
    sets = [c.strip() for c in code.split(";") if "=" in c]
    return (sets[-1] if sets else code)[:48]


# Student's t at 97.5% by degrees of freedom (1-30); beyond, the normal's 1.96 is within 2%.
T975 = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14,
        2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05,
        2.05, 2.04]


def mean_ci(xs):
    """(mean, half-width of its 95% interval)."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("inf")
    t = T975[len(xs) - 2] if len(xs) - 1 <= len(T975) else 1.96
    return m, t * statistics.stdev(xs) / len(xs) ** 0.5


def ratio_ci(est, est_h, saving, saving_h):
    """est / saving and its 95% interval, the two relative errors in quadrature."""
    r = est / saving
    rel = ((est_h / est) ** 2 if est > 0 else 0) + (saving_h / saving) ** 2
    d = r * rel ** 0.5
    return r, max(0.0, r - d), r + d


# The precision the pairs aim for where a saving is near none: an estimate this small says
# "the fix will not pay", and a measured saving this small is what it means.
NIL_S = 0.02


def verdict(est, est_h, saving, saving_h):
    """(ratio text, within, consistent) for an estimate against a saving measured."""
    if saving - saving_h <= 0 and est <= NIL_S:  # a fix that will not pay, estimated so
        return "— (both ≈ 0)", True, True
    if saving <= 0:  # the fix costs time, and the estimate says it saves some
        return "— (saving ≤ 0)", False, est - est_h <= saving + saving_h
    r, lo, hi = ratio_ci(est, est_h, saving, saving_h)
    return f"{r:.2f} ({lo:.2f}..{hi:.2f})", 0.7 <= r <= 1.3, lo <= 1.3 and hi >= 0.7


def pairs_until_known(argv, base_env, fix, repeat, fixed_argv):
    """Alternating unprofiled runs (as it is, with the fix) until the mean saving is known."""
    base, fixed, base_cpu, fixed_cpu = [], [], [], []
    t0 = time.perf_counter()
    while True:
        for runs, cpus, env, cmd in ((base, base_cpu, base_env, argv),
                                     (fixed, fixed_cpu, dict(base_env, **fix), fixed_argv)):
            wall, cpu = timed(cmd, env)
            runs.append(wall)
            cpus.append(cpu)
        n = len(base)
        m, h = mean_ci([b - f for b, f in zip(base, fixed)])
        if n >= MIN_PAIRS * repeat and (h <= max(0.1 * abs(m), NIL_S)):
            break
        if n >= MAX_PAIRS * repeat or time.perf_counter() - t0 > PAIR_BUDGET * repeat:
            break
    return base, fixed, base_cpu, fixed_cpu


def main():
    only = sys.argv[1:]
    work = tempfile.mkdtemp()
    counts = {"cases": 0, "within": 0, "consistent": 0, "rec within": 0, "rec consistent": 0}
    try:
        progs = compile_programs(work)
        cores = min(os.cpu_count() or 1, len(os.sched_getaffinity(0)))
        print(f"machine: {os.cpu_count()} CPUs, {os.uname().release}; {RECORDINGS} recordings "
              f"beside as many with the fix, {MIN_PAIRS}-{MAX_PAIRS} alternating timed pairs "
              f"per case ({CHAOTIC}× each for a chaotic one)\n")
        print("| case | as it is, s: mean (range) | with the fix, s | measured saving, s: mean ± 95% (pairs) "
              "| est. wall, s: mean ± 95% | est. / measured (95%) | CPU as it is → fixed, s "
              "| est. CPU, s | CPU saved ÷ cores, s | recorded as it is → with the fix, s (fixed ones with a pool finding) "
              "| the recorded runs' saving, s: mean ± 95% | est. / recorded saving (95%) "
              "| finding (severity) | fix |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, argv, fix, repeat, as_is, fixed_argv in cases(progs):
            if only and not any(o in name for o in only):
                continue
            timed(argv, as_is)  # warm-up: page cache, Python bytecode
            # Each recording of the program as it is beside one of it with the fix: the
            # saving of the runs recorded, under the same recorder on both sides.
            recs, recs_fixed = [], []
            for _ in range(RECORDINGS * repeat):
                recs.append(recorded(argv, work, as_is))
                recs_fixed.append(recorded(fixed_argv, work, dict(as_is, **fix)))
            est, est_h = mean_ci([r[0] for r in recs])
            est_cpu = statistics.fmean(r[3] for r in recs)
            rec_wall = statistics.fmean(r[2] for r in recs)
            rec_fixed = statistics.fmean(r[2] for r in recs_fixed)
            # The fix applied, a pool finding is a false alarm.
            flagged = sum(1 for r in recs_fixed if r[1])
            rec_saving, rec_h = mean_ci([r[2] - rec_fixed for r in recs])
            named = [r[1] for r in recs if r[1]]
            base, fixed, base_cpu, fixed_cpu = pairs_until_known(argv, as_is, fix, repeat, fixed_argv)
            mb, mf = statistics.fmean(base), statistics.fmean(fixed)
            cb, cf = statistics.fmean(base_cpu), statistics.fmean(fixed_cpu)
            saving, saving_h = mean_ci([b - f for b, f in zip(base, fixed)])
            ratio, within, consistent = verdict(est, est_h, saving, saving_h)
            rec_ratio, rec_within, rec_consistent = verdict(est, est_h, rec_saving, rec_h)
            counts["cases"] += 1
            counts["within"] += within
            counts["consistent"] += consistent
            counts["rec within"] += rec_within
            counts["rec consistent"] += rec_consistent
            if named:
                # The finding of most recordings, and the severities it was given.
                top = statistics.mode(f["id"] for f in named)
                sevs = [f["severity"] for f in named if f["id"] == top]
                sev = ", ".join(f"{n} {s}" for s in ("info", "warning", "error")
                                if (n := sevs.count(s)))
                what = f"{top} ({sev}; {len(named)}/{len(recs)} recordings)"
                how = knob(next(f["fix"] for f in named if f["id"] == top))
            else:
                what, how = f"none (0/{len(recs)})", "—"
            mark = lambda w, c: " ✓" if w else ("" if c else " ✗")
            print(f"| {name} | {mb:.2f} ({min(base):.2f}..{max(base):.2f}) | {mf:.2f} "
                  f"| {saving:+.3f} ± {saving_h:.3f} ({len(base)}) | {est:.3f} ± {est_h:.3f} "
                  f"| {ratio}{mark(within, consistent)} | {cb:.2f} → {cf:.2f} | {est_cpu:.2f} "
                  f"| {(cb - cf) / cores:+.2f} | {rec_wall:.2f} → {rec_fixed:.2f} ({flagged}/{len(recs_fixed)} flagged) "
                  f"| {rec_saving:+.3f} ± {rec_h:.3f} | {rec_ratio}{mark(rec_within, rec_consistent)} "
                  f"| {what} | `{how}` |", flush=True)
        print(f"\nagainst the program without cpuprof: {counts['within']} of {counts['cases']} "
              f"within ±30% (✓), {counts['consistent']} consistent with it (✓ or unmarked; the "
              f"rest ✗); against the recorded runs' saving: {counts['rec within']} within, "
              f"{counts['rec consistent']} consistent")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
