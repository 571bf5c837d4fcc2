# For tests/top.rs: a hot function called in a loop plus a colder one (about a tenth of the
# work), so `top` must show hot_function first by %Own and main/<module> first by %Total.
#
# usage: top_busy.py [SECONDS|forever]
# Prints "ready" once the loop runs, then spins for SECONDS (default: forever) and exits 0.
# Runs on Python 2.7 and 3.x.
import os
import sys
import time


def hot_function(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def cold_function(n):
    total = 0
    for i in range(n):
        total += i
    return total


def main():
    arg = sys.argv[1] if len(sys.argv) > 1 else "forever"
    seconds = float("inf") if arg == "forever" else float(arg)
    deadline = time.time() + seconds
    hot_function(10)
    os.write(1, b"ready\n")
    while time.time() < deadline:
        hot_function(20000)
        cold_function(2000)


main()
