#!/usr/bin/env python3
"""Interleaved benchmark runs on a shared machine (used for cuda/BENCH_CPU.md).

  bench_gate.py [--wait-load 0.3] ROUNDS LABEL=COMMAND [LABEL=COMMAND ...]

Waits until the 1-minute load average is below --wait-load (default 0.3), then runs the commands in turn
(A B A B ...) ROUNDS times.  Before each run it waits for two seconds in which the whole machine used under 4 %
of its CPU; after each run it compares the machine's busy time (/proc/stat) with the run's own CPU time and
repeats the run when other processes used more than 3 % of the machine meanwhile.  Prints every kept run's
`decode:` line (lsw_bench) and, per label, the median / min / max of its tokens/s.
"""
import os
import re
import resource
import statistics
import subprocess
import sys
import time

HZ = os.sysconf('SC_CLK_TCK')
NCPU = os.cpu_count() or 1


def busy_jiffies():
    with open('/proc/stat') as f:
        v = list(map(int, f.readline().split()[1:]))
    return sum(v[:8]) - v[3] - v[4]  # all but idle and iowait


def load1():
    with open('/proc/loadavg') as f:
        return float(f.read().split()[0])


def wait_quiet(seconds=2.0, limit=0.04):
    while True:
        b0 = busy_jiffies()
        time.sleep(seconds)
        if (busy_jiffies() - b0) / HZ / (NCPU * seconds) < limit:
            return
        time.sleep(3)


def main(argv):
    wait_load = 0.3
    if len(argv) > 1 and argv[0] == '--wait-load':
        wait_load = float(argv[1])
        argv = argv[2:]
    if len(argv) < 2 or any('=' not in a for a in argv[1:]):
        sys.exit(__doc__)
    rounds = int(argv[0])
    cmds = [a.split('=', 1) for a in argv[1:]]
    while load1() >= wait_load:
        time.sleep(10)
    print(f'start {time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())} UTC, loadavg {open("/proc/loadavg").read().strip()}',
          flush=True)
    res = {label: [] for label, _ in cmds}
    dirty = 0
    for _ in range(rounds):
        for label, cmd in cmds:
            while True:
                wait_quiet()
                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                b0, t0 = busy_jiffies(), time.time()
                out = subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout
                t1, b1 = time.time(), busy_jiffies()
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                mine = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
                others = ((b1 - b0) / HZ - mine) / (t1 - t0) / NCPU
                if others <= 0.03:
                    break
                dirty += 1
                print(f'  [{label}: other processes used {others * 100:.0f}% of the machine, run repeated]', flush=True)
            m = re.findall(r'= ([\d.]+) tokens/s', out)
            if m:
                res[label].append(float(m[-1]))
            line = [l for l in out.strip().split('\n') if l.startswith('decode')]
            print(f'{time.strftime("%H:%M:%S")} load {load1():.2f} others {others * 100:.1f}% {label}: '
                  f'{line[-1] if line else out.strip()[-300:]}', flush=True)
    print(f'end {time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())} UTC; runs repeated: {dirty}')
    for label, v in res.items():
        if v:
            print(f'{label}: tokens/s median {statistics.median(v):.1f}, min {min(v):.1f}, max {max(v):.1f}, '
                  f'n={len(v)}: {sorted(v)}')


if __name__ == '__main__':
    main(sys.argv[1:])
