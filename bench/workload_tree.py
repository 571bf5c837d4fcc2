"""A tree of Python processes for bench/scaling.sh: one parent that starts N children of
T threads each (1 busy thread, T-1 idle threads blocked in Event.wait(), i.e. a futex
wait with no timeout: they never wake up and never run).

usage: python3 workload_tree.py N T

The parent prints "ready PID" once every child has said that all its threads are started,
then waits (blocked in a read of stdin) until stdin is closed or it gets SIGTERM/SIGINT,
and kills its children. Every process also asks the kernel to SIGKILL it when its parent
dies (PR_SET_PDEATHSIG), so the tree goes away even if the parent is SIGKILLed.
Works under Python 2.7 and 3.x.
"""
import ctypes
import os
import signal
import subprocess
import sys
import threading

PR_SET_PDEATHSIG = 1


def die_with_parent():
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def leaf(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def middle(n):
    return leaf(n) + leaf(n // 2)


def busy():
    while True:
        middle(10000)


def child(threads):
    die_with_parent()
    # Idle threads need little stack; keeps 2500 threads' address space small.
    threading.stack_size(256 * 1024)
    never = threading.Event()
    for i in range(threads - 1):
        t = threading.Thread(target=never.wait, name="idle-%d" % i)
        t.daemon = True
        t.start()  # returns once the thread runs; it then blocks in never.wait()
    threading.current_thread().name = "busy"
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    busy()


def parent(n, threads):
    die_with_parent()
    me = os.path.abspath(__file__)
    children = []

    def kill_children(*_):
        for c in children:
            try:
                c.kill()
            except OSError:
                pass
        for c in children:
            c.wait()
        os._exit(0)

    signal.signal(signal.SIGTERM, kill_children)
    signal.signal(signal.SIGINT, kill_children)
    try:
        for _ in range(n):
            children.append(subprocess.Popen([sys.executable, "-I", me, "child", str(threads)],
                                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL))
        for c in children:
            line = c.stdout.readline()
            if line != b"ready\n":
                sys.stderr.write("workload: child %d did not start (%r)\n" % (c.pid, line))
                kill_children()
            c.stdout.close()
        sys.stdout.write("ready %d\n" % os.getpid())
        sys.stdout.flush()
        sys.stdin.read()  # idle until the bench closes our stdin
    finally:
        kill_children()


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(int(sys.argv[2]))
    else:
        parent(int(sys.argv[1]), int(sys.argv[2]))
