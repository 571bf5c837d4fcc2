# diff tests: three functions taking about 52/29/19% of the time; BIG_SLOWER=0.5 makes
# big() do 50% more work. Runs for argv[1] seconds.
import os, sys, time
SLOW = float(os.environ.get("BIG_SLOWER", "0"))
N_BIG = int(5200 * (1 + SLOW))
def big():
    s = 0
    for i in range(N_BIG):
        s += i
    return s
def mid():
    s = 0
    for i in range(2900):
        s += i
    return s
def small():
    s = 0
    for i in range(1900):
        s += i
    return s
def main():
    end = time.time() + float(sys.argv[1])
    while time.time() < end:
        big(); mid(); small()
main()
