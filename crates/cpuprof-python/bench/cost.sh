#!/bin/sh
# Cost of Python sampling: wall time of a script unprofiled, under cpuprof's Python sampler
# (non-blocking and blocking, 100 Hz) and under `py-spy record` (its default blocking mode and
# --nonblocking, 100 Hz, --subprocesses). Runs are interleaved (round robin) so that load from
# other work on the machine hits every mode alike; prints the median wall time of each mode and
# the median CPU of the sampler itself.
# Usage, from the repository root:
#   cargo build --release -p cpuprof-python --examples && .venv/bin/pip install py-spy
#   crates/cpuprof-python/bench/cost.sh [REPEATS]
set -eu
R=${1:-5}
T=${CARGO_TARGET_DIR:-target}
PS="$T/release/examples/pysample"
PY=.venv/bin/python
OUT=$(mktemp -d)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for script in "examples/pool_matmul.py oversubscribed --tasks 64 --size 1024" \
              "crates/cpuprof-python/bench/pure_python.py"; do
    rm -f "$OUT"/*
    for i in $(seq "$R"); do
        for mode in off nonblocking blocking; do
            "$PS" --$mode --rate 100 -- $PY $script | grep '^wall' >> "$OUT/$mode"
        done
        for flag in blocking nonblocking; do
            f=""; [ $flag = nonblocking ] && f=--nonblocking
            /usr/bin/time -f "%e %U %S" -o "$OUT/t" .venv/bin/py-spy record $f --subprocesses \
                --rate 100 --idle --threads -o "$OUT/raw.txt" --format raw -- $PY $script >/dev/null 2>&1
            cat "$OUT/t" >> "$OUT/pyspy-$flag"
        done
    done
    echo "== $script  (median of $R, load average $(cut -d' ' -f1 /proc/loadavg))"
    for mode in off nonblocking blocking; do
        w=$(sed 's/^wall \([0-9.]*\).*/\1/' "$OUT/$mode" | median)
        c=$(sed 's/.*sampler_cpu \([0-9.]*\).*/\1/' "$OUT/$mode" | median)
        r=$(sed 's/.*read_us \([0-9.]*\).*/\1/' "$OUT/$mode" | median)
        p=$(sed 's/.*paused_s \([0-9.]*\).*/\1/' "$OUT/$mode" | median)
        k=$(sed 's/.*ticks \([0-9]*\).*/\1/' "$OUT/$mode" | median)
        echo "cpuprof python sampler, $mode: wall $w s, sampler CPU $c s, ticks $k, read $r us/process, target stopped $p s (summed over processes)"
    done
    for flag in blocking nonblocking; do
        w=$(cut -d' ' -f1 "$OUT/pyspy-$flag" | median)
        echo "py-spy record, $flag: wall $w s (includes py-spy's start-up and output)"
    done
done
rm -rf "$OUT"
