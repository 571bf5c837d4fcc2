# Chrome trace tests of wall-clock recordings: thread "busy" spins in spin(), thread "napper"
# sleeps 50 ms at a time in nap(), the main thread waits for both.
#
# usage: busy_and_napping.py SECONDS
# Prints "ready" once both threads run; they stop after SECONDS. Runs on Python 2.7 and 3.x.
import os
import sys
import threading
import time


def spin(deadline):
    n = 0
    while time.time() < deadline:
        n += 1  # LINE:spin
    return n


def nap(deadline):
    while time.time() < deadline:
        time.sleep(0.05)  # LINE:nap


deadline = time.time() + float(sys.argv[1])
workers = [
    threading.Thread(target=spin, args=(deadline,), name="busy"),
    threading.Thread(target=nap, args=(deadline,), name="napper"),
]
for w in workers:
    w.start()
os.write(1, b"ready\n")
for w in workers:
    w.join()
