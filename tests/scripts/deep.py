# Deep recursion (600 Python frames) ending in a busy leaf.
#
# Prints "ready" from the leaf's loop line (see busy.py), then spins forever. Runs on Python
# 2.7 and 3.x.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import sys

DEPTH = 600
sys.setrecursionlimit(DEPTH + 200)


def leaf():
    n = 0
    while True: n += 1 if n else os.write(1, b"ready\n")  # LINE:busy


def recurse(depth):
    if depth <= 1:
        leaf()  # LINE:call_leaf
    recurse(depth - 1)  # LINE:recurse


recurse(DEPTH)  # LINE:call_recurse
