"""A mostly-waiting program: CPU time far below wall time.

Not every slow program is short of CPU. This one spends its time in a few threads that
sleep, a thread that waits for disk writes to reach storage (fsync), and a main thread
blocked on a queue. Under cpuprof the CPU time is a small fraction of the wall time and
the threads sit in S (sleeping) or D (disk) state: adding cores or threads would not help;
the waiting would have to go.

    cpuprof -- .venv/bin/python examples/waiting.py --seconds 3
"""

import argparse
import os
import queue
import tempfile
import threading
import time


def sleeper(stop, done):
    """Wakes up every 50 ms, does almost nothing, sleeps again."""
    n = 0
    while not stop.is_set():
        time.sleep(0.05)
        n += 1
    done.put(("sleeper", n))


def writer(stop, done, directory):
    """Writes small blocks and waits for each to reach the disk."""
    n = 0
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        while not stop.is_set():
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
            n += 1
            time.sleep(0.01)
    done.put(("writer", n))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to wait (default 3)")
    parser.add_argument("--sleepers", type=int, default=4, help="sleeping threads (default 4)")
    parser.add_argument("--dir", default=None, help="directory for the fsync'd file (default: TMPDIR)")
    args = parser.parse_args()
    if args.seconds <= 0 or args.sleepers < 0:
        parser.error("--seconds must be positive and --sleepers not negative")

    stop, done = threading.Event(), queue.Queue()
    threads = [threading.Thread(target=sleeper, args=(stop, done), name=f"sleeper-{i}")
               for i in range(args.sleepers)]
    threads.append(threading.Thread(target=writer, args=(stop, done, args.dir), name="writer"))

    wall0, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    # The main thread waits on a queue, not in a loop.
    try:
        done.get(timeout=args.seconds)
    except queue.Empty:
        pass
    stop.set()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    print(f"waiting threads={len(threads)} wall_s={wall:.3f} cpu_s={cpu:.3f} "
          f"cpu_share={cpu / wall:.3f}")


if __name__ == "__main__":
    main()
