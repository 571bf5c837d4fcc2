# -*- coding: utf-8 -*-
# Python 2 variant of unicode_names.py: identifiers must be ASCII on 2.7, so only the file
# name (名前_é.py, given by the test) is unicode. Prints "ready" (from the leaf's line),
# then sleeps until killed.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import threading
import time


def astral():
    while True: os.write(1, b"ready\n") and time.sleep(3600)  # LINE:astral


def bmp():
    astral()  # LINE:bmp


def latin1():
    bmp()  # LINE:latin1


parked = []


def sleeper():
    while True: parked.append(1) or time.sleep(3600)  # LINE:sleeper


t = threading.Thread(target=sleeper, name="naive")
t.daemon = True
t.start()
while not parked:
    time.sleep(0.01)
time.sleep(0.2)  # let it reach its sleep
latin1()  # LINE:module
