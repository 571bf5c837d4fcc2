# Threads that split their time between running and waiting, and measure the split
# themselves, for wall-clock profiles (`record --idle`):
# - "sleeper" spins 20 ms in spin() (called from work()), then sleeps 30 ms in nap()
#   (time.sleep);
# - "reader" spins 10 ms in spin() (called from work()), then blocks in wait_pipe() reading a
#   pipe that the main thread writes a byte to every 40 ms.
#
# usage: wall_split.py SECONDS OUT
# Prints "ready" once both threads run, keeps going for SECONDS, then writes to OUT one line per
# thread, "NAME WAIT_FRACTION", the fraction of its loop's wall time (time.monotonic; time.time
# on 2.7) spent waiting: in nap() for the sleeper, in wait_pipe() for the reader.
# Runs on Python 2.7 and 3.x.
import os
import sys
import threading
import time

clock = getattr(time, "monotonic", time.time)


def spin(seconds):
    end = clock() + seconds
    n = 0
    while clock() < end:  # LINE:spin
        n += 1
    return n


def work(seconds):
    return spin(seconds)  # LINE:work


def nap(seconds):
    time.sleep(seconds)  # LINE:nap


def wait_pipe(fd):
    return os.read(fd, 1)  # LINE:read


def sleeper(times, stop):
    while not stop.is_set():
        t0 = clock()
        work(0.02)
        t1 = clock()
        nap(0.03)
        t2 = clock()
        times["sleeper"][0] += t1 - t0
        times["sleeper"][1] += t2 - t1


def reader(fd, times):
    while True:
        t0 = clock()
        work(0.01)
        t1 = clock()
        data = wait_pipe(fd)
        t2 = clock()
        if not data:
            return
        times["reader"][0] += t1 - t0
        times["reader"][1] += t2 - t1


def main():
    seconds = float(sys.argv[1])
    out = sys.argv[2]
    times = {"sleeper": [0.0, 0.0], "reader": [0.0, 0.0]}
    stop = threading.Event()
    r, w = os.pipe()
    threads = [
        threading.Thread(target=sleeper, args=(times, stop), name="sleeper"),
        threading.Thread(target=reader, args=(r, times), name="reader"),
    ]
    for t in threads:
        t.daemon = True
        t.start()
    os.write(1, b"ready\n")
    end = clock() + seconds
    while clock() < end:
        time.sleep(0.04)
        os.write(w, b"x")
    stop.set()
    os.close(w)
    for t in threads:
        t.join()
    with open(out, "w") as f:
        for name in ("sleeper", "reader"):
            ran, waited = times[name]
            f.write("%s %.4f\n" % (name, waited / (ran + waited)))


main()
