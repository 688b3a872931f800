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
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interleave import run_once  # noqa: E402


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
        wall, maxrss, _ = run_once(args, before)
        times.append(wall)
        rss = max(rss, maxrss)
    print("%.1f %d %.1f" % (statistics.median(times), rss, times[0]))


if __name__ == "__main__":
    main()
