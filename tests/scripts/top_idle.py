# For tests/top.rs (`top --idle` with BPF, wall-clock time): one thread that spins 20 ms in
# spin(), then sleeps 30 ms in nap() (time.sleep), and measures the split itself.
#
# usage: top_idle.py OUT
# Prints "ready" once the loop runs, then loops forever; about every second it replaces OUT
# with the fraction of the loop's wall time (time.monotonic; time.time on 2.7) spent in nap().
# Runs on Python 2.7 and 3.x.
import os
import sys
import time

clock = getattr(time, "monotonic", time.time)


def spin(seconds):
    end = clock() + seconds
    n = 0
    while clock() < end:
        n += 1
    return n


def nap(seconds):
    time.sleep(seconds)  # LINE:nap


def main():
    out = sys.argv[1]
    busy = asleep = 0.0
    written = clock()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        t0 = clock()
        spin(0.02)
        t1 = clock()
        nap(0.03)
        t2 = clock()
        busy += t1 - t0
        asleep += t2 - t1
        if t2 - written >= 1.0:
            written = t2
            with open(out + ".tmp", "w") as f:
                f.write("%f\n" % (asleep / (busy + asleep)))
            os.rename(out + ".tmp", out)


main()
