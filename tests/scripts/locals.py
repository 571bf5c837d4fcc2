# Known local variables for `dump --locals` (tests/locals.rs). Runs on 2.7 and 3.x.
import sys
import time


def holder(arg):
    answer = 42
    negative = -7
    big = 2 ** 100
    huge = 7 ** 200
    text = "hello"
    uni = u"h\u00e9llo w\u00f6rld \u8a08\u7b97 \U0002000b"
    long_text = "x" * 1000
    items = [1, "two", 3.5]
    mapping = {"a": 1, "b": 2}
    pair = (1, 2)
    nothing = None
    flag = True
    real = 3.5
    raw = b"raw"
    captured = "in a cell"

    def inner():
        return captured

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        time.sleep(0.05)  # LINE:sleep


holder("argument")
