#!/usr/bin/env bash
# The agent's steady-state cost on a fleet: `pyspy-bpf agent` (19 Hz, 15 s windows, exporting
# to a spool and to a local OTLP receiver) next to `pyspy-bpf record --all` at the same rate,
# one after the other on the same workload (bench/workload_tree.py: N processes x T threads,
# one busy thread each). Prints, per profiler: user+sys CPU of its process, the BPF program's
# own run time (kernel.bpf_stats_enabled), both as % of one core over the measured period,
# and RSS at the start and end of it; then the ratio agent/record. No pass/fail; the issue's
# target is "agent at most 1% of one core including export" on the 50x50 shape.
#
# usage: bench/agent_cost.sh          (as root)
# env:   SHAPE=50x50   WARMUP=30 (s before measuring)   MEASURE=120 (s measured)
#        PYTHON=/usr/bin/python3 (the workload's interpreter)   RATE=19   INTERVAL=15s
#        OTLP=1  (0: spool only; 1 needs bench/.venv-otlp, created with opentelemetry-proto)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHAPE=${SHAPE:-50x50}
WARMUP=${WARMUP:-30}
MEASURE=${MEASURE:-120}
PYTHON=${PYTHON:-/usr/bin/python3}
RATE=${RATE:-19}
INTERVAL=${INTERVAL:-15s}
OTLP=${OTLP:-1}
N=${SHAPE%x*}
T=${SHAPE#*x}

if [[ $(id -u) != 0 ]]; then
  echo "agent_cost: run as root (BPF)" >&2
  exit 1
fi
(cd "$REPO" && cargo build --release --quiet)
BIN="$REPO/target/release/pyspy-bpf"
WORK=$(mktemp -d /tmp/pyspy-bpf-agent-cost.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n ${TREE_PGID:-} ]] && kill -- "-$TREE_PGID" 2>/dev/null || true
  [[ -n ${STATS_OLD:-} ]] && echo "$STATS_OLD" > /proc/sys/kernel/bpf_stats_enabled
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

STATS_OLD=$(cat /proc/sys/kernel/bpf_stats_enabled)
echo 1 > /proc/sys/kernel/bpf_stats_enabled

# The fleet, in its own session (its busy threads share one autogroup, as a service would).
mkfifo "$WORK/tree.in"
setsid "$PYTHON" "$REPO/bench/workload_tree.py" "$N" "$T" < "$WORK/tree.in" > "$WORK/tree.out" 2>&1 &
TREE_PID=$!
TREE_PGID=$TREE_PID
exec 9> "$WORK/tree.in"
for _ in $(seq 1 300); do grep -q '^ready' "$WORK/tree.out" 2>/dev/null && break; sleep 0.2; done
grep -q '^ready' "$WORK/tree.out" || { echo "agent_cost: the workload did not start" >&2; cat "$WORK/tree.out" >&2; exit 1; }
echo "workload: $N processes x $T threads ready"

OTLP_ARGS=()
if [[ $OTLP == 1 ]]; then
  VENV="$REPO/bench/.venv-otlp"
  [[ -x $VENV/bin/python ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r "$REPO/tests/requirements-otlp.txt"; }
  "$VENV/bin/python" "$REPO/tests/scripts/otlp_receiver.py" --port-file "$WORK/otlp.port" --out "$WORK/otlp" &
  PIDS+=($!)
  for _ in $(seq 1 100); do [[ -s $WORK/otlp.port ]] && break; sleep 0.1; done
  OTLP_ARGS=(--otlp "http://127.0.0.1:$(cat "$WORK/otlp.port")")
fi

ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
bpf_ns() {
  local total=0 f v
  for f in /proc/"$1"/fdinfo/*; do
    v=$(awk '/^run_time_ns:/ { print $2 }' "$f" 2>/dev/null || true)
    [[ -n $v ]] && total=$((total + v))
  done
  echo "$total"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# measure NAME CMD...: runs CMD, measures MEASURE seconds after WARMUP, prints one line.
measure() {
  local name=$1; shift
  "$@" > "$WORK/$name.log" 2>&1 &
  local pid=$!
  sleep "$WARMUP"
  kill -0 "$pid" 2>/dev/null || { echo "agent_cost: $name exited early" >&2; cat "$WORK/$name.log" >&2; exit 1; }
  local t0 b0 r0 t1 b1 r1
  t0=$(ticks "$pid"); b0=$(bpf_ns "$pid"); r0=$(rss_kib "$pid")
  sleep "$MEASURE"
  t1=$(ticks "$pid"); b1=$(bpf_ns "$pid"); r1=$(rss_kib "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  local cpu bpf
  cpu=$(awk -v a="$t0" -v b="$t1" -v s="$MEASURE" 'BEGIN { printf "%.3f", (b - a) / 100 / s * 100 }')
  bpf=$(awk -v a="$b0" -v b="$b1" -v s="$MEASURE" 'BEGIN { printf "%.3f", (b - a) / 1e9 / s * 100 }')
  printf '%-8s %8s %8s %8s %10s %10s\n' "$name" "$cpu" "$bpf" \
    "$(awk -v c="$cpu" -v b="$bpf" 'BEGIN { printf "%.3f", c + b }')" "$((r0 / 1024))" "$((r1 / 1024))"
  echo "$cpu $bpf" > "$WORK/$name.result"
}

echo "warm-up ${WARMUP}s, measured ${MEASURE}s, ${RATE} Hz"
printf '%-8s %8s %8s %8s %10s %10s\n' profiler "cpu%" "bpf%" "total%" "RSS0 MiB" "RSS1 MiB"
measure agent "$BIN" agent --rate "$RATE" --interval "$INTERVAL" --spool "$WORK/spool" \
  --state-dir "$WORK/state" "${OTLP_ARGS[@]}"
measure record "$BIN" record --all -r "$RATE" -f raw -o "$WORK/record.txt"
read -r ac ab < "$WORK/agent.result"
read -r rc rb < "$WORK/record.result"
awk -v ac="$ac" -v ab="$ab" -v rc="$rc" -v rb="$rb" 'BEGIN {
  printf "agent/record total cost ratio: %.2f\n", (ac + ab) / ((rc + rb) > 0 ? (rc + rb) : 1) }'
echo "spool files: $(ls "$WORK/spool" | wc -l), $(du -sk "$WORK/spool" | cut -f1) KiB"
[[ $OTLP == 1 ]] && echo "OTLP requests received: $(ls "$WORK/otlp" 2>/dev/null | grep -c '\.json$' || true)"
