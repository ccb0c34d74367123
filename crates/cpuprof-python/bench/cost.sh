#!/bin/sh
# Cost of Python sampling: wall time of a script unprofiled, under cpuprof's Python sampler
# (non-blocking and blocking), and under `py-spy record` (blocking and --nonblocking).
# Usage: crates/cpuprof-python/bench/cost.sh [REPEATS]   (from the repository root; needs
# `cargo build --release -p cpuprof-python --examples` and `.venv/bin/pip install py-spy`)
set -eu
R=${1:-5}
T=${CARGO_TARGET_DIR:-target}
PS="$T/release/examples/pysample"
PY=.venv/bin/python
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wall() { # command... -> wall seconds
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l
}
for script in "examples/pool_matmul.py oversubscribed --tasks 64 --size 1024" \
              "crates/cpuprof-python/bench/pure_python.py"; do
    echo "== $script  (median of $R)"
    for mode in off nonblocking blocking; do
        m=$(for i in $(seq "$R"); do "$PS" --$mode --rate 100 -- $PY $script | sed -n 's/^wall \([0-9.]*\).*/\1/p'; done | median)
        echo "cpuprof python sampler $mode: $m s"
    done
    for flag in "" "--nonblocking"; do
        m=$(for i in $(seq "$R"); do wall .venv/bin/py-spy record $flag --subprocesses --rate 100 --idle --threads -o /tmp/pyspy-bench.txt --format raw -- $PY $script; done | median)
        echo "py-spy record ${flag:-(blocking)}: $m s"
    done
done
