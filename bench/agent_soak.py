#!/usr/bin/env python3
"""`cpuprof agent` over a long run with process churn: its resident set, its CPU and the
series it serves, sampled every minute (issue 19: "RSS flat after the first minutes").

    bench/agent_soak.py CPUPROF SECONDS

Beside the machine's own processes it keeps 20 long-lived sleepers and starts ~10 short
processes a second (each a `sh -c` that lives 0-300 ms, some with a thread pool of a few
threads: `bench/threads.c`), and scrapes /metrics every 15 s as Prometheus would. Prints a
Markdown table: minute, agent RSS MB, agent CPU s, series served, processes watched.
"""
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    cpuprof, seconds = sys.argv[1], float(sys.argv[2])
    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.mkdtemp()
    threads = os.path.join(tmp, "threads")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", threads, os.path.join(here, "threads.c")],
                   check=True)
    port = free_port()
    agent = subprocess.Popen([cpuprof, "agent", "--listen", f"127.0.0.1:{port}"],
                             stderr=subprocess.DEVNULL)
    sleepers = [subprocess.Popen(["sleep", str(int(seconds) + 60)]) for _ in range(20)]
    children = []
    start = time.monotonic()
    next_scrape = start + 2
    next_report = start + 60
    print("| minute | agent RSS MB | agent CPU s | series served | processes watched |")
    print("|---|---|---|---|---|")
    series = processes = 0
    started = 0
    try:
        while time.monotonic() - start < seconds:
            # ~10 short processes a second.
            for _ in range(1):
                if random.random() < 0.2:
                    cmd = [threads, "3", f"0.{random.randint(1, 3)}"]
                else:
                    cmd = ["sh", "-c", f"sleep 0.{random.randint(0, 3)}"]
                children.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
                started += 1
            children = [c for c in children if c.poll() is None]
            now = time.monotonic()
            if now >= next_scrape:
                next_scrape += 15
                try:
                    text = urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
                    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
                    series = len(lines)
                    for l in lines:
                        if l.startswith("cpuprof_machine_processes "):
                            processes = int(float(l.split()[1]))
                except OSError as e:
                    print(f"scrape failed: {e}", file=sys.stderr)
            if now >= next_report:
                minute = round((now - start) / 60)
                print(f"| {minute} | {rss_mb(agent.pid):.1f} | {cpu_s(agent.pid):.2f} | "
                      f"{series} | {processes} |", flush=True)
                next_report += 60
            time.sleep(0.1)
    finally:
        agent.terminate()
        agent.wait()
        for p in sleepers + children:
            p.kill()
        for p in sleepers + children:
            p.wait()
    print(f"\n{started} short processes started over {seconds / 60:.0f} minutes.")


if __name__ == "__main__":
    main()
