# -*- coding: utf-8 -*-
# Python 3: functions and a thread named with Latin-1 (é), BMP (計算) and astral (𠀋,
# U+2000B) characters, so a profiler must read every compact string kind (ASCII, 1-, 2-
# and 4-byte). Tests copy this file into a temporary directory under a unicode name
# (名前_é.py) and run it there. Prints "ready" (from the leaf's line, by os.write: no
# Python frame) once the thread sleeps too, then sleeps until killed.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import threading
import time


def 𠀋():
    while True: os.write(1, b"ready\n") and time.sleep(3600)  # LINE:astral


def 計算():
    𠀋()  # LINE:bmp


def café():
    計算()  # LINE:latin1


parked = []


def sleeper():
    while True: parked.append(1) or time.sleep(3600)  # LINE:sleeper


t = threading.Thread(target=sleeper, name="naïve-線-𠀋")
t.daemon = True
t.start()
while not parked:
    time.sleep(0.01)
time.sleep(0.2)  # let it reach its sleep
café()  # LINE:module
