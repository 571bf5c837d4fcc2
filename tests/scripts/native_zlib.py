# A C extension doing the work: zlib.compress of a large buffer in a loop, called from Python.
# `--native` must show zlib's own functions (deflate) under compress_loop.
#
# usage: native_zlib.py
# Prints "ready" before the loop, then compresses forever. Runs on Python 2.7 and 3.x.
import os
import zlib


def compress_loop(data):
    while True:
        zlib.compress(data, 9)  # LINE:compress


def main():
    data = os.urandom(1 << 16) * 16
    os.write(1, b"ready\n")
    compress_loop(data)


main()
