# The main thread sleeps for an hour in a known function: nothing to sample unless idle
# threads are recorded.
#
# usage: sleeper.py
# Prints "ready" just before it sleeps. Runs on Python 2.7 and 3.x.
import os
import time


def wait_forever():
    os.write(1, b"ready\n")
    time.sleep(3600)  # LINE:sleep


wait_forever()  # LINE:call
