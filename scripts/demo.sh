#!/usr/bin/env bash
# `make demo`: profile the reference workload in the setting cpuprof exists to find —
# as many processes as cores, each with OpenBLAS's default of one thread per core
# (N processes x N threads on N cores) — then show the summary and where the report is.
# Expects `make build` to have run; CPUPROF_BIN_DIR (set by the Makefile) is the binary dir.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN_DIR="${CPUPROF_BIN_DIR:-target/release}"
CPUPROF="$BIN_DIR/cpuprof"
MATMUL="$BIN_DIR/cpuprof-matmul"
OUT=out
CORES="$(nproc)"
SIZE="${DEMO_SIZE:-2048}"
ITERS="${DEMO_ITERS:-15}"

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
fi
exit "$status"
