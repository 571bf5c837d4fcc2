#!/usr/bin/env bash
# CPU cost per sample: pyspy-bpf against py-spy (non-blocking and blocking) on the same
# CPU-bound workload, at a few sampling rates. Prints a table; no pass/fail.
#
# usage: bench/cpu_per_sample.sh            (as root: both profilers read another process)
# env:   RATES="100 1000"   DURATION=10     PYTHON=/usr/bin/python3 (the workload's interpreter)
#        BASELINE=/path/to/an/older/pyspy-bpf  (also run that binary, same workload, same run,
#                                   and print this build's CPU per sample against it)
#        USERSPACE=1               (also run both pyspy-bpf builds with --mode userspace)
#        PYSPY=0                   (skip the py-spy rows)
#        ROUNDS=1                  (run every profiler this many times, in turn, and print the
#                                   mean and each round's CPU per sample: on a noisy machine one
#                                   run of 10 s at 1 kHz varies by tens of percent, so compare
#                                   builds with ROUNDS=5 or more)
#
# Creates bench/.venv with py-spy 0.4.x on first use, builds pyspy-bpf --release, starts
# one workload (nested Python functions in a busy loop), then records it with each profiler
# in turn (one at a time). A profiler's CPU time is its own user+sys time as a child
# process (wait4 rusage); samples are the sum of the counts in its raw output. Work done
# for a profiler in the target's context (a BPF program runs on the sampled CPU, a blocking
# profiler stops the target) is not in that number, so the table also shows how much the
# workload slowed down during each run, against its speed with no profiler attached.
# Run it on an otherwise idle machine.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/bench/.venv"
RATES=${RATES:-"100 1000"}
DURATION=${DURATION:-10}
PYTHON=${PYTHON:-/usr/bin/python3}

if [[ ! -x "$VENV/bin/py-spy" ]]; then
  echo "bench: creating $VENV with py-spy" >&2
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'py-spy>=0.4,<0.5'
fi

echo "bench: building pyspy-bpf (release)" >&2
(cd "$REPO" && cargo build --release -q)
PYSPY_BPF="${CARGO_TARGET_DIR:-$REPO/target}/release/pyspy-bpf"

export BASELINE=${BASELINE:-} USERSPACE=${USERSPACE:-0} PYSPY=${PYSPY:-1} ROUNDS=${ROUNDS:-1}
exec /usr/bin/python3 - "$PYSPY_BPF" "$VENV/bin/py-spy" "$PYTHON" "$DURATION" $RATES <<'PY'
import os, shutil, subprocess, sys, tempfile, threading, time

pyspy_bpf, py_spy, python, duration = sys.argv[1:5]
rates = [int(r) for r in sys.argv[5:]]
baseline_bin = os.environ.get("BASELINE") or None
userspace = os.environ.get("USERSPACE") == "1"
with_pyspy = os.environ.get("PYSPY") != "0"
rounds = max(1, int(os.environ.get("ROUNDS") or 1))

WORKLOAD = '''
import sys

def leaf(n):
    s = 0
    for i in range(n):
        s += i * i
    return s

def middle(n):
    return leaf(n) + leaf(n // 2)

def outer():
    i = 0
    while True:
        middle(10000)
        i += 1
        if i % 20 == 0:
            sys.stdout.write("%d\\n" % i)
            sys.stdout.flush()

sys.stdout.write("ready\\n")
sys.stdout.flush()
outer()
'''

tmp = tempfile.mkdtemp(prefix="pyspy-bench-")
script = os.path.join(tmp, "workload.py")
with open(script, "w") as f:
    f.write(WORKLOAD)
work = subprocess.Popen([python, "-I", script], stdout=subprocess.PIPE)
assert work.stdout.readline().startswith(b"ready")
pid = str(work.pid)
progress = [0]  # the workload's latest iteration count


def follow():
    for line in work.stdout:
        progress[0] = int(line)


threading.Thread(target=follow, daemon=True).start()


def speed(seconds):
    """Workload iterations per second over the next `seconds`."""
    a = progress[0]
    time.sleep(seconds)
    return (progress[0] - a) / seconds


def samples(path):
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            count = line.rstrip("\n").rsplit(" ", 1)[-1]
            if count.isdigit():
                total += int(count)
    return total


def measure(name, argv, out):
    if os.path.exists(out):
        os.unlink(out)
    started = time.time()
    before = progress[0]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - started
    its = (progress[0] - before) / wall
    if status != 0:
        sys.stderr.write("bench: %s failed (status %d):\n%s\n" % (name, status, err.decode(errors="replace")))
    n = samples(out) if os.path.exists(out) else 0
    return n, usage.ru_utime + usage.ru_stime, wall, its


rows = []
try:
    time.sleep(1)
    baseline = speed(3)
    for rate in rates:
        out = os.path.join(tmp, "profile.txt")
        ours = [("pyspy-bpf", pyspy_bpf)]
        if baseline_bin:
            ours.append(("baseline", baseline_bin))
        runs = []
        for label, binary in ours:
            runs.append((label, [binary, "record", "--pid", pid, "-r", str(rate), "-d", duration,
                                 "-f", "raw", "-o", out]))
            if userspace:
                runs.append((label + " userspace", [binary, "record", "--pid", pid, "-r", str(rate),
                                                     "-d", duration, "-f", "raw", "-o", out,
                                                     "--mode", "userspace"]))
        if with_pyspy:
            runs += [
                ("py-spy --nonblocking", [py_spy, "record", "--pid", pid, "-r", str(rate), "-d", duration,
                                          "-f", "raw", "-o", out, "--nonblocking"]),
                ("py-spy (blocking)", [py_spy, "record", "--pid", pid, "-r", str(rate), "-d", duration,
                                       "-f", "raw", "-o", out]),
            ]
        # Round by round, the profilers in turn: a slow spell of the machine falls on all of
        # them rather than on one.
        for round_no in range(1, rounds + 1):
            for name, argv in runs:
                sys.stderr.write("bench: %s at %d Hz for %s s (round %d of %d)\n"
                                 % (name, rate, duration, round_no, rounds))
                n, cpu, wall, its = measure(name, argv, out)
                rows.append((name, rate, n, cpu, wall, its))
finally:
    work.kill()
    work.wait()
    shutil.rmtree(tmp, ignore_errors=True)

# One row per profiler and rate: the means over the rounds (CPU per sample: total CPU over total
# samples), and each round's CPU per sample kept to show the spread.
means, spread = {}, {}
for name, rate, n, cpu, wall, its in rows:
    key = (name, rate)
    if key not in means:
        means[key] = [0, 0.0, 0.0, 0.0]
        spread[key] = []
    for i, v in enumerate((n, cpu, wall, its)):
        means[key][i] += v
    spread[key].append(cpu / n * 1e6 if n else float("nan"))
rows = [(name, rate, m[0] // rounds, m[1] / rounds, m[2] / rounds, m[3] / rounds)
        for (name, rate), m in means.items()]

print()
print("%-22s %6s %8s %8s %8s %12s %12s %10s" % ("profiler", "rate", "samples", "wall s", "CPU s",
                                                 "CPU us/smp", "bpf/this", "slowdown"))
bpf = {r[1]: r for r in rows if r[0] == "pyspy-bpf"}
for name, rate, n, cpu, wall, its in rows:
    per = cpu / n * 1e6 if n else float("nan")
    b = bpf.get(rate)
    ratio = ""
    if b and b[2] and n and name != "pyspy-bpf":
        bper = b[3] / b[2] * 1e6
        ratio = "%.2f" % (bper / per) if per else "inf"
    slow = "%.1f%%" % (100.0 * (1 - its / baseline)) if baseline else "?"
    print("%-22s %6d %8d %8.1f %8.3f %12.1f %12s %10s" % (name, rate, n, wall, cpu, per, ratio, slow))
if rounds > 1:
    print()
    print("CPU us/smp of each of the %d rounds:" % rounds)
    for (name, rate), per_round in spread.items():
        print("  %-22s %6d: %s" % (name, rate, " ".join("%.1f" % v for v in per_round)))
print()
print("CPU = user+sys of the profiler process; CPU us/smp = CPU / samples (means over %d round%s);"
      % (rounds, "" if rounds == 1 else "s"))
print("bpf/this = pyspy-bpf's CPU per sample divided by this profiler's (below 1: pyspy-bpf is cheaper);")
if baseline_bin:
    print()
    print("this build against the baseline (%s), CPU per sample:" % baseline_bin)
    per = {(r[0], r[1]): (r[3] / r[2] * 1e6 if r[2] else float("nan")) for r in rows}
    for rate in rates:
        for mode in ([""] + ([" userspace"] if userspace else [])):
            new, old = per.get(("pyspy-bpf" + mode, rate)), per.get(("baseline" + mode, rate))
            if new and old:
                print("  %-10s %6d Hz: %8.1f us vs %8.1f us  = %+.1f%%" % (
                    (mode.strip() or "bpf"), rate, new, old, 100.0 * (new / old - 1)))
print("slowdown = how much slower the workload ran during the recording than with no profiler "
      "(%.0f iterations/s); a few %% is noise." % baseline)
PY
