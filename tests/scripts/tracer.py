# Attaches to a process as its tracer with PTRACE_SEIZE (which does not stop it) and holds on,
# as strace or gdb would, so tests can check what the profiler says about a traced target.
#
# usage: tracer.py PID
# Prints "ready" once attached, then sleeps until killed. Python 3, Linux x86-64/arm64.
import ctypes
import os
import sys
import time

PTRACE_SEIZE = 0x4206

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
for tid in os.listdir("/proc/%d/task" % pid):
    if libc.ptrace(PTRACE_SEIZE, int(tid), None, None) != 0:
        sys.exit("PTRACE_SEIZE %s: %s" % (tid, os.strerror(ctypes.get_errno())))
print("ready", flush=True)
while True:
    time.sleep(60)
