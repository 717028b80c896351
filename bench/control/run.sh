#!/usr/bin/env bash
# Control-plane figures of issue 5 item 3, in one command (see bench/control/README.md):
#
#   bench/control/run.sh            (VEER_BUILD_DIR: the build directory, default build/)
#   env: CHANGES (1000) weight changes, TABLE_ITERATIONS (50), CLIENTS (100) x REQUESTS (200) status requests,
#        PUSHES (2000) push/ping round trips, BREACH_REPS (5) rollouts, SKIP_BREACH=1 to leave out the (slowest) breach figure;
#        POLL_US (0: busy loop) between kernel polls of the weights figure;
#        VEERD, VEERCTL, BENCH override the binaries' paths (default: under VEER_BUILD_DIR).
#
# 1. a testbed (prefix vctl), veerd in vctl-lb with the default flow_table_size (1,048,576):
#    veerd RSS idle; weight change -> live table (veer_control_bench weights); flow-table memory
#    (map_memory.py); veerd RSS under CLIENTS concurrent control clients (veer_control_bench clients);
#    push round trip (each push on disk before its answer) against ping (veer_control_bench push);
# 2. slot-table build time (veer_control_bench table; no kernel);
# 3. gate breach -> applied weight 0 (breach.py: its own testbed, prefix vctlb).
# Prints figure / value / target / PASS|MISS and writes bench/control/results/control-DATE.csv.
# Every step is bounded in time; the trap stops veerd and takes the testbeds down on any exit.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)"
BUILD="${VEER_BUILD_DIR:-$SRC/build}"
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
VEERD="${VEERD:-$BUILD/userspace/daemon/veerd}"
VEERCTL="${VEERCTL:-$BUILD/userspace/ctl/veerctl}"
BENCH="${BENCH:-$BUILD/bench/control/veer_control_bench}"
PREFIX=vctl
RUN_DIR="/run/$PREFIX-testbed"
SOCKET="$RUN_DIR/veer.sock"
PIN="$RUN_DIR/bpffs"
CHANGES="${CHANGES:-1000}"
TABLE_ITERATIONS="${TABLE_ITERATIONS:-50}"
CLIENTS="${CLIENTS:-100}"
REQUESTS="${REQUESTS:-200}"
PUSHES="${PUSHES:-2000}"
BREACH_REPS="${BREACH_REPS:-5}"

die() { echo "run.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, BPF maps)"
for f in "$VEERD" "$VEERCTL" "$BENCH"; do
  [ -x "$f" ] || die "$f missing: build first (cmake -S . -B build && cmake --build build -j2), or set VEER_BUILD_DIR"
done
VEERD="$(readlink -f "$VEERD")" VEERCTL="$(readlink -f "$VEERCTL")" BENCH="$(readlink -f "$BENCH")"
command -v bpftool >/dev/null || die "bpftool not found"
for n in CHANGES TABLE_ITERATIONS CLIENTS REQUESTS PUSHES BREACH_REPS; do
  [[ "${!n}" =~ ^[1-9][0-9]{0,6}$ ]] || die "$n=${!n}: want a positive integer"
done

mkdir -p "$HERE/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$(mktemp /tmp/veer-control-results.XXXXXX)"
LOG="$HERE/results/control-$STAMP.log"
CSV="$HERE/results/control-$STAMP.csv"
VEERD_PID=""
STEP_PID=""
set -m  # background jobs get their own process group (see step)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$STEP_PID" ]; then
    kill -TERM -- "-$STEP_PID" 2>/dev/null || true
    wait "$STEP_PID" 2>/dev/null || true
  fi
  if [ -n "$VEERD_PID" ] && kill -0 "$VEERD_PID" 2>/dev/null; then
    kill -TERM "$VEERD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$VEERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$VEERD_PID" 2>/dev/null || true
  fi
  "$SRC/scripts/testbed.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true
  "$SRC/scripts/testbed.sh" down --prefix "${PREFIX}b" >/dev/null 2>&1 || true  # breach.py's, if it was killed
  rm -f "$RESULTS"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a step with a time limit; its output goes to the screen (without RESULT lines) and to the log; RESULT
# lines are collected. A failed step is reported and the run goes on (exit status 1 at the end).
FAILED_STEPS=()
step() {
  local limit="$1"; shift
  local out rc
  out="$(mktemp /tmp/veer-control-step.XXXXXX)"
  echo "== $*" | tee -a "$LOG"
  # In the background (its own process group, set -m) and waited for, so that a signal to run.sh runs the
  # trap at once; cleanup kills the step's whole group.
  ( set +e; timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out" | grep -v '^RESULT '
    echo "${PIPESTATUS[0]}" >"$out.rc" ) &
  STEP_PID=$!
  wait "$STEP_PID" || true
  STEP_PID=""
  rc="$(cat "$out.rc" 2>/dev/null || echo 1)"
  rm -f "$out.rc"
  cat "$out" >>"$LOG"
  grep '^RESULT ' "$out" | cut -c8- >>"$RESULTS" || true
  rm -f "$out"
  if [ "$rc" -ne 0 ]; then
    echo "!! step failed (exit $rc): $*" | tee -a "$LOG"
    FAILED_STEPS+=("$(basename "$1") ${2:-}")
  fi
}

vm_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$VEERD_PID/status"; }
emit() { printf '{"figure":"%s","value":%s,"unit":"%s"%s}\n' "$1" "$2" "$3" "${4:+,$4}" >>"$RESULTS"; }

echo "veer control-plane bench $STAMP: kernel $(uname -r), $(nproc) CPUs, build $BUILD" | tee "$LOG"

# ---------------------------------------------------------------- 1. testbed + veerd
"$SRC/scripts/testbed.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true
"$SRC/scripts/testbed.sh" up --prefix "$PREFIX" 2>&1 | tail -1 | tee -a "$LOG"
CONFIG="$RUN_DIR/veer.yaml"
# node.flow_table_size left out on purpose: the default (1,048,576) is what the memory figure is about.
cat >"$CONFIG" <<EOF
node:
  interfaces: [lbc, lbblue, lbgreen, lbcanary]
  attach: auto
  hash_seed: 0x5eed
  socket: $SOCKET
  pin_path: $PIN
  state_dir: $RUN_DIR/state
  metrics_listen: 127.0.0.1:9469
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    protocol: tcp
    affinity: connection
    stable: blue
    variants:
      blue:   { backends: ["10.1.1.2:8080"] }
      canary: { backends: ["10.1.3.2:8080"] }
    weights: { blue: 90, canary: 10 }
EOF
"$VEERD" --check-config "$CONFIG" >/dev/null
# `ip netns exec` execs veerd: $! is veerd's pid.
ip netns exec "$PREFIX-lb" "$VEERD" --config "$CONFIG" --foreground --log-level warn \
  >"$HERE/results/control-$STAMP-veerd.log" 2>&1 &
VEERD_PID=$!
for _ in $(seq 200); do
  [ -S "$SOCKET" ] && "$VEERCTL" --socket "$SOCKET" ping >/dev/null 2>&1 && break
  kill -0 "$VEERD_PID" 2>/dev/null || die "veerd exited: $(tail -5 "$HERE/results/control-$STAMP-veerd.log")"
  sleep 0.1
done
"$VEERCTL" --socket "$SOCKET" ping >/dev/null || die "veerd did not answer within 20 s"
sleep 2  # idle: past start-up, one telemetry tick
RSS_IDLE=$(vm_kb VmRSS) HWM_IDLE=$(vm_kb VmHWM)
echo "veerd pid $VEERD_PID idle: VmRSS $RSS_IDLE kB, VmHWM $HWM_IDLE kB" | tee -a "$LOG"
emit "veerd RSS idle" "$(awk -v k="$RSS_IDLE" 'BEGIN{printf "%.1f", k/1024}')" MB '"op":"<","target":30'
emit "veerd VmHWM idle" "$(awk -v k="$HWM_IDLE" 'BEGIN{printf "%.1f", k/1024}')" MB '"op":"<","target":30'

step 300 "$BENCH" weights --socket "$SOCKET" --pin "$PIN" --service ranker --a blue=90,canary=10 \
  --b blue=80,canary=20 --changes "$CHANGES" --time-limit 240 --poll-us "${POLL_US:-0}"
step 60 python3 "$HERE/map_memory.py" --pin "$PIN" --pid "$VEERD_PID"
step 120 "$BENCH" clients --socket "$SOCKET" --pid "$VEERD_PID" --clients "$CLIENTS" --requests "$REQUESTS" \
  --time-limit 100
step 120 "$BENCH" push --socket "$SOCKET" --service ranker --variant canary --requests "$PUSHES" --time-limit 100
kill -0 "$VEERD_PID" 2>/dev/null || die "veerd died during the benchmarks"

kill -TERM "$VEERD_PID"; wait "$VEERD_PID" || true; VEERD_PID=""
"$SRC/scripts/testbed.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true

# ---------------------------------------------------------------- 2. slot-table build
step 120 "$BENCH" table --iterations "$TABLE_ITERATIONS"

# ---------------------------------------------------------------- 3. breach -> weight 0
if [ "${SKIP_BREACH:-0}" != 1 ]; then
  step $((120 + 40 * BREACH_REPS)) python3 "$HERE/breach.py" --veerd "$VEERD" --veerctl "$VEERCTL" --bench "$BENCH" \
    --reps "$BREACH_REPS"
fi

# ---------------------------------------------------------------- table + CSV
python3 - "$RESULTS" "$CSV" "$STAMP" <<'PY' | tee -a "$LOG"
import csv, json, math, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = lambda v, op, t: {"<": v < t, "<=": v <= t, ">=": v >= t, ">": v > t}[op]
out = []
for r in rows:
    op, target, v = r.get("op"), r.get("target"), r["value"]
    if op is None:
        verdict = "info"
    elif v is None or (isinstance(v, float) and math.isnan(v)):
        verdict = "MISS"
    else:
        verdict = "PASS" if ok(v, op, target) else "MISS"
    out.append((r["figure"], v, r["unit"], f"{op} {target:g}" if op else "", verdict))
def fmt(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if float(v).is_integer() or abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.4g}"
print(f"\n{'figure':<42} {'value':>12} {'unit':<6} {'target':<10} verdict")
for fig, v, unit, target, verdict in out:
    print(f"{fig:<42} {fmt(v):>12} {unit:<6} {target:<10} {verdict}")
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["run", "kernel", "figure", "value", "unit", "target", "verdict"])
    for fig, v, unit, target, verdict in out:
        w.writerow([sys.argv[3], os.uname().release, fig, v, unit, target, verdict])
misses = sum(1 for o in out if o[4] == "MISS")
print(f"\n{len(out)} figures, {misses} MISS; CSV: {sys.argv[2]}")
PY
if [ ${#FAILED_STEPS[@]} -gt 0 ]; then
  echo "failed steps: ${FAILED_STEPS[*]} (see $LOG)" | tee -a "$LOG"
  exit 1
fi
