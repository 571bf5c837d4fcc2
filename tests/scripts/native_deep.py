# A deep native stack: Python -> C -> Python recursion, each level calling the next through
# `map` (a C function), so every level adds a C eval-loop frame to the native stack (Python
# to Python calls alone do not on 3.11+). Ends in a busy leaf.
#
# usage: native_deep.py [DEPTH]  (default 150)
# Prints "ready" from the leaf's loop line, then spins forever. Runs on Python 2.7 and 3.x.
import os
import sys

DEPTH = int(sys.argv[1]) if len(sys.argv) > 1 else 150
sys.setrecursionlimit(4 * DEPTH + 200)


def deep_leaf():
    n = 0
    while True: n += 1 if n else os.write(1, b"ready\n")  # LINE:busy


def through_c(depth):
    if depth <= 1:
        deep_leaf()
    list(map(through_c, [depth - 1]))  # LINE:recurse


through_c(DEPTH)  # LINE:call_recurse
