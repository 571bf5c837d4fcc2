#!/usr/bin/env bash
# What the off-CPU (sched_switch) BPF program of wall-clock mode (`record --idle` in BPF mode)
# costs on a host with about RATE context switches a second. Prints a table; no pass/fail.
#
# usage: bench/offcpu_cost.sh       (as root: BPF)
# env:   THREADS=4 SLEEP_MS=2       (the workload: THREADS Python threads each sleeping SLEEP_MS
#                                    in a loop: ~THREADS x 1000/SLEEP_MS switches a second of
#                                    its own, every one of them recorded, each stretch being
#                                    above the default --offcpu-min of 1 ms)
#        DURATION=10  RATE=100      PYTHON=/usr/bin/python3
#
# bench/workload_switches.py runs the switches. Then, one at a time:
#   pyspy-bpf record --mode bpf --pid W -d DURATION -f raw            (CPU profile: the baseline)
#   pyspy-bpf record --mode bpf --idle --pid W -d DURATION -f raw     (wall: the workload in scope)
#   pyspy-bpf record --all --idle -d DURATION -f raw                  (wall: every Python process)
# with kernel.bpf_stats_enabled=1 (restored afterwards). For each, from /proc/PID/fdinfo of the
# profiler: run_time_ns and run_cnt of its perf_event program (on-CPU samples) and of its
# tracing program (on_switch, run at every context switch of the host, in scope or not); the
# host's context switches (/proc/stat ctxt) and the workload's own (voluntary and involuntary,
# /proc/PID/task/*/status) over the run; the profiler's own CPU (wait4 rusage). "% core" of the
# off-CPU program = its run_time_ns / the run's wall time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
THREADS=${THREADS:-4}
SLEEP_MS=${SLEEP_MS:-2}
DURATION=${DURATION:-10}
RATE=${RATE:-100}
PYTHON=${PYTHON:-/usr/bin/python3}

if [[ $(id -u) != 0 ]]; then
  echo "bench: run as root (BPF)" >&2
  exit 1
fi
echo "bench: building pyspy-bpf (release)" >&2
(cd "$REPO" && cargo build --release -q)
PYSPY_BPF="${CARGO_TARGET_DIR:-$REPO/target}/release/pyspy-bpf"

exec /usr/bin/python3 - "$PYSPY_BPF" "$PYTHON" "$REPO/bench/workload_switches.py" "$THREADS" \
  "$SLEEP_MS" "$DURATION" "$RATE" <<'PY'
import os, subprocess, sys, tempfile, time

pyspy_bpf, python, workload_py, threads, sleep_ms, duration, rate = sys.argv[1:8]
STATS_KNOB = "/proc/sys/kernel/bpf_stats_enabled"
# enum bpf_prog_type: BPF_PROG_TYPE_PERF_EVENT, BPF_PROG_TYPE_TRACING (tp_btf).
PERF_EVENT, TRACING = 7, 26


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def host_switches():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("ctxt "):
                return int(line.split()[1])


def own_switches(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def progs(pid):
    """{prog_type: (run_time_ns, run_cnt)} of the BPF programs process `pid` holds open."""
    out = {}
    try:
        fds = os.listdir("/proc/%d/fdinfo" % pid)
    except OSError:
        return out
    seen = set()
    for fd in fds:
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                text = f.read()
        except OSError:
            continue
        if "prog_id:" not in text or "run_time_ns:" not in text:
            continue
        fields = dict((k.strip(), v.strip()) for k, v in
                      (l.split(":", 1) for l in text.splitlines() if ":" in l))
        if fields["prog_id"] in seen:
            continue
        seen.add(fields["prog_id"])
        kind = int(fields["prog_type"])
        ns, cnt = out.get(kind, (0, 0))
        out[kind] = (ns + int(fields["run_time_ns"]), cnt + int(fields["run_cnt"]))
    return out


def measure(name, argv, workload_pid):
    out = tempfile.mktemp(prefix="pyspy-offcpu-", suffix=".txt")
    argv = argv + ["-o", out]
    h0, w0 = host_switches(), own_switches(workload_pid)
    started = time.time()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    last = {}
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        last = progs(proc.pid) or last
        time.sleep(0.1)
    wall = time.time() - started
    h1, w1 = host_switches(), own_switches(workload_pid)
    err = proc.stderr.read().decode(errors="replace")
    if status != 0:
        log("%s failed:\n%s" % (name, err[-3000:]))
    lost = [l for l in err.splitlines() if "lost or damaged" in l]
    weight = 0
    if os.path.exists(out):
        with open(out, errors="replace") as f:
            for line in f:
                c = line.rstrip("\n").rsplit(" ", 1)[-1]
                weight += int(c) if c.isdigit() else 0
        os.unlink(out)
    return {
        "name": name, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
        "host_cs": (h1 - h0) / wall, "own_cs": (w1 - w0) / wall,
        "perf": last.get(PERF_EVENT, (0, 0)), "switch": last.get(TRACING, (0, 0)),
        "lost": lost[0].split(": ", 1)[1] if lost else "0", "weight": weight,
    }


workload = subprocess.Popen([python, "-I", workload_py, threads, sleep_ms], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
rows = []
old = None
try:
    line = workload.stdout.readline().decode()
    if not line.startswith("ready"):
        raise SystemExit("bench: the workload did not start (%r)" % line)
    wpid = workload.pid
    time.sleep(1)
    with open(STATS_KNOB) as f:
        old = f.read().strip()
    with open(STATS_KNOB, "w") as f:
        f.write("1")
    base = [pyspy_bpf, "record", "-r", rate, "-d", duration, "-f", "raw"]
    for name, extra in [("cpu --pid", ["--mode", "bpf", "--pid", str(wpid)]),
                        ("wall --pid", ["--mode", "bpf", "--idle", "--pid", str(wpid)]),
                        ("wall --all", ["--all", "--idle"])]:
        log("%s: %s" % (name, " ".join(base[1:] + extra)))
        rows.append(measure(name, base + extra, wpid))
        time.sleep(1)
finally:
    if old is not None:
        with open(STATS_KNOB, "w") as f:
            f.write(old)
    workload.kill()
    workload.wait()

print()
print("%-11s %6s %8s %9s %8s %12s %9s %12s %9s %8s  %s" % (
    "run", "wall s", "host cs/s", "own cs/s", "CPU s", "switch runs", "ns/run", "switch %core",
    "perf ms", "perf ns/run", "lost"))
for r in rows:
    sns, scnt = r["switch"]
    pns, pcnt = r["perf"]
    print("%-11s %6.1f %9.0f %8.0f %8.2f %12d %9s %11.3f%% %9.1f %11s  %s" % (
        r["name"], r["wall"], r["host_cs"], r["own_cs"], r["cpu"], scnt,
        "%.0f" % (sns / scnt) if scnt else "-", 100.0 * sns / 1e9 / r["wall"], pns / 1e6,
        "%.0f" % (pns / pcnt) if pcnt else "-", r["lost"]))
print()
print("workload: %s threads sleeping %s ms in a loop (bench/workload_switches.py); %s CPUs"
      % (threads, sleep_ms, os.cpu_count()))
print("host cs/s: context switches of the whole host (/proc/stat ctxt) during the run; own cs/s: "
      "the workload's; CPU s: the profiler's user+sys (its BPF programs run on the CPUs they "
      "trace, not in it); switch runs / ns/run / %core: the off-CPU program (on_switch, run at "
      "every switch of the host) from kernel.bpf_stats_enabled, %core = its run time / wall s "
      "(100% = one core); perf: the on-CPU sampling program. Target: the off-CPU program below 1% "
      "of one core at ~2,000 switches a second.")
PY
