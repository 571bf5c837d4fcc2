# A Python program that becomes another program: spin() runs Python code for SECONDS, then the
# process execs a shell that counts in a busy loop (same pid, same start time, no Python).
#
# usage: exec_shell.py SECONDS
# Runs on Python 2.7 and 3.x.
import os
import sys
import time


def spin(deadline):
    n = 0
    while time.time() < deadline:
        n += 1  # LINE:spin
    return n


spin(time.time() + float(sys.argv[1]))
os.execv("/bin/sh", ["sh", "-c", "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done"])
