# A thread and a function whose names hold terminal control characters (an escape sequence,
# CR, LF, BEL), as a hostile program could choose them: the profiler must print them escaped.
#
# usage: escapes.py
# Prints "ready" from the spinning loop, in the thread named EVIL, inside the function
# renamed EVIL (co_name, and co_qualname on 3.11+); runs until killed. Python 3.8+.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import threading
import time

EVIL = "evil\x1b[31m\r\n\x07name"


def spin():
    n = 0
    while True: n += 1 if n else os.write(1, b"ready\n")  # LINE:spin


renamed = {"co_name": EVIL}
if hasattr(spin.__code__, "co_qualname"):
    renamed["co_qualname"] = EVIL
spin.__code__ = spin.__code__.replace(**renamed)

worker = threading.Thread(target=spin, name=EVIL)
worker.daemon = True
worker.start()
while True:
    time.sleep(1)
