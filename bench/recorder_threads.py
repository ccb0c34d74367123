#!/usr/bin/env python3
"""Each recorder thread's CPU and wake-ups while it records a command.

    bench/recorder_threads.py [--runs N] CPUPROF [CPUPROF ...] -- COMMAND...

Runs `CPUPROF -q -o /dev/null -- COMMAND` for each binary given, in turn, N times (default 4),
and watches the recorder's threads from outside: every 3 ms it reads each thread's
`schedstat` (CPU, ns) and `status` (voluntary context switches: one per sleep, so one per
wake-up), keeping the last reading of each. Prints one line per thread and run, then each
binary's median per thread in ms of CPU and wake-ups per second of the recording.

Why from outside: an outer sampler (perf, a second cpuprof) charges the cold caches a thread
meets after a wake-up to whichever call comes first; the thread's own clock around its parts
is the other honest way (docs/benchmarks.md, twelfth and thirteenth sessions).
"""
import os
import statistics
import subprocess
import sys
import time


def watch(argv):
    """Runs argv; returns ({tid: (name, cpu_ms, wakeups)}, wall s)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = {}
    while p.poll() is None:
        try:
            tids = os.listdir(f"/proc/{p.pid}/task")
        except FileNotFoundError:
            break
        for tid in tids:
            base = f"/proc/{p.pid}/task/{tid}"
            try:
                with open(f"{base}/status") as f:
                    status = f.read()
                with open(f"{base}/schedstat") as f:
                    cpu_ns = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            fields = dict(l.split(":\t", 1) for l in status.splitlines() if ":\t" in l)
            name = fields["Name"].strip()
            seen[tid] = (name, cpu_ns / 1e6, int(fields["voluntary_ctxt_switches"]))
        time.sleep(0.003)
    p.wait()
    return seen, time.perf_counter() - t0


def main():
    args = sys.argv[1:]
    runs = 4
    if args[:1] == ["--runs"]:
        runs, args = int(args[1]), args[2:]
    if "--" not in args:
        sys.exit(__doc__)
    cut = args.index("--")
    binaries, command = args[:cut], args[cut + 1:]
    per = {b: {} for b in binaries}
    for run in range(runs):
        for b in binaries:
            threads, wall = watch([b, "-q", "-o", os.devnull, "--"] + command)
            for name, cpu_ms, wakeups in sorted(threads.values()):
                print(f"run {run + 1} {b}: {name:<16} {cpu_ms:7.1f} ms CPU {wakeups:5d} wake-ups"
                      f" in {wall:.2f} s")
                per[b].setdefault(name, []).append((cpu_ms / wall, wakeups / wall))
    print("\nmedian per second of the recording: ms of CPU, wake-ups")
    for b in binaries:
        for name, vals in sorted(per[b].items()):
            cpu = statistics.median(v[0] for v in vals)
            wake = statistics.median(v[1] for v in vals)
            print(f"{b}: {name:<16} {cpu:6.2f} ms/s {wake:6.1f} /s")


if __name__ == "__main__":
    main()
