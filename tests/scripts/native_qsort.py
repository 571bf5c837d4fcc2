# Python -> C -> Python: ctypes calls libc's qsort with a Python comparison callback, which
# burns CPU in Python; `--native` must show caller -> qsort (libc) -> callback in that order.
#
# usage: native_qsort.py
# Prints "ready" once sorting has started, then sorts forever. Runs on Python 2.7 and 3.x.
import ctypes
import ctypes.util
import os

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
state = {"ready": False}


def py_compare(a, b):
    if not state["ready"]:
        state["ready"] = True
        os.write(1, b"ready\n")
    n = 0
    for i in range(200):  # LINE:callback
        n += i
    return a[0] - b[0]


def sort_with_qsort():
    values = (ctypes.c_int * 64)(*range(64, 0, -1))
    libc.qsort(values, len(values), ctypes.sizeof(ctypes.c_int), CMP(py_compare))  # LINE:qsort


def main():
    while True:
        sort_with_qsort()


main()
