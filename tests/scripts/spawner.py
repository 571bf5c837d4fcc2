# Starts busy.py as a child process (killed when this process dies) and waits for it.
#
# Prints "ready CHILD_PID" once the child is spinning, then waits until killed.
# Runs on Python 2.7 and 3.x.
import ctypes
import os
import subprocess
import sys

PR_SET_PDEATHSIG = 1
SIGKILL = 9


def die_with_parent():
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, SIGKILL)


busy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "busy.py")
flag = "-sE" if sys.version_info[0] == 2 else "-I"
child = subprocess.Popen([sys.executable, flag, busy], stdout=subprocess.PIPE,
                         preexec_fn=die_with_parent)
line = child.stdout.readline()
if not line.startswith(b"ready"):
    sys.exit("child did not start: %r" % line)
sys.stdout.write("ready %d\n" % child.pid)
sys.stdout.flush()


def wait_child():
    child.wait()  # LINE:wait


wait_child()
