# Two busy threads: one spinning in Python (holds the GIL), one compressing a large buffer
# with zlib, which releases the GIL while it compresses (on every version, 2.7 included, and
# in builds without OpenSSL, whose hashlib holds it), so it runs on a CPU without holding it.
#
# Prints "ready" once both run, then runs until killed. Runs on Python 2.7 and 3.x.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import sys
import threading
import time
import zlib

BLOB = os.urandom(1 << 16) * 64
started = []


def spin_gil():
    started.append("spinner")
    n = 0
    while True: n += 1  # LINE:spin


def compress_loop():
    started.append("compressor")
    while True: zlib.compress(BLOB, 6)  # LINE:compress


for name, target in [("spinner", spin_gil), ("compressor", compress_loop)]:
    t = threading.Thread(target=target, name=name)
    t.daemon = True
    t.start()
while len(started) < 2:
    time.sleep(0.01)
time.sleep(0.2)  # let both reach their loops
sys.stdout.write("ready\n")
sys.stdout.flush()
while True: time.sleep(3600)
