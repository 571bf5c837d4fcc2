# A short pytest session (tests/pypi.rs): imports, collection, a few seconds of tests that
# use json and re, then interpreter shutdown: the start-up and shutdown phases, where a
# Python process runs no Python frame, are where frame-pointer garbage showed.
import json
import re


def work(n):
    s = 0
    for i in range(n):
        s += len(json.dumps({"a": i, "b": [i] * 5}))
        re.match(r"(\d+)-(\w+)", "%d-abc" % i)
    return s


def test_first():
    assert work(60000) > 0


def test_second():
    assert work(60000) > 0
