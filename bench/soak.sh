#!/usr/bin/env bash
# Soak: does pyspy-bpf's memory and descriptor use stay flat over a long host-wide run while
# processes come and go? Runs `record --all` (BPF) for MINUTES on a host where short-lived
# Python processes of several interpreters start and end continuously, next to a few
# long-lived ones and non-Python churn; samples the profiler's RSS (/proc/PID/status VmRSS)
# and open descriptors (/proc/PID/fd) every minute; prints them as a table and a verdict:
#   RSS within 10% of its value after the first 5 minutes (the warm-up: kernel symbols,
#   interpreter binaries and shared libraries are read once), descriptors flat (at most
#   FD_SLACK more than after 5 minutes). Exit status 1 when the verdict fails.
# RSS is shown split into anonymous memory (heap: caches, the profile) and file-backed pages:
# binaries mapped for their symbol tables, the profiler's own code (a page counts once a path
# through it first runs: a rare path run at minute 10 adds its pages then), and `bpf_kib`, the
# BPF maps mapped in (the sample ring buffer mostly, allocated whole at load but counted once
# touched). `record` keeps the whole profile in memory until it writes it, with a root per process (`name (pid)`): with thousands of processes its
# distinct stacks grow with the processes seen, so the size of the profile written is printed
# too (raw lines and bytes) to tell that growth from state kept for exited processes.
# Not a timed test: it says nothing about speed.
#
# usage: bench/soak.sh [MINUTES]    (as root: BPF; default 60)
# env:   RATE=100       sampling rate of the profiler
#        NATIVE=0       1: record --native (stack copies, unwinding: more memory per sample)
#        VERB=record    agent: run `pyspy-bpf agent` instead, once that verb exists
#                       (AGENT_ARGS are passed to it)
#        SPAWN_EVERY=0.3  seconds between short-lived Python processes (at most CONCURRENT
#                       of them run at once)   CONCURRENT=4   LONG_LIVED=3
#        PYTHONS="..."  interpreters for the short-lived processes (default: every
#                       provisioned one in ~/.cache/pythons/index.tsv, else python3)
#        FD_SLACK=8     descriptors allowed above the 5-minute value (files of the host's
#                       processes alive at that minute: other services, builds)
# The load is kept modest (the host may have 2 cores shared with other work): each
# short-lived process runs a small loop for 0.2-1.5 s, long-lived ones are busy ~20% of the
# time. Everything started is killed on exit (also on Ctrl-C or an error).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINUTES=${1:-${MINUTES:-60}}
RATE=${RATE:-100}
NATIVE=${NATIVE:-0}
VERB=${VERB:-record}
AGENT_ARGS=${AGENT_ARGS:-}
SPAWN_EVERY=${SPAWN_EVERY:-0.3}
CONCURRENT=${CONCURRENT:-4}
LONG_LIVED=${LONG_LIVED:-3}
FD_SLACK=${FD_SLACK:-8}
WARMUP=5

if [[ ! $MINUTES =~ ^[0-9]+$ ]] || (( MINUTES <= WARMUP )); then
  echo "soak: MINUTES must be a whole number above the $WARMUP-minute warm-up, not '$MINUTES'" >&2
  exit 1
fi
if [[ $(id -u) != 0 ]]; then
  echo "soak: run as root (record --all loads a BPF program)" >&2
  exit 1
fi

if [[ -z ${PYTHONS:-} ]]; then
  index="$HOME/.cache/pythons/index.tsv"
  if [[ -r $index ]]; then
    PYTHONS=$(awk -F'\t' '!/^#/ && $2 != "" { print $2 }' "$index" | tr '\n' ' ')
  fi
  PYTHONS=${PYTHONS:-$(command -v python3)}
fi
read -r -a pythons <<<"$PYTHONS"
for py in "${pythons[@]}"; do
  [[ -x $py ]] || { echo "soak: $py is not executable" >&2; exit 1; }
done

echo "soak: building pyspy-bpf (release)" >&2
(cd "$REPO" && cargo build --release --quiet)
WORK=$(mktemp -d /tmp/pyspy-soak.XXXXXX)
# A copy: a rebuild during the soak must not change the binary under test.
BIN="$WORK/pyspy-bpf"
cp "$REPO/target/release/pyspy-bpf" "$BIN"
LOAD_PIDS=()
PROFILER=
SLEEPER=
cleanup() {
  trap - EXIT INT TERM
  [[ -n $SLEEPER ]] && kill "$SLEEPER" 2>/dev/null || true
  if [[ -n $PROFILER ]] && kill -0 "$PROFILER" 2>/dev/null; then
    kill -INT "$PROFILER" 2>/dev/null || true
  fi
  for pid in "${LOAD_PIDS[@]}"; do
    # Each load generator leads its own process group (setsid): take the group with it.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A short-lived process: nested functions in a loop for D seconds (2.7 and 3.x alike).
cat >"$WORK/short.py" <<'EOF'
import sys, time
def leaf(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def middle(n):
    return leaf(n) + leaf(n // 2)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    middle(3000)
EOF
# A long-lived process: busy ~20% of the time, with two idle threads.
cat >"$WORK/long.py" <<'EOF'
import threading, time
def spin(seconds):
    end = time.time() + seconds
    while time.time() < end:
        sum(i for i in range(1000))
for _ in range(2):
    t = threading.Thread(target=threading.Event().wait)
    t.daemon = True
    t.start()
while True:
    spin(0.1)
    time.sleep(0.4)
EOF

echo 0 >"$WORK/spawned"
# Short-lived Python processes, interpreters in turn.
setsid bash -c '
  i=0; n=0; pythons=($1); script=$2; every=$3; concurrent=$4; counter=$5
  while true; do
    while (( $(jobs -rp | wc -l) >= concurrent )); do sleep 0.05; done
    py=${pythons[i % ${#pythons[@]}]}
    # 0.2 to 1.5 s of work.
    "$py" "$script" "0.$(( RANDOM % 8 + 2 ))$(( RANDOM % 10 ))" >/dev/null 2>&1 &
    [[ $(( RANDOM % 3 )) == 0 ]] && "$py" "$script" 1.$(( RANDOM % 5 )) >/dev/null 2>&1 &
    i=$(( i + 1 )); n=$(( n + 1 ))
    echo $n >"$counter.tmp" && mv "$counter.tmp" "$counter"  # never read half-written
    sleep "$every"
  done' soak-short "${pythons[*]}" "$WORK/short.py" "$SPAWN_EVERY" "$CONCURRENT" "$WORK/spawned" &
LOAD_PIDS+=($!)
# Long-lived Python processes.
for (( k = 0; k < LONG_LIVED; k++ )); do
  setsid "${pythons[k % ${#pythons[@]}]}" "$WORK/long.py" >/dev/null 2>&1 &
  LOAD_PIDS+=($!)
done
# Non-Python churn: short commands of distinct binaries.
setsid bash -c '
  while true; do
    ls -R /usr/lib/python3* >/dev/null 2>&1
    head -c 200000 /dev/urandom | gzip -1 | wc -c >/dev/null
    sort </etc/services | uniq -c >/dev/null
    sh -c "sleep 0.$(( RANDOM % 5 ))"
  done' soak-churn &
LOAD_PIDS+=($!)

args=(--all -r "$RATE" -d $(( MINUTES * 60 + 30 )) -f raw -o "$WORK/soak.raw")
(( NATIVE )) && args+=(--native)
case $VERB in
  record) cmd=("$BIN" record "${args[@]}") ;;
  agent)
    if ! "$BIN" agent --help >/dev/null 2>&1; then
      echo "soak: this pyspy-bpf has no agent verb yet" >&2
      exit 1
    fi
    # shellcheck disable=SC2206
    cmd=("$BIN" agent $AGENT_ARGS) ;;
  *) echo "soak: VERB is record or agent, not '$VERB'" >&2; exit 1 ;;
esac
"${cmd[@]}" 2>"$WORK/profiler.log" &
PROFILER=$!
echo "soak: ${cmd[*]} (pid $PROFILER) for $MINUTES minutes; python: ${pythons[*]}" >&2

rss=() fds=()
printf '%6s %10s %10s %10s %10s %6s %10s\n' minute rss_kib anon_kib file_kib bpf_kib fds spawned
for (( m = 1; m <= MINUTES; m++ )); do
  # In the background and waited for: bash runs a trap (Ctrl-C, SIGTERM) only once the
  # foreground command ends, which for `sleep 60` could be a minute later; `wait` returns at once.
  sleep 60 &
  SLEEPER=$!
  wait "$SLEEPER"
  if ! kill -0 "$PROFILER" 2>/dev/null; then
    echo "soak: the profiler exited early:" >&2
    cat "$WORK/profiler.log" >&2
    exit 1
  fi
  r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PROFILER/status")
  a=$(awk '/^RssAnon:/ { print $2 }' "/proc/$PROFILER/status")
  fb=$(awk '/^RssFile:/ { print $2 }' "/proc/$PROFILER/status")
  # Of the file-backed pages: the BPF maps mapped into the profiler (the ring buffer the
  # samples come through, sized at load). The kernel allocates them whole when the program
  # loads, but they count in RSS only once touched: the ring's as samples first wrap it.
  b=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { bpf = ($6 == "anon_inode:bpf-map") } /^Rss:/ && bpf { s += $2 } END { print s + 0 }' "/proc/$PROFILER/smaps")
  f=$(find "/proc/$PROFILER/fd" -mindepth 1 -maxdepth 1 | wc -l)
  rss+=("$r"); fds+=("$f")
  printf '%6d %10d %10d %10d %10d %6d %10d\n' "$m" "$r" "$a" "$fb" "$b" "$f" "$(cat "$WORK/spawned")"
done

kill -INT "$PROFILER"
wait "$PROFILER" || true
PROFILER=
grep -E 'processes:|cache evictions|lost or damaged|samples \(' "$WORK/profiler.log" >&2 || true
if [[ -f $WORK/soak.raw ]]; then
  echo "soak: profile written: $(wc -l <"$WORK/soak.raw") distinct stacks, $(wc -c <"$WORK/soak.raw") bytes raw" >&2
fi

base_rss=${rss[WARMUP - 1]} base_fds=${fds[WARMUP - 1]}
max_rss=0 max_fds=0
for (( i = WARMUP; i < MINUTES; i++ )); do
  (( rss[i] > max_rss )) && max_rss=${rss[i]}
  (( fds[i] > max_fds )) && max_fds=${fds[i]}
done
verdict=PASS
if (( max_rss * 100 > base_rss * 110 )); then
  echo "soak: RSS grew from $base_rss KiB after $WARMUP minutes to $max_rss KiB (> 10%)"
  verdict=FAIL
else
  echo "soak: RSS after $WARMUP minutes $base_rss KiB, at most $max_rss KiB later (within 10%)"
fi
if (( max_fds > base_fds + FD_SLACK )); then
  echo "soak: open descriptors grew from $base_fds after $WARMUP minutes to $max_fds"
  verdict=FAIL
else
  echo "soak: open descriptors after $WARMUP minutes $base_fds, at most $max_fds later (flat)"
fi
echo "soak: $verdict"
[[ $verdict == PASS ]]
