#!/usr/bin/env python3
"""Runs two commands in turn, RUNS times each (A B A B ...), and prints the
median wall time and the peak RSS of each:

    alternate.py RUNS [--pause SECONDS] CMD_A... :: CMD_B...
    -> "a_median_ms a_max_rss_kib b_median_ms b_max_rss_kib"

Alternating spreads a slow disk or a busy neighbour over both. --pause
sleeps (untimed) before each run. The commands'
output goes to /dev/null; any non-zero exit status aborts with the command.
"""
import os
import statistics
import subprocess
import sys
import time


def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    ms = (time.perf_counter() - t0) * 1000
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit("%s exited %d: %s" % (" ".join(cmd), code, err[-500:]))
    return ms, usage.ru_maxrss


def main():
    args = sys.argv[1:]
    runs = int(args.pop(0))
    pause = 0.0
    if args[0] == "--pause":
        pause = float(args[1])
        args = args[2:]
    sep = args.index("::")
    cmds = (args[:sep], args[sep + 1:])
    times = ([], [])
    rss = [0, 0]
    for _ in range(runs):
        for k in (0, 1):
            time.sleep(pause)
            ms, kib = run(cmds[k])
            times[k].append(ms)
            rss[k] = max(rss[k], kib)
    print("%.1f %d %.1f %d" % (statistics.median(times[0]), rss[0],
                               statistics.median(times[1]), rss[1]))


if __name__ == "__main__":
    main()
