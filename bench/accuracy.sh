#!/usr/bin/env bash
# Sampling accuracy: how close each profiler's split of samples between two Python functions
# comes to the true split of the time, measured by the workload itself. pyspy-bpf (user-space
# and BPF samplers, with and without --native) against py-spy (non-blocking, blocking,
# --native), all on one workload, one profiler at a time. Prints a table; no pass/fail.
#
# usage: bench/accuracy.sh            (as root: both profilers read another process; the BPF
#                                      rows need root or CAP_BPF+CAP_PERFMON and are skipped
#                                      when not root)
# env:   DURATION=5   RATE=100   SHARE_A=0.7 (func_a's target share)   SEED=1
#        PYTHON=/usr/bin/python3 (the workload's interpreter)
#
# Creates bench/.venv with py-spy 0.4.x on first use, builds pyspy-bpf --release, and starts
# bench/workload_split.py: one thread that alternates between func_a and func_b (each a plain
# loop that calls nothing, so it is the Python leaf frame while it runs) in bursts of ~3 us to
# ~1 ms (log-uniform), func_a picked with probability SHARE_A. The workload times every call
# with perf_counter_ns and prints its cumulative a_ns, b_ns and work done (loop steps inside
# the two functions) every ~20 ms;
# the ground truth for one recording is the split over exactly that recording's window:
# truth_a = d(a_ns) / (d(a_ns) + d(b_ns)). At the end it gets SIGTERM and writes its totals
# to a file, shown under the table.
#
# Runs, each `record --pid PID -r RATE -d DURATION -f raw -o FILE`:
#   pyspy-bpf --mode userspace | --mode bpf | --mode userspace --native | --mode bpf --native
#   py-spy --nonblocking | (default: blocking) | --native
# Columns:
#   samples   the sum of the counts in the raw output (every stack, also those in neither
#             function)
#   A % / B % the share of samples whose leaf Python frame is func_a / func_b, among the samples
#             in either of them. Leaf Python frame: without --native the last frame of the
#             stack; with --native the innermost frame that starts with "func_a (" or
#             "func_b (" (native frames, e.g. PyObject_Free called from func_a, may follow it).
#   other %   samples in neither function (the loop's bookkeeping in main(), unreadable
#             stacks), share of all samples
#   truth A % the workload's own split over the recording's window
#   err pp    |A % - truth A %| in percentage points
#   1 sigma   the binomial standard error sqrt(p(1-p)/n) in pp for n = samples in A or B: an
#             error within ~2 sigma is what random sampling gives at that sample count
#   CPU s     user+sys of the profiler process (wait4 rusage); as in cpu_per_sample.sh, work
#             done in the target's context (the BPF program, a ptrace stop) is not in it
#   us/smp    CPU s / samples
#   slowdown  1 - (workload rate during the recording) / (baseline rate), the rate being loop
#             steps per second inside func_a/func_b (the work done; the number of calls would
#             depend on how the random burst lengths fall in the window); the baseline is the
#             mean of two 3 s windows with no profiler attached, one before the first recording
#             and one after the last (both are printed: their difference shows the noise)
#   wl CPU %  the workload's own CPU time (utime+stime from /proc/PID/stat) over the recording's
#             wall time: below ~95 % the machine was busy and the slowdown is mostly contention
#   incons.   --native runs only: of the samples with a func_a/func_b Python leaf, how many
#             fail the consistency check below, written "N (no-eval M, order K)"
#
# Consistency check (--native rows). Both profilers replace each interpreter eval-loop frame
# (_PyEval_EvalFrameDefault) by the Python frames it was running, so the eval loop itself is
# normally not in the output; what must be there is the native caller that entered it. A
# Python frame is a frame whose text ends in "(workload_split.py:LINE)"; every other frame is
# native. A sample whose innermost Python frame is func_a/func_b counts as inconsistent when
#   no-eval: none of the native frames before (rootward of) the first Python frame has a name
#            containing "EvalFrame", "EvalCode" or "_PyEval_Vector" (PyEval_EvalCode,
#            _PyEval_EvalFrameDefault, _PyEval_Vector, PyEval_EvalFrameEx, ...), i.e. the native
#            unwind did not reach the interpreter frame that runs the Python code; or
#   order:   the Python frames, root first, are not exactly <module>, main, func_a|func_b (the
#            workload's only call chain), or any frame contains "<unknown frame" (pyspy-bpf's
#            native/python mismatch marker).
# A sample can fail both; it is counted once in N and in each of M and K.
# Run it on an otherwise idle machine.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/bench/.venv"
DURATION=${DURATION:-5}
RATE=${RATE:-100}
SHARE_A=${SHARE_A:-0.7}
SEED=${SEED:-1}
PYTHON=${PYTHON:-/usr/bin/python3}

if [[ ! -x "$VENV/bin/py-spy" ]]; then
  echo "bench: creating $VENV with py-spy" >&2
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'py-spy>=0.4,<0.5'
fi

echo "bench: building pyspy-bpf (release)" >&2
(cd "$REPO" && cargo build --release -q)
PYSPY_BPF="${CARGO_TARGET_DIR:-$REPO/target}/release/pyspy-bpf"

exec /usr/bin/python3 - "$PYSPY_BPF" "$VENV/bin/py-spy" "$PYTHON" "$REPO/bench/workload_split.py" \
  "$DURATION" "$RATE" "$SHARE_A" "$SEED" <<'PY'
import math, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

pyspy_bpf, py_spy, python, workload, duration, rate, share_a, seed = sys.argv[1:9]
root = os.geteuid() == 0

tmp = tempfile.mkdtemp(prefix="pyspy-accuracy-")
truth_file = os.path.join(tmp, "truth.txt")
work = subprocess.Popen([python, "-I", workload, truth_file, "0", share_a, seed],
                        stdout=subprocess.PIPE)
line = work.stdout.readline()
assert line.startswith(b"ready"), line
pid = str(work.pid)
progress = [(0, 0, 0, 0, 0)]  # latest (t_ns, iterations, a_ns, b_ns, units), cumulative


def follow():
    for line in work.stdout:
        parts = line.split()
        if len(parts) == 5:
            progress[0] = tuple(int(p) for p in parts)


threading.Thread(target=follow, daemon=True).start()

PY_FRAME = re.compile(r"^(.*) \(workload_split\.py:\d+\)$")
LEAF = re.compile(r"^(func_a|func_b) \(")
EVAL = re.compile(r"EvalFrame|EvalCode|_PyEval_Vector")


def analyse(path, native):
    """(samples, a, b, inconsistent, no_eval, bad_order) from a raw (collapsed) file."""
    n = a = b = bad = no_eval = bad_order = 0
    with open(path, errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            count = int(count)
            n += count
            frames = stack.split(";")
            leaf = None
            if native:
                for fr in reversed(frames):
                    m = LEAF.match(fr)
                    if m:
                        leaf = m.group(1)
                        break
            else:
                m = LEAF.match(frames[-1])
                leaf = m.group(1) if m else None
            if leaf == "func_a":
                a += count
            elif leaf == "func_b":
                b += count
            if not native or leaf is None:
                continue
            first_py = next((i for i, fr in enumerate(frames) if PY_FRAME.match(fr)), len(frames))
            e = not any(EVAL.search(fr) for fr in frames[:first_py])
            names = [PY_FRAME.match(fr).group(1) for fr in frames if PY_FRAME.match(fr)]
            o = names != ["<module>", "main", leaf] or any("<unknown frame" in fr for fr in frames)
            if e or o:
                bad += count
            no_eval += count if e else 0
            bad_order += count if o else 0
    return n, a, b, bad, no_eval, bad_order


TICK = os.sysconf("SC_CLK_TCK")


def wl_cpu():
    """The workload's user+sys CPU seconds so far."""
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(TICK)


def measure(name, argv, out):
    if os.path.exists(out):
        os.unlink(out)
    c0 = wl_cpu()
    p0 = progress[0]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    time.sleep(0.05)  # one more progress line past the end of the recording
    p1 = progress[0]
    c1 = wl_cpu()
    if status != 0:
        sys.stderr.write("bench: %s failed (status %d):\n%s\n" % (name, status, err.decode(errors="replace")))
    wall = (p1[0] - p0[0]) / 1e9
    its = (p1[4] - p0[4]) / wall if wall > 0 else float("nan")
    da, db = p1[2] - p0[2], p1[3] - p0[3]
    truth = da / float(da + db) if da + db else float("nan")
    return usage.ru_utime + usage.ru_stime, its, truth, (c1 - c0) / wall if wall > 0 else float("nan")


def rate_over(seconds):
    """The workload's loop steps per second over the next `seconds`, no profiler attached."""
    p0, c0 = progress[0], wl_cpu()
    time.sleep(seconds)
    p1, c1 = progress[0], wl_cpu()
    base_util.append((c1 - c0) / ((p1[0] - p0[0]) / 1e9))
    return (p1[4] - p0[4]) / ((p1[0] - p0[0]) / 1e9)


rows = []
base_util = []
try:
    time.sleep(1)
    base_before = rate_over(3)
    out = os.path.join(tmp, "profile.txt")
    common = ["record", "--pid", pid, "-r", rate, "-d", duration, "-f", "raw", "-o", out]
    runs = [
        ("pyspy-bpf userspace", [pyspy_bpf] + common + ["--mode", "userspace"], False, False),
        ("pyspy-bpf bpf", [pyspy_bpf] + common + ["--mode", "bpf"], False, True),
        ("pyspy-bpf userspace --native", [pyspy_bpf] + common + ["--mode", "userspace", "--native"], True, False),
        ("pyspy-bpf bpf --native", [pyspy_bpf] + common + ["--mode", "bpf", "--native"], True, True),
        ("py-spy --nonblocking", [py_spy] + common + ["--nonblocking"], False, False),
        ("py-spy (blocking)", [py_spy] + common, False, False),
        ("py-spy --native", [py_spy] + common + ["--native"], True, False),
    ]
    for name, argv, native, bpf in runs:
        if bpf and not root:
            sys.stderr.write("bench: skipping %s (needs root)\n" % name)
            continue
        sys.stderr.write("bench: %s at %s Hz for %s s\n" % (name, rate, duration))
        cpu, its, truth, util = measure(name, argv, out)
        stats = analyse(out, native) if os.path.exists(out) else (0, 0, 0, 0, 0, 0)
        rows.append((name, native, stats, cpu, its, truth, util))
        time.sleep(0.5)
    base_after = rate_over(3)
    baseline = (base_before + base_after) / 2
finally:
    work.send_signal(signal.SIGTERM)
    try:
        work.wait(timeout=5)
    except subprocess.TimeoutExpired:
        work.kill()
        work.wait()
    totals = {}
    if os.path.exists(truth_file):
        with open(truth_file) as f:
            for line in f:
                k, v = line.split()
                totals[k] = float(v)
    shutil.rmtree(tmp, ignore_errors=True)

pct = lambda x: "%.1f" % (100.0 * x) if x == x else "nan"
print()
hdr = ("%-29s %7s %6s %6s %7s %8s %6s %7s %7s %8s %8s %8s  %s"
       % ("profiler", "samples", "A %", "B %", "other %", "truth A", "err pp", "1 sigma",
          "CPU s", "us/smp", "slowdown", "wl CPU %", "incons."))
print(hdr)
for name, native, (n, a, b, bad, no_eval, bad_order), cpu, its, truth, util in rows:
    ab = a + b
    sa = a / float(ab) if ab else float("nan")
    err = abs(sa - truth) * 100 if ab else float("nan")
    sigma = math.sqrt(truth * (1 - truth) / ab) * 100 if ab else float("nan")
    per = cpu / n * 1e6 if n else float("nan")
    slow = "%.1f%%" % (100.0 * (1 - its / baseline)) if baseline else "?"
    inc = "%d (no-eval %d, order %d)" % (bad, no_eval, bad_order) if native else "-"
    print("%-29s %7d %6s %6s %7s %8s %6.1f %7.1f %7.3f %8.1f %8s %8s  %s"
          % (name, n, pct(sa), pct(1 - sa) if ab else "nan", pct((n - ab) / float(n)) if n else "nan",
             pct(truth), err, sigma, cpu, per, slow, pct(util), inc))
print()
print("rate %s Hz, %s s per recording; baseline %.1fM workload loop steps/s with no profiler "
      "(%.1fM before, %.1fM after the recordings; workload CPU %s %%)."
      % (rate, duration, baseline / 1e6, base_before / 1e6, base_after / 1e6,
         " / ".join(pct(u) for u in base_util)))
if totals:
    print("workload totals (its own timing, whole run): %d iterations, func_a %.3f s in %d calls, "
          "func_b %.3f s in %d calls, A share %.1f %% (target %.0f %%), %.1f %% of wall time in "
          "neither" % (totals["iterations"], totals["a_ns"] / 1e9, totals["a_calls"], totals["b_ns"] / 1e9,
                       totals["b_calls"], 100 * totals["share_a"], 100 * float(share_a),
                       100 * (1 - (totals["a_ns"] + totals["b_ns"]) / totals["wall_ns"])))
print("A %/B % = share of the samples with a func_a/func_b leaf; err pp = |A % - truth A %|; "
      "1 sigma = binomial standard error at that sample count.")
PY
