#!/usr/bin/env python3
"""Runs several commands in turn, RUNS rounds, and prints each one's median
wall time and peak RSS: the commands share the machine's load alike.

interleave.py RUNS [--before CMD] -- NAME=SHELLCMD...
Prints one line per command: "NAME median_ms max_rss_kib median_cpu_ms"
(CPU: user + system time of the command and its children, which a loaded
machine inflates less than wall time). Each command is
run by /bin/sh -c in the current directory with its output to /dev/null;
its peak RSS is the largest of its process tree (what wait4 reports for a
shell and the children it waited for). --before runs a shell command
(untimed) before each run of each command. A non-zero exit status (other
than 1, which `kiln changes` uses for invalid manifests) aborts.
"""
import os
import statistics
import subprocess
import sys
import time


def run_once(argv, before=None):
    """Runs argv once (after the untimed shell command before, if any) with
    its output to /dev/null; returns (wall ms, peak RSS KiB, CPU ms). Exit
    status 0 or 1 (kiln changes' invalid manifests) goes on, others abort."""
    if before:
        subprocess.run(before, shell=True, check=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        sys.exit("%s exited %d" % (argv, code))
    return wall, usage.ru_maxrss, (usage.ru_utime + usage.ru_stime) * 1000


def main():
    args = sys.argv[1:]
    runs = int(args.pop(0))
    before = None
    if args[0] == "--before":
        before = args[1]
        args = args[2:]
    assert args.pop(0) == "--"
    cmds = [a.split("=", 1) for a in args]
    times = {n: [] for n, _ in cmds}
    rss = {n: 0 for n, _ in cmds}
    cpu = {n: [] for n, _ in cmds}
    for _ in range(runs):
        for name, cmd in cmds:
            wall, maxrss, used = run_once(["/bin/sh", "-c", cmd], before)
            times[name].append(wall)
            rss[name] = max(rss[name], maxrss)
            cpu[name].append(used)
    for name, _ in cmds:
        print("%s %.1f %d %.1f" % (name, statistics.median(times[name]), rss[name],
                                   statistics.median(cpu[name])))


if __name__ == "__main__":
    main()
