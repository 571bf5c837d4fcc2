# A hostile target for the profiler: it compiles, execs and drops thousands of fresh
# functions per second (each code object lives a few microseconds, and its memory is reused at
# once), and fills the heap with string locals that look like names: identifiers that are in
# no code object, and runs of random bytes and control characters in every str kind. A
# profiler that names a frame after a freed code object's successor, or reads a string where
# a name was, shows one of them. Between batches it runs a stable call path,
# stable_outer -> stable_inner, whose lines are marked for the test.
#
# usage: churn.py [SECONDS|forever]
# Prints "ready" once the loop runs. Runs on Python 2.7 and 3.x. About 2000 functions per
# second on one core; about 40% of the time goes to the stable path.
# Function names: main, churn_batch, stable_outer, stable_inner, fresh_<N> (compiled, file
# "<churn>"), and <module> of "<churn>". Every other identifier-like string is a decoy.
import os
import random
import sys
import time

PY2 = sys.version_info[0] == 2
if PY2:
    unichr_ = unichr  # noqa: F821
else:
    unichr_ = chr

# Compiled per function: a fresh name, string constants and locals that look like names or
# are random bytes, and a little work so that samples land inside it.
TEMPLATE = """
def fresh_%(n)d(seed):
    decoy_name_%(n)d = "decoy_function_%(n)d"
    noise = %(noise)r
    text = seed + decoy_name_%(n)d + noise
    total = 0
    for ch in text:
        total += ord(ch)
    return total

keep = fresh_%(n)d(%(seed)r)
"""


def noise_string(rng, n):
    """A string of random code points: control characters, latin-1, UCS-2 and (3.x) UCS-4."""
    pick = rng.random()
    if pick < 0.25:
        top = 0x20  # control characters only
    elif pick < 0.5:
        top = 0x100
    elif pick < 0.75 or PY2:
        top = 0xD800
    else:
        top = 0x10FFFF
    chars = []
    for _ in range(n):
        c = rng.randrange(1, top)
        if 0xD800 <= c < 0xE000:
            c = 0x1F600
        chars.append(unichr_(c))
    return u"".join(chars)


def churn_batch(rng, counter, decoys):
    for _ in range(50):
        counter[0] += 1
        n = counter[0]
        noise = noise_string(rng, rng.randrange(8, 120))
        if PY2:
            noise = noise.encode("utf-8")
        seed = "looks_like_a_name_%d" % rng.randrange(1 << 30)
        src = TEMPLATE % {"n": n, "noise": noise, "seed": seed}
        code = compile(src, "<churn>", "exec")
        scope = {}
        exec(code, scope)
        # Decoys that outlive the batch a little: identifiers and raw bytes on the heap, in
        # the memory the dropped code objects leave behind.
        decoys[n % len(decoys)] = (seed, noise, os.urandom(rng.randrange(16, 96)))


def stable_inner(until):
    n = 0
    while time.time() < until: n += 1  # LINE:inner
    return n


def stable_outer(until):
    return stable_inner(until)  # LINE:outer


def main():
    arg = sys.argv[1] if len(sys.argv) > 1 else "forever"
    seconds = float("inf") if arg == "forever" else float(arg)
    deadline = time.time() + seconds
    rng = random.Random(1234)
    counter = [0]
    decoys = [None] * 512
    os.write(1, b"ready\n")
    while time.time() < deadline:
        churn_batch(rng, counter, decoys)
        stable_outer(time.time() + 0.01)  # LINE:main


main()
