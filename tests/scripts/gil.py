# Two busy threads: one spinning in Python (holds the GIL), one hashing a large buffer
# (hashlib releases the GIL while it hashes, so it runs on a CPU without holding it).
#
# Prints "ready" once both run, then runs until killed. Runs on Python 2.7 and 3.x.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import hashlib
import sys
import threading
import time

BLOB = b"x" * (32 << 20)
started = []


def spin_gil():
    started.append("spinner")
    n = 0
    while True: n += 1  # LINE:spin


def hash_loop():
    started.append("hasher")
    h = hashlib.sha1()
    while True: h.update(BLOB)  # LINE:hash


for name, target in [("spinner", spin_gil), ("hasher", hash_loop)]:
    t = threading.Thread(target=target, name=name)
    t.daemon = True
    t.start()
while len(started) < 2:
    time.sleep(0.01)
time.sleep(0.2)  # let both reach their loops
sys.stdout.write("ready\n")
sys.stdout.flush()
while True: time.sleep(3600)
