#!/usr/bin/env python3
"""Runs a command N times and prints its median wall time and peak RSS.

measure.py RUNS [--before CMD] -- CMD...
Prints "median_ms max_rss_kib first_ms" on one line. --before runs a shell
command (untimed) before each run, e.g. to drop a cache. The command's own
output goes to /dev/null; a non-zero exit status (other than 1, which
`kiln changes` uses for invalid manifests) aborts.
"""
import os
import statistics
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    runs = int(args.pop(0))
    before = None
    if args[0] == "--before":
        before = args[1]
        args = args[2:]
    assert args.pop(0) == "--"
    times, rss = [], 0
    for _ in range(runs):
        if before:
            subprocess.run(before, shell=True, check=True)
        t0 = time.perf_counter()
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        times.append((time.perf_counter() - t0) * 1000)
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            sys.exit("%s exited %d" % (args, code))
        rss = max(rss, usage.ru_maxrss)
    print("%.1f %d %.1f" % (statistics.median(times), rss, times[0]))


if __name__ == "__main__":
    main()
