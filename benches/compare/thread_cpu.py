#!/usr/bin/env python3
"""CPU % (100 = one core) of each thread of a process over a window, from /proc.

usage: thread_cpu.py SECONDS PID
Prints one JSON object {"NAME/TID": cpu_pct, ...} for the threads alive at both ends that used
any CPU (utime+stime, fields 14 and 15 of /proc/PID/task/TID/stat).
"""
import json, os, sys, time

HZ = os.sysconf("SC_CLK_TCK")
secs, pid = float(sys.argv[1]), int(sys.argv[2])


def sample():
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            stat = open("/proc/%d/task/%s/stat" % (pid, tid)).read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        f = stat.rsplit(")", 1)[1].split()
        out["%s/%s" % (name, tid)] = int(f[11]) + int(f[12])
    return out


t0 = time.monotonic()
a = sample()
time.sleep(secs)
b = sample()
t1 = time.monotonic()
pct = {k: round(100.0 * (b[k] - a[k]) / HZ / (t1 - t0), 1) for k in b if k in a and b[k] > a[k]}
print(json.dumps(pct, sort_keys=True))
