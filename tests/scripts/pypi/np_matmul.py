# numpy's matmul on 500x500 float64 matrices in a loop (tests/pypi.rs): with
# OPENBLAS_NUM_THREADS=1 nearly every sample is inside OpenBLAS's hand-written assembly
# kernels, which have no unwind information.
#
# usage: np_matmul.py SECONDS
# Prints "ready" once the first product is done, then multiplies for SECONDS.
import os
import sys
import time

import numpy as np

a = np.random.rand(500, 500)
b = np.random.rand(500, 500)


def matmul():
    return a @ b


def main():
    seconds = float(sys.argv[1])
    matmul()
    os.write(1, b"ready\n")
    end = time.time() + seconds
    while time.time() < end:
        matmul()


main()
