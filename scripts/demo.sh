#!/usr/bin/env bash
# `make demo`: profile the reference workload in the setting cpuprof exists to find —
# as many processes as cores, each with OpenBLAS's default of one thread per core
# (N processes x N threads on N cores) — then show the summary and where the report is, and
# time the workload without cpuprof as it is and with the fix, so the saving cpuprof estimated
# stands next to the one measured. Small matrices (256) are where the fix matters: each
# product is a short parallel region whose threads must all be on a core at once (measured on
# a 2-core machine: 256 runs ~20% longer with default threads than with 1; 2048 only ~2%).
# Expects `make build` to have run; CPUPROF_BIN_DIR (set by the Makefile) is the binary dir.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN_DIR="${CPUPROF_BIN_DIR:-target/release}"
CPUPROF="$BIN_DIR/cpuprof"
MATMUL="$BIN_DIR/cpuprof-matmul"
OUT=out
CORES="$(nproc)"
SIZE="${DEMO_SIZE:-256}"
ITERS="${DEMO_ITERS:-1500}"
TIMED_RUNS="${DEMO_TIMED_RUNS:-3}"
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

for b in "$CPUPROF" "$MATMUL"; do
    [ -x "$b" ] || { echo "demo: $b is missing; run 'make build'" >&2; exit 1; }
done
mkdir -p "$OUT"
rm -f "$OUT/demo.html" "$OUT/demo.cpuprof" "$OUT/demo.json"

workload=("$MATMUL" --size "$SIZE" --iters "$ITERS" --procs "$CORES" --threads auto)
echo "demo: $CORES processes x OpenBLAS default threads on $CORES cores:"
echo "demo: $CPUPROF -o $OUT/demo.html --save $OUT/demo.cpuprof --json $OUT/demo.json -- ${workload[*]}"
echo
status=0
"$CPUPROF" -o "$OUT/demo.html" --save "$OUT/demo.cpuprof" --json "$OUT/demo.json" \
    -- "${workload[@]}" || status=$?

echo
if [ -s "$OUT/demo.html" ]; then
    echo "demo: report: $(realpath "$OUT/demo.html")  (open it in a browser)"
else
    echo "demo: no HTML report was written; what the run produced:"
    found=0
    for f in "$OUT/demo.cpuprof" "$OUT/demo.json"; do
        if [ -s "$f" ]; then
            found=1
            echo "  $(realpath "$f")"
        fi
    done
    [ "$found" -eq 1 ] || echo "  (nothing)"
    if [ -s "$OUT/demo.cpuprof" ]; then
        if [ "$status" -ne 0 ]; then
            # The recording was saved but cpuprof stopped before or while reporting:
            # show the summary from the saved profile.
            echo "demo: the summary, from the saved profile:"
            "$CPUPROF" report "$OUT/demo.cpuprof" || true
        fi
        echo "demo: re-read the profile with: $CPUPROF report $OUT/demo.cpuprof"
    fi
fi
if [ "$status" -ne 0 ]; then
    echo "demo: cpuprof exited with status $status" >&2
    exit "$status"
fi

# The estimate beside the measurement: alternating runs without cpuprof, as it is and with
# OPENBLAS_NUM_THREADS=1.
echo
echo "demo: timing the workload without cpuprof, $TIMED_RUNS alternating runs each, as it is and with OPENBLAS_NUM_THREADS=1 ..."
"$PY" - "$OUT/demo.json" "$TIMED_RUNS" "${workload[@]}" <<'PY'
import json, os, statistics, subprocess, sys, time
v = json.load(open(sys.argv[1]))
runs, cmd = int(sys.argv[2]), sys.argv[3:]
def timed(env):
    t0 = time.perf_counter()
    subprocess.run(cmd, env=dict(os.environ, **env), stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0
base, fixed = [], []
for _ in range(runs):
    base.append(timed({}))
    fixed.append(timed({"OPENBLAS_NUM_THREADS": "1"}))
mb, mf = statistics.median(base), statistics.median(fixed)
est = max((f["est_saving_wall_s"] for f in v["findings"]), default=0.0)
print(f"demo: measured: {mb:.2f} s as it is, {mf:.2f} s with the fix: {mb - mf:+.2f} s "
      f"({100 * (mb - mf) / mb:+.0f}%); cpuprof estimated {est:.2f} s from one recording")
PY
