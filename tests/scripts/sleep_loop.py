# The main thread sleeps in a loop: `time.sleep` called from a known Python function, so
# `--native --idle` shows nap_loop -> the libc sleep (clock_nanosleep, or select before 3.11)
# -> the kernel's wait, in that order.
#
# usage: sleep_loop.py
# Prints "ready" once it sleeps, then sleeps forever. Runs on Python 2.7 and 3.x.
import os
import time


def nap_loop():
    os.write(1, b"ready\n")
    while True:
        time.sleep(0.05)  # LINE:sleep


nap_loop()  # LINE:call_nap_loop
