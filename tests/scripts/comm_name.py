# A target that renames itself: its comm (what /proc/PID/comm and `ps` show, which any process
# may set, as prctl(PR_SET_NAME) does) becomes a name given in hex, e.g. `../../x`, then it
# keeps busy. A profiler must not build file paths from such a name.
#
# usage: comm_name.py HEX_NAME
# Prints "ready" once renamed, then spins. Runs on Python 2.7 and 3.x.
import binascii
import os
import sys


def spin():
    total = 0
    while True:
        total += sum(range(100))  # LINE:spin


def main():
    fd = os.open("/proc/self/comm", os.O_WRONLY)
    os.write(fd, binascii.unhexlify(sys.argv[1]))
    os.close(fd)
    os.write(1, b"ready\n")
    spin()


main()
