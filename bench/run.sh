#!/usr/bin/env bash
# Benchmarks of cpuprof's own cost. Run by hand (not part of `make test`):
#
#   bench/run.sh                      # every benchmark
#   bench/run.sh record_overhead      # only the named ones
#   RUNS=9 bench/run.sh               # more alternating runs per setting (default 7)
#   OLD_CPUPROF=/path/to/cpuprof bench/run.sh churn builds_matmul python_pool
#   POOL_SETTINGS="default --rate=50 py-spy" bench/run.sh python_pool   # what the pool compares
#   POOL_TASKS=240 bench/run.sh python_pool     # the same pool 5 times as long (default 48)
#                                     # process churn, the matmul and the Python pool, this
#                                     # build beside another
#   BENCH_SETTINGS="--no-stacks --no-switches default" bench/run.sh record_overhead
#                                     # the cpuprof settings record_overhead compares
#   bench/run.sh host                 # this host's cost of a wake-up and of the reads after
#                                     # it, and each recorder thread's CPU and wake-ups
#
# Prints a Markdown section per benchmark, headed by the machine it ran on, ready to paste
# into docs/benchmarks.md. Expects release binaries (`make build`); CPUPROF_BIN_DIR overrides
# target/release.
#
# Adding a benchmark: write a function `bench_<name>` that prints a `### ...` section (say what
# was run, the command, and a table) and add <name> to ALL_BENCHES. Use `timed` for each run,
# alternate the settings being compared run by run (the machine's load drifts), and report
# medians; `median`, `ratio` and `field` help.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN_DIR="${CPUPROF_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
CPUPROF="$BIN_DIR/cpuprof"
MATMUL="$BIN_DIR/cpuprof-matmul"
RUNS="${RUNS:-7}"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

ALL_BENCHES=(record_overhead churn builds_matmul python_pool memory sweep)
# The Python pool that python_pool and host record. POOL_TASKS: a longer run of the same
# program (its per-run noise averages out over more of the host's jitter; the busy part weighs
# more than the import, the honest direction).
POOL_WORKLOAD=(.venv/bin/python examples/pool_matmul.py fixed --workers 2 --size 1024
    --tasks "${POOL_TASKS:-48}")
# (agent_soak runs an hour: `bench/run.sh agent_soak`, not part of a plain `bench/run.sh`.)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

# timed CMD...: run CMD, print "wall_s=.. cpu_s=.. user_s=.. sys_s=.. exit=.." (tree rusage).
# CMD's output goes to $WORK/out (see `target_wall`).
timed() {
    "$PY" bench/timed.py --out "$WORK/out" -- "$@"
}

# target_wall: the wall time the last `timed` cpuprof-matmul reported itself (its `total` line:
# from its own start to its last worker's end), so profiled and unprofiled runs are timed alike
# and cpuprof's own start-up and finish are left out. Empty for other programs.
target_wall() {
    sed -n 's/^total .* wall_s=\([0-9.]*\) .*/\1/p' "$WORK/out"
}

# script_s: the time examples/pool_matmul.py measured itself from its first line to its last
# (its `script_s=`), for the last `timed` run of it.
script_s() {
    sed -n 's/^pool_matmul .* script_s=\([0-9.]*\) .*/\1/p' "$WORK/out"
}

# field NAME LINE: the value of NAME=value in a key=value line.
field() {
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

# median NUMBERS...: the median (mean of the middle two for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.4f\n", a[(NR + 1) / 2]
        else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ratio A B: A / B with 4 decimals.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.4f\n", a / b }'
}

# json_field FILE KEY: a top-level number from a summary JSON file.
json_field() {
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# alternate SETTINGS... -- WORKLOAD...: RUNS rounds of the unprofiled workload followed by one
# profiled run per setting (`default` means no extra flag). Fills the globals `plain` (wall s of
# the unprofiled runs) and `plain_target` (their `target_wall`) and, per setting, `wall`,
# `target` (`target_wall`), `own` (cpuprof's CPU s per second of target wall), `samples` (per
# second) and `lost`, as space-separated lists.
alternate() {
    local settings=() s i line json
    while [ "$1" != -- ]; do settings+=("$1"); shift; done
    shift
    local workload=("$@")
    plain=()
    plain_target=()
    declare -gA wall=() target=() own=() samples=() lost=()
    "${workload[@]}" >/dev/null # warm the page cache and the CPU frequency
    for ((i = 0; i < RUNS; i++)); do
        line="$(timed "${workload[@]}")"
        plain+=("$(field wall_s "$line")")
        plain_target+=("$(target_wall)")
        for s in "${settings[@]}"; do
            json="$WORK/run-$i.json"
            local flags=()
            [ "$s" = default ] || flags=("$s")
            line="$(timed "$CPUPROF" -q "${flags[@]}" --json "$json" -- "${workload[@]}")"
            [ "$(field exit "$line")" = 0 ] || { echo "cpuprof failed: $line" >&2; return 1; }
            wall[$s]+="$(field wall_s "$line") "
            target[$s]+="$(target_wall) "
            own[$s]+="$(awk -v c="$(json_field "$json" cpuprof_cpu_s)" \
                -v w="$(json_field "$json" wall_s)" 'BEGIN { printf "%.5f", c / w }') "
            samples[$s]+="$(awk -v n="$(json_field "$json" samples)" \
                -v w="$(json_field "$json" wall_s)" 'BEGIN { printf "%.0f", n / w }') "
            lost[$s]+="$(json_field "$json" lost_samples) "
        done
    done
}

# slowdown SETTING: "R (LO–HI)", the paired slowdown of SETTING against the unprofiled runs
# (whole command's wall time).
slowdown() {
    # shellcheck disable=SC2154
    paired "${plain[*]}" "${wall[$1]}"
}

# target_slowdown SETTING: the same for the wall time the target reported itself.
target_slowdown() {
    # shellcheck disable=SC2154
    paired "${plain_target[*]}" "${target[$1]}"
}

# paired BASE RUNS: "R (LO–HI)" from bench/ratio.py.
paired() {
    interval "$("$PY" bench/ratio.py "$1" "$2")"
}

# interval LINE: "R (LO–HI)" of a bench/ratio.py line.
interval() {
    echo "$(field ratio "$1") ($(field lo "$1")–$(field hi "$1"))"
}

# total NUMBERS...: their sum.
total() {
    printf '%s\n' "$@" | awk '{ s += $1 } END { print s + 0 }'
}

machine() {
    local model cores kernel
    model="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    cores="$(nproc)"
    kernel="$(uname -r)"
    echo "## Run of $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: ${model:-unknown CPU}, $cores online CPUs, Linux $kernel." \
        "Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)." \
        "cpuprof $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
    if awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v c="$cores" 'BEGIN { exit !(l > c / 2) }'; then
        echo
        echo "**The machine was busy with other work (load average above half the cores):" \
            "these numbers are noisy; re-run on an idle machine.**"
    fi
    echo
}

# ---------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------

# side_by_side TITLE DESCRIPTION -- WORKLOAD...: RUNS rounds of the unprofiled workload, then
# this build and, with OLD_CPUPROF, another build (the previous release), each with and
# without stacks; prints a table of wall time, slowdown and cpuprof's own CPU per build.
side_by_side() {
    local title="$1" what="$2"
    shift 3
    local workload=("$@")
    local builds=(new) b s i line json
    declare -A bin=([new]="$CPUPROF")
    if [ -n "${OLD_CPUPROF:-}" ]; then
        builds+=(old)
        bin[old]="$OLD_CPUPROF"
    fi
    declare -A cwall=() ccpu=() cnt=()
    local base=()
    "${workload[@]}" >/dev/null
    for ((i = 0; i < RUNS; i++)); do
        line="$(timed "${workload[@]}")"
        base+=("$(field wall_s "$line")")
        for b in "${builds[@]}"; do
            for s in default --no-stacks; do
                json="$WORK/side-$b.json"
                local flags=()
                [ "$s" = default ] || flags=("$s")
                line="$(timed "${bin[$b]}" -q "${flags[@]}" --json "$json" -- "${workload[@]}")"
                [ "$(field exit "$line")" = 0 ] || { echo "cpuprof failed: $line" >&2; return 1; }
                cwall["$b $s"]+="$(field wall_s "$line") "
                ccpu["$b $s"]+="$(json_field "$json" cpuprof_cpu_s) "
                cnt["$b $s"]="$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["processes"]))' "$json")"
            done
        done
    done
    echo "### $title"
    echo
    echo "Workload: $what ($RUNS runs per setting, alternating; \`new\` = this build, \`old\` = \`OLD_CPUPROF\`)."
    echo
    echo "| build | setting | median wall s | slowdown (95% interval) | median cpuprof CPU s | processes in the profile |"
    echo "|---|---|---|---|---|---|"
    echo "| unprofiled | | $(median "${base[@]}") | | | |"
    for b in "${builds[@]}"; do
        for s in default --no-stacks; do
            # shellcheck disable=SC2086
            echo "| \`$b\` | \`$s\` | $(median ${cwall["$b $s"]}) |" \
                "$(paired "${base[*]}" "${cwall["$b $s"]}") | $(median ${ccpu["$b $s"]}) | ${cnt["$b $s"]} |"
        done
    done
    echo
}

# The recorder's cost on process churn: 300 short processes one after another (each a
# `sh -c` loop of ~3 ms), the exit accounting's worst case (two netlink messages per task,
# a command line read per exec).
bench_churn() {
    local inner='x=0; while [ $x -lt 300 ]; do x=$((x+1)); done'
    side_by_side "Recorder overhead: process churn (300 short processes)" \
        "\`sh -c 'i=0; while [ \$i -lt 300 ]; do sh -c \"<300 shell additions>\"; i=\$((i+1)); done'\`" \
        -- sh -c "i=0; while [ \$i -lt 300 ]; do sh -c '$inner'; i=\$((i+1)); done"
}

# The same comparison of builds on the reference workload.
bench_builds_matmul() {
    local workload=("$MATMUL" --size 2048 --iters 10 --procs "$(nproc)" --threads auto)
    side_by_side "Recorder cost by build: oversubscribed matmul" \
        "\`${workload[*]#"$BIN_DIR/"}\`" -- "${workload[@]}"
}

# The cost of recording a Python pool (issue 13): a two-worker multiprocessing.Pool of NumPy
# products with BLAS limited to one thread, unprofiled, under cpuprof (default: perf + Python
# stacks; `--no-stacks`: procfs + Python stacks) and under `py-spy record --subprocesses
# --nonblocking` at the same 100 Hz, alternating run by run; cpuprof's own CPU from its summary.
bench_python_pool() {
    local venv=.venv/bin
    [ -x "$venv/py-spy" ] || { echo "bench python_pool: $venv/py-spy missing (make setup)" >&2; return 1; }
    local workload=("${POOL_WORKLOAD[@]}")
    local base=() base_script=() line i s json
    declare -A pwall=() pscript=() pcpu=()
    # POOL_SETTINGS: other cpuprof options to compare, one word each (`--rate=50`).
    # shellcheck disable=SC2206
    local settings=(${POOL_SETTINGS:-default --no-stacks py-spy})
    # With OLD_CPUPROF, that build's default recording alternates with the others too.
    [ -z "${OLD_CPUPROF:-}" ] || settings+=(old)
    "${workload[@]}" >/dev/null
    for ((i = 0; i < RUNS; i++)); do
        line="$(timed "${workload[@]}")"
        base+=("$(field wall_s "$line")")
        base_script+=("$(script_s)")
        for s in "${settings[@]}"; do
            json="$WORK/pool.json"
            case "$s" in
                py-spy)
                    line="$(timed "$venv/py-spy" record --subprocesses --nonblocking --rate 100 \
                        --format raw -o "$WORK/pyspy.txt" -- "${workload[@]}")" ;;
                default)
                    line="$(timed "$CPUPROF" -q --json "$json" -- "${workload[@]}")" ;;
                old)
                    line="$(timed "$OLD_CPUPROF" -q --json "$json" -- "${workload[@]}")" ;;
                *)
                    line="$(timed "$CPUPROF" -q "$s" --json "$json" -- "${workload[@]}")" ;;
            esac
            [ "$(field exit "$line")" = 0 ] || { echo "$s failed: $line" >&2; return 1; }
            pwall[$s]+="$(field wall_s "$line") "
            pscript[$s]+="$(script_s) "
            [ "$s" = py-spy ] || pcpu[$s]+="$(json_field "$json" cpuprof_cpu_s) "
        done
    done
    echo "### Recorder overhead: Python pool (2 workers, NumPy, 1 BLAS thread each)"
    echo
    echo "Workload: \`${workload[*]}\` ($RUNS runs per setting, alternating; py-spy $("$venv/py-spy" --version | cut -d' ' -f2))."
    echo "*The program* is the script's own time from its first line to its last (\`script_s\`: NumPy's"
    echo "import, the pool, its shutdown), which is what a recording slows; *the command* is the"
    echo "wall time of the whole command, which adds the recorder's own start-up before the"
    echo "program starts and its write-up after the program ends."
    echo
    echo "| recorder | program: median s | program: slowdown (95% interval) | program: median of the pairs | command: median s | command: slowdown (95% interval) | median recorder CPU s |"
    echo "|---|---|---|---|---|---|---|"
    echo "| unprofiled | $(median "${base_script[@]}") | | | $(median "${base[@]}") | | |"
    for s in "${settings[@]}"; do
        local cpu="(not reported)"
        # shellcheck disable=SC2086
        [ "$s" = py-spy ] || cpu="$(median ${pcpu[$s]})"
        # shellcheck disable=SC2086
        local label="cpuprof $s"
        [ "$s" = py-spy ] && label="py-spy record --subprocesses --nonblocking --rate 100"
        [ "$s" = old ] && label="$OLD_CPUPROF (default)"
        # The median of the paired ratios too: less moved by one slow run on a noisy host
        # (issue 13's own measure).
        local r
        r="$("$PY" bench/ratio.py "${base_script[*]}" "${pscript[$s]}")"
        echo "| \`$label\` |" \
            "$(median ${pscript[$s]}) | $(interval "$r") | $(field median "$r") |" \
            "$(median ${pwall[$s]}) | $(paired "${base[*]}" "${pwall[$s]}") | $cpu |"
    done
    echo
}

# Memory of a long recording of many threads (issue 14): bench/threads.c with
# BENCH_THREADS threads (1000) recorded for each of BENCH_SECS (60 300); cpuprof's largest
# resident set (`cpuprof_max_rss_kb`), the saved file's size and the time `cpuprof report`
# takes to render the HTML from it. Growth per minute between the two lengths projects an
# hour.
bench_memory() {
    local n="${BENCH_THREADS:-1000}" exe="$WORK/threads" secs line json save
    # shellcheck disable=SC2206
    local lengths=(${BENCH_SECS:-60 300})
    gcc -O2 -pthread -o "$exe" bench/threads.c
    echo "### Memory: $n threads recorded for ${lengths[*]} s"
    echo
    echo "Workload: \`bench/threads.c $n SECONDS\` (each thread wakes every 100 ms for ~0.1 ms)."
    echo "Recorded with \`cpuprof -q --save FILE --json FILE\` (default interval and rate)."
    echo
    echo "| seconds | cpuprof max RSS MB | saved file MB | report render s | cpuprof CPU s | thread points kept |"
    echo "|---|---|---|---|---|---|"
    local prev_rss="" prev_secs=""
    for secs in "${lengths[@]}"; do
        json="$WORK/mem.json"
        save="$WORK/mem.cpuprof"
        line="$(timed "$CPUPROF" -q --save "$save" --json "$json" -- "$exe" "$n" "$secs")"
        [ "$(field exit "$line")" = 0 ] || { echo "cpuprof failed: $line" >&2; return 1; }
        local rss file render points
        rss="$(awk -v k="$(json_field "$json" cpuprof_max_rss_kb)" 'BEGIN { printf "%.1f", k / 1024 }')"
        file="$(awk -v b="$(stat -c %s "$save")" 'BEGIN { printf "%.1f", b / 1048576 }')"
        render="$(field wall_s "$(timed "$CPUPROF" report -q "$save" -o "$WORK/mem.html")")"
        points="$("$PY" - "$save" <<'PY'
import gzip, json, sys
p = json.load(gzip.open(sys.argv[1]))["profile"]
print(sum(len(t["points"]) for pr in p["processes"] for t in pr["threads"]))
PY
)"
        echo "| $secs | $rss | $file | $render | $(json_field "$json" cpuprof_cpu_s) | $points |"
        if [ -n "$prev_rss" ]; then
            echo "| (growth per minute, $prev_secs→$secs s) | $(awk -v a="$prev_rss" -v b="$rss" -v s="$prev_secs" -v e="$secs" 'BEGIN { printf "%.2f", (b - a) / ((e - s) / 60) }') | | | | |"
        fi
        prev_rss="$rss"
        prev_secs="$secs"
    done
    echo
}

# The recorder's cost on the oversubscribed reference workload: its wall time unprofiled,
# under the procfs recorder alone (`--no-stacks`, issue 2) and under the default recording
# (procfs + perf stacks and switches + Python sampler, issue 4), the three alternating run by
# run. The slowdown is the geometric mean of paired ratios with a 95% interval
# (bench/ratio.py); cpuprof's own CPU comes from its summary (`cpuprof_cpu_s`, RUSAGE_SELF).
bench_record_overhead() {
    local procs size iters
    procs="$(nproc)"
    size="${BENCH_SIZE:-2048}"
    iters="${BENCH_ITERS:-10}"
    local workload=("$MATMUL" --size "$size" --iters "$iters" --procs "$procs" --threads auto)
    # shellcheck disable=SC2206 # one setting per word
    local settings=(${BENCH_SETTINGS:-"--no-stacks" "--no-switches" "default"}) s
    alternate "${settings[@]}" -- "${workload[@]}" || return 1
    echo "### Recorder overhead: oversubscribed matmul"
    echo
    echo "Workload: \`${workload[*]#"$BIN_DIR/"}\` ($RUNS runs per setting, alternating)."
    echo "Profiled: \`cpuprof -q [SETTING] --json FILE -- <workload>\` (default interval and rate)."
    echo
    echo "Slowdown of the target's wall time as it reported it (from its start to its last"
    echo "worker's end), and of the whole command's (cpuprof's start-up and finish included)."
    echo
    echo "| setting | median target wall s | target slowdown (95% interval) | command slowdown (95% interval) | cpuprof CPU s per target s (% of $procs cores) | samples/s | lost |"
    echo "|---|---|---|---|---|---|---|"
    echo "| unprofiled | $(median "${plain_target[@]}") | | | | | |"
    for s in "${settings[@]}"; do
        local mo
        # shellcheck disable=SC2086
        mo="$(median ${own[$s]})"
        # shellcheck disable=SC2086
        echo "| \`$s\` | $(median ${target[$s]}) | $(target_slowdown "$s") | $(slowdown "$s") |" \
            "$mo ($(awk -v o="$mo" -v c="$procs" 'BEGIN { printf "%.2f%%", 100 * o / c }')) |" \
            "$(median ${samples[$s]}) | $(total ${lost[$s]}) |"
    done
    echo
    local all="All runs, command wall s: unprofiled ${plain[*]}"
    for s in "${settings[@]}"; do
        all+="; \`$s\` ${wall[$s]% }"
    done
    echo "$all."
    echo
    all="All runs, target wall s: unprofiled ${plain_target[*]}"
    for s in "${settings[@]}"; do
        all+="; \`$s\` ${target[$s]% }"
    done
    echo "$all."
    echo
}

# `cpuprof sweep`'s own cost per run: each run is a procfs-only recording (no perf, no Python
# sampler), so its CPU is cpuprof's poller (the JSON's recorder_cpu_per_run_s), and its wall cost
# is what the sweep spends around the target's own wall time (launch, joins, analysis): the
# sweep's elapsed time minus the target wall of every run, per run. The `--no-stacks` row of
# record_overhead is the slowdown of the target itself under the same recorder.
bench_sweep() {
    local workload=("$MATMUL" --size 256 --iters 1500 --procs "$(nproc)" --threads auto)
    local json="$WORK/sweep.json"
    "$CPUPROF" sweep -q --runs "$RUNS" --json "$json" --out-dir "$WORK/sweep-runs" \
        -- "${workload[@]}" || return 1
    echo "### Sweep: cpuprof's cost per run"
    echo
    echo "Workload: \`cpuprof sweep --runs $RUNS -- ${workload[*]#"$BIN_DIR/"}\`."
    echo
    "$PY" - "$json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
cands = v["candidates"]
runs, wall = v["runs_total"], v["target_wall_total_s"]
print("| candidates | runs (incl. first recording, warm-ups) | elapsed s | target wall s, all runs "
      "| sweep wall per run s | cpuprof CPU per run s |")
print("|---|---|---|---|---|---|")
print(f"| {len(cands)} | {runs} | {v['elapsed_s']:.2f} | {wall:.2f} | "
      f"{(v['elapsed_s'] - wall) / runs:.3f} | {v['recorder_cpu_per_run_s']:.4f} |")
print()
rec = v["recommended"]
print(f"Recommended: {rec['setting'] or 'as it is'} ({rec['reason']}), saving "
      f"{rec['saving_wall_s']:.2f} s of wall and {rec['saving_cpu_s']:.2f} s of CPU.")
print()
PY
}

# Native stacks (perf cpu-clock + unwinding) on the oversubscribed matmul: cpuprof without
# stacks, at the default rate and at 1000 Hz, alternating run by run. The difference in
# cpuprof's own CPU between --no-stacks and a rate is what sampling + unwinding costs; the
# summary JSON gives the samples unwound and lost.
bench_stacks() {
    local size iters procs
    procs="$(nproc)"
    size="${BENCH_SIZE:-1024}"
    iters="${BENCH_ITERS:-20}"
    local workload=("$MATMUL" --size "$size" --iters "$iters" --procs "$procs" --threads auto)
    local settings=("--no-stacks" "--rate=100" "--rate=250" "--rate=1000") s
    alternate "${settings[@]}" -- "${workload[@]}" || return 1
    local mp
    mp="$(median "${plain[@]}")"
    echo "### Native stacks: cost of perf sampling and unwinding"
    echo
    echo "Workload: \`${workload[*]#"$BIN_DIR/"}\` ($RUNS runs per setting, alternating)."
    echo
    echo "| setting | median wall s | slowdown (95% interval) | cpuprof CPU s per target s | samples/s | lost |"
    echo "|---|---|---|---|---|---|"
    echo "| unprofiled | $mp | 1 | | | |"
    for s in "${settings[@]}"; do
        # shellcheck disable=SC2086
        echo "| \`$s\` | $(median ${wall[$s]}) | $(slowdown "$s") | $(median ${own[$s]}) |" \
            "$(median ${samples[$s]}) | $(total ${lost[$s]}) |"
    done
    echo
}
ALL_BENCHES+=(stacks)

# The kernel's cost of a context switch under each setting: bench/yield.c (two threads pinned
# to one CPU yielding in turn) unprofiled and profiled, alternating; ns per yield, median.
# The switch records' part of the overhead is this difference times the target's switches.
bench_switch_cost() {
    local exe="$WORK/yield" s i line
    gcc -O2 -pthread -o "$exe" bench/yield.c
    local settings=("--no-stacks" "--no-switches" "default" "--per-task-events")
    declare -A ns=()
    local plain_ns=()
    for ((i = 0; i < RUNS; i++)); do
        plain_ns+=("$(field ns_per_yield "$("$exe")")")
        for s in "${settings[@]}"; do
            local flags=()
            [ "$s" = default ] || flags=("$s")
            line="$("$CPUPROF" -q "${flags[@]}" -- "$exe")"
            ns[$s]+="$(field ns_per_yield "$line") "
        done
    done
    echo "### The kernel's cost per context switch"
    echo
    echo "Program: \`bench/yield.c\` (two threads on CPU 0 calling \`sched_yield\` in turn for 2 s;" \
        "$RUNS runs per setting, alternating)."
    echo
    echo "| under | ns per yield (median) |"
    echo "|---|---|"
    echo "| nothing | $(median "${plain_ns[@]}") |"
    for s in "${settings[@]}"; do
        # shellcheck disable=SC2086
        echo "| \`cpuprof $s\` | $(median ${ns[$s]}) |"
    done
    echo
}
ALL_BENCHES+=(switch_cost)

# What a recorder's tick costs on this host (bench/cold.c: a wake-up and the reads after it,
# every core busy), and each recorder thread's CPU and wake-ups recording the Python pool
# (bench/recorder_threads.py). Both say why the same build costs more on one host than on
# another; the first needs no recorder at all.
bench_host() {
    local exe="$WORK/cold" venv=".venv/bin"
    gcc -O2 -o "$exe" bench/cold.c
    echo "### This host's cost of a tick"
    echo
    echo "\`bench/cold.c\` (500 times per sleep; µs of the reading thread's own CPU):"
    echo
    echo '```'
    "$exe"
    echo '```'
    echo
    [ -x "$venv/python" ] || return 0
    echo "Each recorder thread recording the Python pool (\`bench/recorder_threads.py" \
        "--runs $RUNS\`):"
    echo
    echo '```'
    "$venv/python" bench/recorder_threads.py --runs "$RUNS" "$CPUPROF" -- "${POOL_WORKLOAD[@]}" |
        sed -n '/^median/,$p'
    echo '```'
    echo
}
ALL_BENCHES+=(host)

# `cpuprof top`'s own cost (issue 18: at most 1% of one core watching 300 processes at the
# default interval). BENCH_PROCS (300) processes are started beside the machine's own: four
# in five `sleep`, one in five `bench/threads.c 4` (four threads waking every 100 ms). The view
# runs in a real terminal (tmux, 120x40) as a user runs it; after a 5 s warm-up its CPU
# (utime + stime of /proc/PID/stat) is read over BENCH_SECS (30). procps `top -d 1` in the
# same terminal, alternating with it, is the reference.
bench_top() {
    local n="${BENCH_PROCS:-300}" secs="${BENCH_SECS:-30}" rounds="${TOP_RUNS:-3}"
    local exe="$WORK/threads" pids=() i r tool
    gcc -O2 -pthread -o "$exe" bench/threads.c
    for ((i = 0; i < n; i++)); do
        if ((i % 5 == 0)); then
            "$exe" 4 3600 >/dev/null 2>&1 &
        else
            sleep 3600 &
        fi
        pids+=($!)
    done
    sleep 2
    local watched threads
    watched="$(ls -d /proc/[0-9]* | wc -l)"
    threads="$(ls -d /proc/[0-9]*/task/[0-9]* 2>/dev/null | wc -l)"
    declare -A pct=()
    local sock="$WORK/tmux.sock"
    for ((r = 0; r < rounds; r++)); do
        for tool in cpuprof top; do
            local cmd
            case "$tool" in
                cpuprof) cmd="$CPUPROF top" ;;
                top) cmd="top -d 1" ;;
            esac
            tmux -S "$sock" new-session -d -s bench -x 120 -y 40 "$cmd"
            sleep 5
            local pid
            pid="$(tmux -S "$sock" display-message -p -t bench '#{pane_pid}')"
            local t0 t1
            t0="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
            sleep "$secs"
            t1="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
            tmux -S "$sock" kill-server
            sleep 1
            pct[$tool]+="$(awk -v a="$t0" -v b="$t1" -v s="$secs" -v hz="$(getconf CLK_TCK)" \
                'BEGIN { printf "%.3f", (b - a) / hz / s * 100 }') "
        done
    done
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    echo "### \`cpuprof top\`'s own cost"
    echo
    echo "$watched processes ($threads threads) on the machine: $n started for the benchmark" \
        "(4 in 5 \`sleep\`, 1 in 5 \`bench/threads.c 4\`, four threads waking every 100 ms)."
    echo "Each view ran in tmux (120x40) at its default interval (1 s); its CPU over ${secs} s" \
        "after a 5 s warm-up, $rounds rounds alternating."
    echo
    echo "| view | % of one core (median) | runs |"
    echo "|---|---|---|"
    # shellcheck disable=SC2086
    echo "| \`cpuprof top\` | $(median ${pct[cpuprof]}) | ${pct[cpuprof]}|"
    # shellcheck disable=SC2086
    echo "| procps \`top -d 1\` | $(median ${pct[top]}) | ${pct[top]}|"
    echo
}
ALL_BENCHES+=(top)

# `cpuprof agent` over BENCH_SECS (3600) of process churn: its RSS, CPU and series each
# minute (bench/agent_soak.py).
bench_agent_soak() {
    local secs="${BENCH_SECS:-3600}"
    echo "### \`cpuprof agent\`: memory over $((secs / 60)) minutes of process churn"
    echo
    echo "\`bench/agent_soak.py\`: the agent at its defaults (machine-wide, 1 s interval, 10 s window)," \
        "20 long-lived sleepers, ~10 short processes a second (1 in 5 with a pool of 3 threads)," \
        "/metrics scraped every 15 s."
    echo
    "$PY" bench/agent_soak.py "$CPUPROF" "$secs"
    echo
}

# ---------------------------------------------------------------------------------------------

main() {
    local benches=("$@") b
    [ ${#benches[@]} -gt 0 ] || benches=("${ALL_BENCHES[@]}")
    for b in "${benches[@]}"; do
        declare -F "bench_$b" >/dev/null || {
            echo "unknown benchmark '$b' (known: ${ALL_BENCHES[*]})" >&2
            exit 2
        }
    done
    for x in "$CPUPROF" "$MATMUL"; do
        [ -x "$x" ] || { echo "$x is missing: run 'make build'" >&2; exit 1; }
    done
    machine
    for b in "${benches[@]}"; do
        "bench_$b"
    done
}

main "$@"
