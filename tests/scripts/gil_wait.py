# Threads that wait for the GIL, for wall-clock profiles (`record --idle`): "spinner-a" and
# "spinner-b" both spin in pure Python, so each spends about half of its time waiting for the
# GIL the other holds (asleep on the GIL's condition variable or mutex; its semaphore on 2.7);
# "reader" blocks reading a pipe nobody writes to (a wait that is not for the GIL).
#
# Prints "ready" once the threads run, then runs until killed. Runs on Python 2.7 and 3.x.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import sys
import threading
import time

started = []


def spin():
    n = 0
    while True: n += 1  # LINE:spin


def spinner():
    started.append("spinner")
    spin()


def wait_pipe(fd):
    started.append("reader")
    return os.read(fd, 1)  # LINE:read


r, w = os.pipe()
threads = [
    threading.Thread(target=spinner, name="spinner-a"),
    threading.Thread(target=spinner, name="spinner-b"),
    threading.Thread(target=wait_pipe, args=(r,), name="reader"),
]
for t in threads:
    t.daemon = True
    t.start()
while len(started) < 3:
    time.sleep(0.01)
time.sleep(0.2)  # let all reach their loops
sys.stdout.write("ready\n")
sys.stdout.flush()
while True: time.sleep(3600)
