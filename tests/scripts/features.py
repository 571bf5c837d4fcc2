# One named thread per kind of code object, each parked (sleeping) in it:
#
#   method     Worker.run                (a method: qualified name on 3.11+)
#   closure    outer.<locals>.inner      (a nested function)
#   generator  ticker, driven by consume (a generator's frame)
#   lambda     <lambda>, called by lambda_loop
#   coroutine  crunch, awaited by drive, run by asyncio (3.x only; see features_async.py)
#   MainThread main_idle
#
# Prints "ready" (from main_idle's line, by os.write: no Python frame) once every thread is
# in place, then runs until killed. Runs on 2.7 and 3.x.
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import os
import sys
import threading
import time

parked = []


class Worker(object):
    def run(self):
        parked.append("method")
        while True: time.sleep(3600)  # LINE:method


def outer():
    def inner():
        parked.append("closure")
        while True: time.sleep(3600)  # LINE:inner
    inner()  # LINE:call_inner


def ticker():
    parked.append("generator")
    while True:
        time.sleep(3600)  # LINE:ticker
        yield 1


def consume():
    for _ in ticker(): pass  # LINE:consume


nap = lambda: parked.append("lambda") or time.sleep(3600)  # LINE:lambda


def lambda_loop():
    while True: nap()  # LINE:call_lambda


def main_idle():
    while True: os.write(1, b"ready\n") and time.sleep(3600)  # LINE:main_idle


def main():
    targets = [("method", Worker().run), ("closure", outer), ("generator", consume),
               ("lambda", lambda_loop)]
    if sys.version_info[0] >= 3:
        sys.dont_write_bytecode = True  # keep __pycache__ out of tests/scripts
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import features_async
        targets.append(("coroutine", features_async.run_async))
    for name, target in targets:
        t = threading.Thread(target=target, name=name)
        t.daemon = True
        t.start()
    while len(parked) < len(targets):
        time.sleep(0.01)
    time.sleep(0.2)  # let every thread reach its sleep
    main_idle()


main()
