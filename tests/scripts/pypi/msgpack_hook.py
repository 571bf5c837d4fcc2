# msgpack's Cython extension calling back into Python (tests/pypi.rs): `unpackb` with an
# `object_hook` calls `hook` from C for every map it decodes, and `hook` is busy, so nearly
# every sample reads decode -> msgpack's C code -> hook.
#
# usage: msgpack_hook.py SECONDS
# Prints "ready" once the C extension (not msgpack's pure-Python fallback) has decoded one
# message, then decodes for SECONDS.
import os
import sys
import time

import msgpack

PACKED = msgpack.packb([{"n": i} for i in range(50)])


def hook(obj):
    total = 0
    for i in range(20000):
        total += i  # LINE:hook
    return total


def decode():
    return msgpack.unpackb(PACKED, object_hook=hook)  # LINE:decode


def main():
    seconds = float(sys.argv[1])
    assert msgpack.unpackb.__module__ == "msgpack._cmsgpack", msgpack.unpackb.__module__
    decode()
    os.write(1, b"ready\n")
    end = time.time() + seconds
    while time.time() < end:
        decode()


main()
