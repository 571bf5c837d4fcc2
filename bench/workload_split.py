"""The workload of bench/accuracy.sh: one thread that alternates between two Python functions,
func_a and func_b, in short bursts, and measures the true split of its time between them.

usage: python3 workload_split.py TRUTH_FILE [SECONDS] [SHARE_A] [SEED]

Each iteration picks func_a with probability SHARE_A (default 0.7) and a burst length drawn
log-uniformly between ~3 us and ~1 ms (a loop of 100..30000 integer additions; the function
calls nothing, so while it runs it is the Python leaf frame), and times the call with
time.perf_counter_ns(). The time spent in each function is accumulated; everything else (the
choice, the timer calls, the bookkeeping) is "other" and is also accumulated, as the rest of
the wall time.

Every ~20 ms it prints one line to stdout, cumulative since start:
    t_ns iterations a_ns b_ns units
(t_ns: perf_counter_ns since start; units: loop steps done in func_a and func_b, the work
done, independent of how the burst lengths happen to fall), so a reader can take the split and
the work rate over any time window.
It starts with a line "ready PID". On SIGTERM/SIGINT, or after SECONDS (if given, > 0), it
writes the totals to TRUTH_FILE as "key value" lines (wall_ns, iterations, units, a_ns, b_ns,
a_calls, b_calls, share_a) and exits 0. Runs under Python 3.
"""
import math
import os
import random
import signal
import sys
import time

perf_ns = time.perf_counter_ns


def func_a(n):
    s = 0
    for i in range(n):
        s += i
    return s


def func_b(n):
    s = 0
    for i in range(n):
        s += i
    return s


stop = [False]


def on_signal(signum, frame):
    stop[0] = True


def main():
    truth = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    share_a = float(sys.argv[3]) if len(sys.argv) > 3 else 0.7
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rng = random.Random(seed)
    lo, hi = math.log(100), math.log(30000)
    # Pre-draw a long table of (is_a, n) so the loop does as little as possible outside the two
    # functions; cycled through.
    table = [(rng.random() < share_a, int(math.exp(rng.uniform(lo, hi)))) for _ in range(65536)]
    out = sys.stdout
    out.write("ready %d\n" % os.getpid())
    out.flush()
    a_ns = b_ns = a_calls = b_calls = 0
    iterations = units = 0
    start = perf_ns()
    next_report = start + 20000000
    deadline = start + int(seconds * 1e9) if seconds > 0 else None
    k = 0
    while not stop[0]:
        is_a, n = table[k]
        k = (k + 1) & 65535
        if is_a:
            t0 = perf_ns()
            func_a(n)
            a_ns += perf_ns() - t0
            a_calls += 1
        else:
            t0 = perf_ns()
            func_b(n)
            b_ns += perf_ns() - t0
            b_calls += 1
        iterations += 1
        units += n
        now = perf_ns()
        if now >= next_report:
            next_report = now + 20000000
            try:
                out.write("%d %d %d %d %d\n" % (now - start, iterations, a_ns, b_ns, units))
                out.flush()
            except (BrokenPipeError, OSError):
                pass
            if deadline is not None and now >= deadline:
                break
    wall = perf_ns() - start
    with open(truth, "w") as f:
        f.write("wall_ns %d\niterations %d\nunits %d\na_ns %d\nb_ns %d\na_calls %d\nb_calls %d\n"
                % (wall, iterations, units, a_ns, b_ns, a_calls, b_calls))
        f.write("share_a %.6f\n" % (a_ns / float(a_ns + b_ns) if a_ns + b_ns else 0.0))


if __name__ == "__main__":
    main()
