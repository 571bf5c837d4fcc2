# A busy CPU loop at the end of a three-level call chain, for exact line numbers.
#
# usage: busy.py [SECONDS|forever] [PIDFILE]
# Prints "ready" from the loop's own line, then spins for SECONDS (default: forever) and
# exits 0. With PIDFILE, writes its pid there first. Runs on Python 2.7 and 3.x.
# "ready" is written by os.write (a C function: no Python frame) on the marked line itself,
# so whenever a test sees it, the stack already is the one the test expects, even if the
# process is not scheduled again for a while.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import sys
import time


def level_b(deadline):
    n = 0
    while time.time() < deadline: n += 1 if n else os.write(1, b"ready\n")  # LINE:busy
    return n


def level_a(deadline):
    return level_b(deadline)  # LINE:call_b


def main():
    arg = sys.argv[1] if len(sys.argv) > 1 else "forever"
    seconds = float("inf") if arg == "forever" else float(arg)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write("%d\n" % os.getpid())
    level_a(time.time() + seconds)  # LINE:call_a


main()  # LINE:call_main
