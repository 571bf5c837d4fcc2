# Two Python functions called in turn, each a few microseconds long, forever: a sample lands
# in func_a, in func_b, in the loop between them, or in a call entering or leaving one of them.
# The --native consistency test checks that the Python frames and the native eval-loop frames
# of every sample agree.
#
# usage: switching.py
# Prints "ready" once the loop runs. Runs on Python 2.7 and 3.x.
import os


def func_a():
    s = 0
    for i in range(30):
        s += i
    return s


def func_b():
    s = 0
    for i in range(30):
        s += i
    return s


def loop():
    os.write(1, b"ready\n")
    while True:
        func_a()
        func_b()


loop()
