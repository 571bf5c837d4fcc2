# pprof tests: two named threads, each spinning in its own function for argv[1] seconds.
# Lines that tests check carry a "# LINE:tag" marker.
import sys
import threading
import time


def alpha_work(deadline):
    n = 0
    while time.time() < deadline:
        n += 1  # LINE:alpha
    return n


def beta_work(deadline):
    n = 0
    while time.time() < deadline:
        n += 2  # LINE:beta
    return n


deadline = time.time() + float(sys.argv[1])
workers = [
    threading.Thread(target=alpha_work, args=(deadline,), name="alpha"),
    threading.Thread(target=beta_work, args=(deadline,), name="beta"),
]
for w in workers:
    w.start()
for w in workers:
    w.join()
