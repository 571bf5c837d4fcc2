# Named threads, each parked in its own function: one busy, the others blocked.
#
#   MainThread  main_idle  sleeping
#   worker-1    spin       busy (holds the GIL: nothing else wants it)
#   worker-2    nap        sleeping
#   worker-3    blocked    waiting on a lock that is never released
#
# Prints "ready {JSON}" once every thread is in place, where JSON maps each thread name to
# [native thread id, threading ident]; then runs until killed. Runs on Python 2.7 and 3.x.
# The spinning thread prints it, last, from its loop line (os.write: no Python frame): the
# others keep the GIL from registering until they block, so once it sees them all
# registered they are blocked. (A thread that printed "ready" and then had to win the GIL
# back from the spinner could still be on its way to its final line when a dump comes.)
# Lines that tests check carry a "# LINE:tag" marker; tests find them by reading this file.
import json
import os
import platform
import threading
import time

ids = {}
main_parked = []


def native_tid():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    import ctypes  # Python 2.7: gettid(2) by syscall number
    number = {"x86_64": 186, "aarch64": 178, "i686": 224, "i386": 224}[platform.machine()]
    return ctypes.CDLL(None).syscall(number)


def register():
    ids[threading.current_thread().name] = [native_tid(), threading.current_thread().ident]


def spin():
    register()
    while len(ids) < 4 or not main_parked:
        time.sleep(0.01)
    time.sleep(0.2)
    ready = ("ready %s\n" % json.dumps(ids)).encode("ascii")
    n = 0
    while True: n += 1 if n else os.write(1, ready)  # LINE:spin


def nap():
    register()
    while True: time.sleep(3600)  # LINE:nap


never = threading.Lock()
never.acquire()


def blocked():
    register()
    never.acquire()  # LINE:blocked


def main_idle():
    main_parked.append(True)
    while True: time.sleep(3600)  # LINE:main_idle


def main():
    register()
    workers = [("worker-1", spin), ("worker-2", nap), ("worker-3", blocked)]
    for name, target in workers:
        t = threading.Thread(target=target, name=name)
        t.daemon = True
        t.start()
    main_idle()  # LINE:call_main_idle


main()
