"""Context switches for bench/offcpu_cost.sh: THREADS Python threads, each in a loop of a little
Python work and a time.sleep(SLEEP_MS / 1000), so that each iteration leaves the CPU once and
comes back once (about THREADS x 1000 / SLEEP_MS switches a second, a bit fewer as the work and
the wakeup take time).

usage: python3 workload_switches.py THREADS SLEEP_MS

Prints "ready PID" once the threads run; runs until killed (or stdin is closed).
"""
import os
import sys
import threading
import time


def work():
    s = 0
    for i in range(50):
        s += i * i
    return s


def nap(seconds):
    time.sleep(seconds)


def loop(seconds):
    while True:
        work()
        nap(seconds)


def main():
    threads, sleep_ms = int(sys.argv[1]), float(sys.argv[2])
    for _ in range(threads):
        t = threading.Thread(target=loop, args=(sleep_ms / 1000.0,))
        t.daemon = True
        t.start()
    sys.stdout.write("ready %d\n" % os.getpid())
    sys.stdout.flush()
    sys.stdin.read()


main()
