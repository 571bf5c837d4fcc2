#!/usr/bin/env bash
# Host-wide scaling: what pyspy-bpf (`record --all`, BPF) and py-spy (`--subprocesses`,
# non-blocking) cost as the number of Python processes and threads grows. Prints a table;
# no pass/fail.
#
# usage: bench/scaling.sh           (as root: BPF, and reading other processes)
# env:   SHAPES="4x2 20x20 50x50"  (N processes x T threads)   DURATION=5   RATE=100
#        PYTHON=/usr/bin/python3   (the workload's interpreter)
#        PYSPY_BPF_ARGS=           (more arguments for pyspy-bpf record, e.g. --idle: a
#                                   wall-clock profile, with the off-CPU program)
#        PYSPY=1                   (0: do not run py-spy)
#        BASELINE=                 (another pyspy-bpf binary, e.g. an older build: run after
#                                   this one on the same workload, a row "baseline --all" with
#                                   this/base, the ratio of their CPU s)
#        BPF_STATS=1               (0: do not turn on kernel.bpf_stats_enabled; see below)
#        SESSION=own               (own: the workload runs in its own session, so with
#                                   kernel.sched_autogroup_enabled=1 its busy threads share
#                                   one scheduling group, as another service would; shared:
#                                   the profilers compete with every busy thread one for one)
#        KSYM_CACHE=keep           (cold: delete pyspy-bpf's per-boot cache of kernel symbols,
#                                   ~/.cache/pyspy-bpf/kallsyms-BOOT_ID, before each of its runs,
#                                   so each pays for reading /proc/kallsyms, as the first run
#                                   after a boot does)
#        PPROF=0                   (1: also record each shape with -f pprof, and print the
#                                   file's size and the time past DURATION the run took: the
#                                   write, plus start-up, so an upper bound of the write)
#        PYSPY_MAX_WALL=DURATION*3+10  (py-spy falls behind on big shapes: it is sent SIGINT
#                                   (it then writes what it has) after this many seconds)
#
# For each shape, bench/workload_tree.py starts one parent Python process that starts N
# children; each child runs 1 busy thread (nested Python functions in a loop) and T-1 idle
# threads blocked in threading.Event().wait() (a futex wait with no timeout). The bench waits
# until every child has said all its threads are started, checks over 2 s that exactly the N
# busy threads use CPU (the idle ones never run), then records, one profiler at a time:
#   pyspy-bpf record --all -r RATE -d DURATION -f raw -o FILE
#   py-spy record --subprocesses --pid PARENT -r RATE -d DURATION -f raw -o FILE --nonblocking
# and kills the whole workload tree afterwards (also on Ctrl-C, SIGTERM or an error: a
# finally/signal handler kills its process group, and every workload process has
# PR_SET_PDEATHSIG so it dies with its parent).
#
# A profiler's CPU time is its own user+sys time as a child process (wait4 rusage), peak RSS
# is ru_maxrss, samples are the sum of the counts in its raw output. The BPF program itself
# runs in the context of the sampled CPU, so its time is not in that rusage: with BPF_STATS=1
# the bench turns on kernel.bpf_stats_enabled during the pyspy-bpf run (restored afterwards)
# and reads the programs' run_time_ns from /proc/PID/fdinfo of the profiler (column "bpf s").
# Creates bench/.venv with py-spy 0.4.x on first use, builds pyspy-bpf --release.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/bench/.venv"
SHAPES=${SHAPES:-"4x2 20x20 50x50"}
DURATION=${DURATION:-5}
RATE=${RATE:-100}
PYTHON=${PYTHON:-/usr/bin/python3}
PYSPY_BPF_ARGS=${PYSPY_BPF_ARGS:-}
PYSPY=${PYSPY:-1}
BPF_STATS=${BPF_STATS:-1}
SESSION=${SESSION:-own}
KSYM_CACHE=${KSYM_CACHE:-keep}
PYSPY_MAX_WALL=${PYSPY_MAX_WALL:-$(( ${DURATION%.*} * 3 + 10 ))}
if [[ $KSYM_CACHE != keep && $KSYM_CACHE != cold ]]; then
  echo "bench: KSYM_CACHE is 'keep' or 'cold', not '$KSYM_CACHE'" >&2
  exit 1
fi
if [[ $SESSION != own && $SESSION != shared ]]; then
  echo "bench: SESSION is 'own' or 'shared', not '$SESSION'" >&2
  exit 1
fi

if [[ $(id -u) != 0 ]]; then
  echo "bench: run as root (pyspy-bpf --all loads a BPF program; py-spy reads other processes)" >&2
  exit 1
fi

if [[ $PYSPY == 1 && ! -x "$VENV/bin/py-spy" ]]; then
  echo "bench: creating $VENV with py-spy" >&2
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'py-spy>=0.4,<0.5'
fi

# Limits: the biggest shape needs N*T threads + N+1 processes, plus the rest of the machine.
need=0
for shape in $SHAPES; do
  if [[ ! $shape =~ ^([0-9]+)x([0-9]+)$ ]] || (( BASH_REMATCH[1] < 1 || BASH_REMATCH[2] < 1 )); then
    echo "bench: bad shape '$shape' (want NxT, e.g. 50x50)" >&2
    exit 1
  fi
  n=$(( BASH_REMATCH[1] * BASH_REMATCH[2] + BASH_REMATCH[1] + 1 ))
  (( n > need )) && need=$n
done
running=$(ps -eLf --no-headers | wc -l)
want=$(( need + running + 1000 ))
for knob in /proc/sys/kernel/pid_max /proc/sys/kernel/threads-max; do
  if (( $(cat "$knob") < want )); then
    echo "bench: $knob is $(cat "$knob"), below the $want tasks this needs; raising it" >&2
    echo "$want" >"$knob"
  fi
done
nproc_limit=$(ulimit -u)
if [[ $nproc_limit != unlimited ]] && (( nproc_limit < want )); then
  ulimit -u "$want" || { echo "bench: ulimit -u is $nproc_limit, below $want" >&2; exit 1; }
fi
pids_cgroup=$(awk -F: '$2 == "pids" { print $3 }' /proc/self/cgroup)
for f in "/sys/fs/cgroup/pids$pids_cgroup/pids.max" "/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)/pids.max"; do
  if [[ -r $f ]] && [[ $(cat "$f") != max ]] && (( $(cat "$f") < want )); then
    echo "bench: the cgroup limit $f is $(cat "$f"), below $want" >&2
    exit 1
  fi
done

echo "bench: building pyspy-bpf (release)" >&2
(cd "$REPO" && cargo build --release -q)
PYSPY_BPF="${CARGO_TARGET_DIR:-$REPO/target}/release/pyspy-bpf"

exec /usr/bin/python3 - "$PYSPY_BPF" "$VENV/bin/py-spy" "$PYTHON" "$REPO/bench/workload_tree.py" \
  "$DURATION" "$RATE" "$BPF_STATS" "$SESSION" "$PYSPY_MAX_WALL" "$KSYM_CACHE" "$PYSPY" \
  "$PYSPY_BPF_ARGS" "${BASELINE:-}" $SHAPES <<'PY'
import os, re, shutil, signal, subprocess, sys, tempfile, time

(pyspy_bpf, py_spy, python, workload_py, duration, rate, bpf_stats, session, pyspy_max_wall,
 ksym_cache, run_pyspy, pyspy_bpf_args, baseline) = sys.argv[1:14]
pyspy_bpf_args = pyspy_bpf_args.split()
shapes = [tuple(int(x) for x in s.split("x")) for s in sys.argv[14:]]
duration_s = float(duration)
STATS_KNOB = "/proc/sys/kernel/bpf_stats_enabled"
CLK_TCK = os.sysconf("SC_CLK_TCK")

tmp = tempfile.mkdtemp(prefix="pyspy-scaling-")
workload = None  # the running workload's parent (a Popen, leader of its own process group)


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def stop_workload():
    global workload
    if workload is None:
        return
    try:
        os.killpg(workload.pid, signal.SIGKILL)  # the whole tree: it is its own process group
    except ProcessLookupError:
        pass
    workload.wait()
    workload = None
    # Children are SIGKILLed too (same group; PR_SET_PDEATHSIG as a backstop): wait until gone.
    for _ in range(100):
        if not tree_pids_alive():
            break
        time.sleep(0.05)


def tree_pids_alive():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if workload_py.encode() in f.read():
                        return True
            except OSError:
                pass
    return False


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGHUP, on_signal)
signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (&)


def descendants(root):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def thread_cpu(pids):
    """{(pid, tid): utime+stime ticks} of every thread of `pids`."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[(pid, int(tid))] = int(fields[11]) + int(fields[12])
            except OSError:
                pass
    return out


def start_workload(n, t):
    global workload
    log("starting the workload: %d processes x %d threads" % (n, t))
    started = time.time()
    # Its own process group either way (killpg takes the whole tree); its own session (its own
    # autogroup) unless SESSION=shared.
    group = {"start_new_session": True} if session == "own" else {"process_group": 0}
    workload = subprocess.Popen([python, "-I", workload_py, str(n), str(t)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, **group)
    line = workload.stdout.readline().decode()
    if not line.startswith("ready"):
        raise SystemExit("bench: the workload did not start (%r)" % line)
    parent = workload.pid
    pids = descendants(parent)
    children = [p for p in pids if p != parent]
    before = thread_cpu(pids)
    time.sleep(2)
    after = thread_cpu(pids)
    ran = {k for k in after if after[k] > before.get(k, after[k])}
    busy_ran = sum(1 for (p, tid) in ran if p in children and tid == p)
    idle_ran = sum(1 for (p, tid) in ran if p in children and tid != p)
    info = {
        "processes": len(pids),
        "threads": len(after),
        "busy_ran": busy_ran,
        "idle_ran": idle_ran,
        "startup": time.time() - started - 2,
    }
    log("workload ready after %.1f s: %d processes, %d threads; over 2 s, %d of %d busy threads "
        "and %d of %d idle threads used CPU" % (info["startup"], info["processes"], info["threads"],
                                                 busy_ran, n, idle_ran, n * (t - 1)))
    if len(children) != n or len(after) != n * t + 1:
        raise SystemExit("bench: expected %d children and %d threads, found %d and %d"
                         % (n, n * t + 1, len(children), len(after)))
    return parent, info


def raw_samples(path):
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            count = line.rstrip("\n").rsplit(" ", 1)[-1]
            if count.isdigit():
                total += int(count)
    return total


def bpf_prog_ns(pid):
    """Sum of run_time_ns over the BPF programs the process `pid` holds open."""
    progs = {}
    try:
        fds = os.listdir("/proc/%d/fdinfo" % pid)
    except OSError:
        return None
    for fd in fds:
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                text = f.read()
        except OSError:
            continue
        if "prog_id:" in text and "run_time_ns:" in text:
            fields = dict(l.split(":", 1) for l in text.splitlines() if ":" in l)
            progs[fields["prog_id"].strip()] = int(fields["run_time_ns"])
    return sum(progs.values()) if progs else None


def proc_cpu(pid):
    """utime+stime of every thread of `pid` so far, in seconds (None once it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(CLK_TCK)
    except (OSError, IndexError, ValueError):
        return None


def measure(name, argv, out, watch_bpf, max_wall=None):
    """Run one recording; its user+sys CPU, wall time, peak RSS and outputs. Also its CPU
    rate after its first second (startup: BPF load, attaching, symbol tables), from
    /proc/PID/stat polled every 0.1 s."""
    if os.path.exists(out):
        os.unlink(out)
    log_path = os.path.join(tmp, "profiler.log")
    with open(log_path, "wb") as log_file:
        started = time.time()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        bpf_ns = None
        deadline = started + duration_s * 20 + 120
        interrupted = None
        first = last = None  # (time, CPU s) at >= 1 s after the start, and the latest
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if watch_bpf:
                bpf_ns = bpf_prog_ns(proc.pid) or bpf_ns
            now = time.time()
            cpu = proc_cpu(proc.pid)
            if cpu is not None and now - started >= 1.0:
                last = (now, cpu)
                first = first or last
            if max_wall and interrupted is None and now - started > max_wall:
                log("%s still running after %.0f s; sending SIGINT (it writes what it has)" % (name, max_wall))
                interrupted = now - started
                proc.send_signal(signal.SIGINT)
                deadline = min(deadline, now + 60)
            if now > deadline:
                log("%s did not finish in time; killing it" % name)
                proc.kill()
            time.sleep(0.1)
        wall = time.time() - started
        status = os.waitstatus_to_exitcode(status)
        proc.returncode = status
    with open(log_path, errors="replace") as f:
        text = f.read()
    if status != 0 and not (interrupted and os.path.exists(out)):
        log("%s failed (status %d):\n%s" % (name, status, text[-3000:]))
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "wall": wall,
        "rss_mb": usage.ru_maxrss / 1024.0,
        "samples": raw_samples(out) if os.path.exists(out) else 0,
        "text": text,
        "bpf_s": bpf_ns / 1e9 if bpf_ns is not None else None,
        "ok": status == 0,
        "steady": (100.0 * (last[1] - first[1]) / (last[0] - first[0])
                   if first and last and last[0] - first[0] >= 1.0 else None),
        # CPU s by the first poll at >= 1 s: start-up (BPF load, attaching, symbol tables)
        # plus that first second's sampling.
        "first_s": first[1] if first else None,
        "interrupted": interrupted,
    }


def parse_bpf(r):
    """pyspy-bpf's stderr: lost counters, Python read errors, processes seen."""
    lost = {}
    for m in re.finditer(r"lost or damaged samples: (.*)", r["text"]):
        for part in m.group(1).split(","):
            k, _, v = part.strip().partition("=")
            if v.strip().isdigit():
                lost[k] = lost.get(k, 0) + int(v)
    r["lost"] = ("%d (%s)" % (sum(lost.values()), ", ".join("%s=%d" % kv for kv in sorted(lost.items())))
                 if lost else "0")
    m = re.search(r"pyspy-bpf: (\d+) samples \((\d+) of Python processes, (\d+) Python read errors\) "
                  r"from (\d+) processes", r["text"])
    if m:
        r["errors"] = m.group(3)
        r["detail"] = "%s samples of Python processes, %s processes seen" % (m.group(2), m.group(4))
    else:
        r["errors"] = "?"
        r["detail"] = "no summary line"


def parse_pyspy(r):
    """py-spy's output: 'Ns behind in sampling' lines (the worst delay) and 'Errors: N'."""
    delays = []
    for m in re.finditer(r"([0-9.]+)(ns|µs|us|ms|s) behind in sampling", r["text"]):
        delays.append(float(m.group(1)) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)])
    r["lost"] = "late %.1fs (%d msgs)" % (max(delays), len(delays)) if delays else "-"
    if r["interrupted"]:
        r["lost"] += "; SIGINT@%.0fs" % r["interrupted"]
    m = re.search(r"Samples: (\d+) Errors: (\d+)", r["text"])
    r["errors"] = m.group(2) if m else "?"
    r["detail"] = "py-spy's own count, Samples: %s" % m.group(1) if m else ""


def ksym_cache_path():
    """pyspy-bpf's cache of this boot's core kernel symbols (see src/native/symbolize.rs)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyspy-bpf", "kallsyms-" + boot_id)


def set_stats(value):
    try:
        with open(STATS_KNOB) as f:
            old = f.read().strip()
        with open(STATS_KNOB, "w") as f:
            f.write(value)
        return old
    except OSError as e:
        log("cannot set %s: %s" % (STATS_KNOB, e))
        return None


rows, infos, ksym_states = [], {}, []
load_at_start = os.getloadavg()[0]
pprof_rows = []  # (shape, wall s past DURATION, file bytes or None)
old_stats = None
try:
    for n, t in shapes:
        shape = "%dx%d" % (n, t)
        parent, infos[shape] = start_workload(n, t)
        out = os.path.join(tmp, "profile.txt")
        log("%s: pyspy-bpf record --all %sat %s Hz for %s s"
            % (shape, "".join(a + " " for a in pyspy_bpf_args), rate, duration))
        cache = ksym_cache_path()
        if ksym_cache == "cold" and cache and os.path.exists(cache):
            os.unlink(cache)
        ksym_states.append("%s %s" % (shape, "warm" if cache and os.path.exists(cache) else "cold"))
        if bpf_stats == "1":
            old_stats = set_stats("1")
        try:
            r = measure("pyspy-bpf", [pyspy_bpf, "record", "--all", "-r", rate, "-d", duration, "-f", "raw",
                                      "-o", out] + pyspy_bpf_args, out, bpf_stats == "1")
        finally:
            if old_stats is not None:
                set_stats(old_stats)
                old_stats = None
        parse_bpf(r)
        rows.append((shape, "pyspy-bpf --all", r))
        if os.environ.get("PPROF", "0") == "1":
            time.sleep(1)
            pb = os.path.join(tmp, "profile.pb.gz")
            log("%s: pyspy-bpf record --all -f pprof at %s Hz for %s s" % (shape, rate, duration))
            r = measure("pyspy-bpf pprof", [pyspy_bpf, "record", "--all", "-r", rate, "-d", duration,
                                            "-f", "pprof", "-o", pb] + pyspy_bpf_args, pb, False)
            size = os.path.getsize(pb) if r["ok"] and os.path.exists(pb) else None
            pprof_rows.append((shape, r["wall"] - duration_s, size))
        if baseline:
            time.sleep(1)
            log("%s: baseline %s record --all at %s Hz for %s s" % (shape, baseline, rate, duration))
            if bpf_stats == "1":
                old_stats = set_stats("1")
            try:
                r = measure("baseline", [baseline, "record", "--all", "-r", rate, "-d", duration, "-f",
                                         "raw", "-o", out] + pyspy_bpf_args, out, bpf_stats == "1")
            finally:
                if old_stats is not None:
                    set_stats(old_stats)
                    old_stats = None
            parse_bpf(r)
            rows.append((shape, "baseline --all", r))
        if run_pyspy != "1":
            stop_workload()
            continue
        time.sleep(1)
        log("%s: py-spy --subprocesses --nonblocking at %s Hz for %s s" % (shape, rate, duration))
        r = measure("py-spy", [py_spy, "record", "--subprocesses", "--pid", str(parent), "-r", rate, "-d",
                               duration, "-f", "raw", "-o", out, "--nonblocking"], out, False,
                    float(pyspy_max_wall))
        parse_pyspy(r)
        rows.append((shape, "py-spy --subprocesses", r))
        stop_workload()
except KeyboardInterrupt:
    log("interrupted")
finally:
    stop_workload()
    if old_stats is not None:
        set_stats(old_stats)
    shutil.rmtree(tmp, ignore_errors=True)

print()
print("%-6s %-22s %6s %7s %6s %7s %7s %7s %6s %8s %-28s %6s %9s" % (
    "shape", "profiler", "wall s", "CPU s", "%core", "steady", "1st s", "bpf s", "RSS MB", "samples",
    "lost / late", "errors", "bpf/pyspy"))
# Each baseline and py-spy row against the pyspy-bpf row of its own run of the shape (a shape
# may be given more than once, to repeat it).
ours = None
for shape, name, r in rows:
    ratio = ""
    if name == "pyspy-bpf --all":
        ours = r
    if name.startswith("baseline"):
        b = ours
        if b and r["cpu"]:
            ratio = "this/base %.3f" % (b["cpu"] / r["cpu"])
    if name.startswith("py-spy"):
        b = ours
        if b and r["cpu"]:
            # py-spy cut short: its CPU is a lower bound, so the ratio an upper bound
            ratio = ("<=" if r["interrupted"] else "") + "%.3f" % (b["cpu"] / r["cpu"])
    bpf_s = "%.3f" % r["bpf_s"] if r["bpf_s"] is not None else "-"
    steady = "%.1f%%" % r["steady"] if r["steady"] is not None else "-"
    first_s = "%.2f" % r["first_s"] if r["first_s"] is not None else "-"
    print("%-6s %-22s %6.1f %7.3f %5.1f%% %7s %7s %7s %6.1f %8d %-28s %6s %9s%s" % (
        shape, name, r["wall"], r["cpu"], 100.0 * r["cpu"] / r["wall"], steady, first_s, bpf_s, r["rss_mb"],
        r["samples"], r["lost"], r["errors"], ratio, "" if r["ok"] or r["interrupted"] else "  FAILED"))
print()
for shape, info in infos.items():
    print("%s workload: %d processes, %d threads; %d busy and %d idle threads used CPU over 2 s before "
          "recording" % (shape, info["processes"], info["threads"], info["busy_ran"], info["idle_ran"]))
for shape, name, r in rows:
    if r["detail"]:
        print("%s %s: %s" % (shape, name, r["detail"]))
try:
    with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
        autogroup = f.read().strip()
except OSError:
    autogroup = "?"
print("SESSION=%s, kernel.sched_autogroup_enabled=%s, 1-min load average at the start %.1f, at the end %.1f"
      % (session, autogroup, load_at_start, os.getloadavg()[0]))
print("pyspy-bpf's kernel symbol cache before each run (KSYM_CACHE=%s; cold: /proc/kallsyms read, "
      "~50 ms): %s" % (ksym_cache, ", ".join(ksym_states)))
print()
print("CPU s = user+sys of the profiler process (wait4 rusage); %%core = CPU s / wall s (100%% = one "
      "core; this machine has %d); steady = %%core after the profiler's first second (without "
      "startup: BPF load, attaching, symbol tables); 1st s = CPU s used by the end of that first "
      "second (startup plus one second of sampling); bpf s = time spent in pyspy-bpf's BPF program "
      "on the sampled CPUs (kernel.bpf_stats_enabled), not in CPU s; RSS = peak RSS (ru_maxrss); "
      "samples = sum of the counts in the raw output; bpf/pyspy = pyspy-bpf's CPU s / py-spy's."
      % os.cpu_count())
print("pyspy-bpf --all samples EVERY process on the machine at RATE per CPU (CPU time: at most "
      "CPUs x RATE x DURATION = %d samples), including anything else running (other builds and "
      "tests, this bench), and attaches to every Python process it samples; py-spy samples every "
      "thread of the workload tree at RATE (wall time: about N busy threads x RATE x DURATION), "
      "so the sample counts are not comparable." % (os.cpu_count() * int(rate) * duration_s))
print("lost: pyspy-bpf's 'lost or damaged samples' counters (stale_python: handled too late to read "
      "the Python stack); py-spy: the worst 'behind in sampling' delay it printed ('-': none), and "
      "SIGINT@ when it was stopped after PYSPY_MAX_WALL s. errors: Python read errors (pyspy-bpf), "
      "'Errors:' (py-spy).")
for shape, past, size in pprof_rows:
    print("%s -f pprof: %s, run ended %.2f s after DURATION (start-up and the write; target: write "
          "< 1 s, file < 5 MB)" % (shape, "%.1f KB" % (size / 1024.0) if size is not None else "FAILED",
                                  past))
print("Target: pyspy-bpf's CPU flat as N x T grows, below 2% of one core at 50x50 (py-spy was "
      "measured at 39 s CPU for a 5 s record at 50x50 on this machine). The machine is noisy: "
      "compare within one run.")
PY
