# One thread, in a loop: `work` and `other` each keep the CPU busy for 20 ms of wall time,
# then `nap` sleeps for NAP_MS milliseconds. Run twice with different NAP_MS, `diff` of the two
# wall profiles must find `nap`'s share of the time grown (while its share of the *samples*,
# one off-CPU sample per nap against ~20 on-CPU samples per busy function at 1 kHz, stays
# the same).
#
# usage: work_and_nap.py NAP_MS SECONDS
# Prints "ready", then loops for SECONDS. Runs on Python 2.7 and 3.x.
import os
import sys
import time


# Each busy function loops itself (a shared helper would be the leaf of both).
def work():
    end = time.time() + 0.02
    n = 0
    while time.time() < end:
        n += 1
    return n


def other():
    end = time.time() + 0.02
    n = 0
    while time.time() < end:
        n += 1
    return n


def nap(ms):
    time.sleep(ms / 1000.0)


def main():
    nap_ms = float(sys.argv[1])
    end = time.time() + float(sys.argv[2])
    os.write(1, b"ready\n")
    while time.time() < end:
        work()
        other()
        nap(nap_ms)


main()
