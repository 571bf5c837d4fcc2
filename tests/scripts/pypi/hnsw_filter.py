# hnswlib's pybind11 extension (chroma-hnswlib's wheel) calling back into Python
# (tests/pypi.rs): `knn_query` with a `filter` calls `allowed` from C++ for every candidate
# label it visits, and `allowed` is busy, so nearly every sample reads query -> hnswlib's
# C++ search -> allowed.
#
# usage: hnsw_filter.py SECONDS
# Prints "ready" once one query has run, then queries for SECONDS.
import os
import sys
import time

import hnswlib
import numpy as np

DIM = 16
rng = np.random.default_rng(1)
data = rng.random((2000, DIM), dtype=np.float32)
index = hnswlib.Index(space="l2", dim=DIM)
index.init_index(max_elements=len(data), ef_construction=50, M=8)
index.add_items(data, np.arange(len(data)), num_threads=1)
index.set_ef(50)
point = data[:1]


def allowed(label):
    total = 0
    for i in range(2000):
        total += i  # LINE:allowed
    return label % 2 == 0


def query():
    return index.knn_query(point, k=5, num_threads=1, filter=allowed)  # LINE:query


def main():
    seconds = float(sys.argv[1])
    query()
    os.write(1, b"ready\n")
    end = time.time() + seconds
    while time.time() < end:
        query()


main()
