"""Runs one command and prints its wall time and the CPU time of its whole process tree.

    python3 bench/timed.py [--out FILE] -- CMD [ARGS...]

Prints one line `wall_s=... cpu_s=... user_s=... sys_s=... exit=...` on stdout. CPU is the
kernel's rusage of the reaped children (the command and every descendant it reaped), so for
`cpuprof -- TARGET` it is cpuprof's own CPU plus the target's. The command's output goes to
FILE (default: discarded) so it cannot disturb the timing. Standard library only.
"""

import os
import resource
import subprocess
import sys
import time


def main():
    argv = sys.argv[1:]
    out = os.devnull
    if argv[:1] == ["--out"]:
        out, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: timed.py [--out FILE] -- CMD [ARGS...]")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "wb") as sink:
        start = time.monotonic()
        code = subprocess.call(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    sys_ = after.ru_stime - before.ru_stime
    print(f"wall_s={wall:.4f} cpu_s={user + sys_:.4f} user_s={user:.4f} sys_s={sys_:.4f} exit={code}")


if __name__ == "__main__":
    main()
