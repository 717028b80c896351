#!/usr/bin/env bash
# veer in one command (as root):  scripts/demo.sh
#
# Installs the Debian packages, builds, brings up the netns testbed (scripts/testbed.sh), starts veerd on
# the lb, splits client connections to the VIP 10.0.0.100:80 across blue/green/canary at 90/5/5 (counted at
# the backends and by the kernel), then switches the service to green live while long-lived keep-alive
# connections keep sending a request every 100 ms: new connections all go to green, the long-lived ones
# stay on their variant and none is reset.
# Then a canary rollout on a fresh testbed (examples/rollout-canary.yaml) under a steady 200 requests/s through
# the VIP: the canary walks 5 -> 20 -> 50 % while the kernel gates (P95 latency, error rate, every second) stay
# green; then the canary degrades (300 ms of added latency) and veer rolls it back by itself (canary weight 0
# in one table flip), with the live status and the event log on screen.
# Then the same canary judged by PromQL queries to a real Prometheus (examples/rollout-promql.yaml): the canary's
# model server answering 5 % errors is rolled back by the query over its own counter.
# Then the same rollout on the fleet testbed (three veer nodes, one three-member etcd): a weights change on one
# node applied by all three, a canary started on node 3 and run by the leader (node 1), slowed for node 3's
# clients only and aborted by the leader on the fleet-wide P95, canary weight 0 on every node.
# Everything is cleaned up at the end, also on failure or Ctrl-C.
#
# Environment: VEER_BUILD_DIR (default: build), DEMO_FLOWS (default 2000), DEMO_SKIP_DEPS=1, DEMO_SKIP_BUILD=1,
# DEMO_SKIP_SPLIT=1 (leaves out the split), DEMO_SKIP_FLEET=1 (leaves out the fleet part), DEMO_SKIP_PROMQL=1
# (leaves out the Prometheus part), DEMO_STOP_AFTER_BUILD=1 (installs and builds, then stops: used by ctest
# readme_commands).
set -Eeuo pipefail
# Root by `su` without `-` keeps the user's PATH, which lacks the sbin folders (dpkg needs ldconfig and
# start-stop-daemon from there, the tests sysctl and ethtool): add them.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH" ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${VEER_BUILD_DIR:-$ROOT/build}"
PREFIX=veer
RUN_DIR="/run/$PREFIX-testbed"
SOCKET="$RUN_DIR/veer.sock"
CONFIG="$ROOT/examples/testbed.yaml"
TOOLS="$ROOT/scripts/testbed"
FLOWS="${DEMO_FLOWS:-2000}"
VIP=10.0.0.100
WORK="$(mktemp -d /tmp/veer-demo.XXXXXX)"
VEERD_PID=""
LONG_PID=""
TRAFFIC_PID=""
WATCH_PID=""
PROMETHEUS_PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (a bare Debian has no sudo: log in as root or use su -)"

stop_veerd() {
  if [ -n "$VEERD_PID" ] && kill -0 "$VEERD_PID" 2>/dev/null; then
    kill -TERM "$VEERD_PID" || true
    for _ in $(seq 50); do kill -0 "$VEERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$VEERD_PID" 2>/dev/null || true
    wait "$VEERD_PID" 2>/dev/null || true
  fi
  VEERD_PID=""
}

# The fleet part's three veerds (SIGTERM: each leaves the fleet, revoking its lease), and its clients.
FLEET_PIDS=()
FLEET_CLIENTS=()
stop_fleet() {
  local pid
  for pid in "${FLEET_CLIENTS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  FLEET_CLIENTS=()
  for pid in "${FLEET_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${FLEET_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  FLEET_PIDS=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  say "cleaning up"
  [ -n "$LONG_PID" ] && kill "$LONG_PID" 2>/dev/null && wait "$LONG_PID" 2>/dev/null
  [ -n "$WATCH_PID" ] && kill -INT "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null
  [ -n "$TRAFFIC_PID" ] && kill "$TRAFFIC_PID" 2>/dev/null && wait "$TRAFFIC_PID" 2>/dev/null
  stop_veerd
  stop_fleet
  [ -n "$PROMETHEUS_PID" ] && kill "$PROMETHEUS_PID" 2>/dev/null && wait "$PROMETHEUS_PID" 2>/dev/null
  "$ROOT/scripts/testbed.sh" down --prefix "$PREFIX"
  rm -rf "$WORK"
  if [ $rc -eq 0 ]; then echo "demo: done"; else echo "demo: FAILED (exit $rc)" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

client() { ip netns exec "$PREFIX-client" python3 "$TOOLS/client.py" "$@"; }
veerctl() { "$VEERCTL" --socket "$SOCKET" "$@"; }

# backend_counts SRC: per variant, the requests each backend counted from client address SRC
backend_counts() {
  local v
  for v in blue green canary; do
    ip netns exec "$PREFIX-$v" python3 -c '
import json, sys, urllib.request
stats = json.load(urllib.request.urlopen("http://127.0.0.1:8080/stats", timeout=5))
print(sys.argv[1], stats["http"]["clients"].get(sys.argv[2], {}).get("requests", 0))' "$v" "$1"
  done
}

show_backend_counts() {
  echo "counted at the backends (GET /stats in each backend namespace):"
  backend_counts "$1" | while read -r v n; do
    printf '  %-7s %6d  (%5.1f %%)\n' "$v" "$n" "$(python3 -c "print(100*$n/$FLOWS)")"
  done
}

show_client() {
  python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"client saw: {r['variants']}  ({r['completed']}/{r['requested']} in {r['elapsed']} s, errors {r['errors']})")
EOF
}

if [ "${DEMO_SKIP_DEPS:-0}" != 1 ]; then
  say "installing Debian packages (scripts/install-deps.sh)"
  "$ROOT/scripts/install-deps.sh"
fi
if [ "${DEMO_SKIP_BUILD:-0}" != 1 ]; then
  say "building ($BUILD)"
  cmake -S "$ROOT" -B "$BUILD" >/dev/null
  cmake --build "$BUILD" -j2
fi
# For the check that the README's commands work as typed (ctest readme_commands): the steps up to here, then
# out before anything is started (nothing to clean up but the work folder).
if [ "${DEMO_STOP_AFTER_BUILD:-0}" = 1 ]; then
  trap - EXIT
  rm -rf "$WORK"
  echo "demo: stopped after the build (DEMO_STOP_AFTER_BUILD=1)"
  exit 0
fi
VEERD="$BUILD/userspace/daemon/veerd"
VEERCTL="$BUILD/userspace/ctl/veerctl"
[ -x "$VEERD" ] && [ -x "$VEERCTL" ] || die "veerd/veerctl not found under $BUILD/userspace"

# start_veerd CONFIG: veerd on the lb in the foreground (in the background of this script), until it answers.
start_veerd() {
  local config="$1"
  say "starting veerd on the lb: ip netns exec $PREFIX-lb veerd --config ${config#$ROOT/} --foreground"
  "$VEERD" --check-config "$config"
  ip netns exec "$PREFIX-lb" "$VEERD" --config "$config" --foreground >>"$WORK/veerd.log" 2>&1 &
  VEERD_PID=$!
  for _ in $(seq 100); do
    veerctl ping >/dev/null 2>&1 && break
    kill -0 "$VEERD_PID" 2>/dev/null || { cat "$WORK/veerd.log" >&2; die "veerd exited"; }
    sleep 0.1
  done
  veerctl ping >/dev/null || { cat "$WORK/veerd.log" >&2; die "veerd does not answer on $SOCKET"; }
}

testbed_up() {
  say "testbed up: client -> lb -> blue / green / canary (network namespaces $PREFIX-*)"
  "$ROOT/scripts/testbed.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true
  "$ROOT/scripts/testbed.sh" up --prefix "$PREFIX"
}

if [ "${DEMO_SKIP_SPLIT:-0}" != 1 ]; then
testbed_up
start_veerd "$CONFIG"

say "veerctl status"
veerctl status

say "$FLOWS new TCP connections from the client (10.0.1.11) to $VIP:80, weights 90/5/5"
client http --dst "$VIP" --port 80 --src 10.0.1.11 --count "$FLOWS" >"$WORK/split.json"
show_client "$WORK/split.json"
show_backend_counts 10.0.1.11
say "veerctl status ranker (kernel counters)"
veerctl status ranker

say "20 long-lived keep-alive connections (10.0.1.12), one request every 100 ms"
client long --proto http --dst "$VIP" --port 80 --src 10.0.1.12 --connections 20 --interval 0.1 \
  --duration 60 --stop-file "$WORK/stop" >"$WORK/long.jsonl" 2>"$WORK/long.err" &
LONG_PID=$!
for _ in $(seq 100); do grep -q '"ready"' "$WORK/long.jsonl" 2>/dev/null && break; sleep 0.1; done
grep -q '"ready"' "$WORK/long.jsonl" || { cat "$WORK/long.err" >&2; die "long-lived connections did not start"; }
python3 -c '
import collections, json, sys
ready = json.loads(open(sys.argv[1]).readline())
print("long-lived connections by variant:", dict(collections.Counter(c["variant"] for c in ready["connections"])))' \
  "$WORK/long.jsonl"
sleep 1

say "a busy client (10.0.1.14) that reuses its source ports 20000-20299: one connection from each"
client ports --dst "$VIP" --port 80 --src 10.0.1.14 --ports 20000-20299 >"$WORK/ports-before.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("by variant:", r["variants"], " errors", r["errors"])' \
  "$WORK/ports-before.json"

say "veerctl switch ranker green   (live, while the long-lived connections keep talking)"
veerctl switch ranker green

say "$FLOWS new connections after the switch (10.0.1.13)"
client http --dst "$VIP" --port 80 --src 10.0.1.13 --count "$FLOWS" >"$WORK/after.json"
show_client "$WORK/after.json"
show_backend_counts 10.0.1.13
say "the busy client again, from the same 300 source ports (each tuple's entry names its old variant)"
client ports --dst "$VIP" --port 80 --src 10.0.1.14 --ports 20000-20299 >"$WORK/ports-after.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("by variant:", r["variants"], " errors", r["errors"])' \
  "$WORK/ports-after.json"
sleep 2
touch "$WORK/stop"
wait "$LONG_PID"
LONG_PID=""

say "long-lived connections across the switch"
python3 - "$WORK/long.jsonl" "$WORK/after.json" "$FLOWS" "$WORK/ports-after.json" <<'EOF'
import json, sys
done = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
after = json.load(open(sys.argv[2]))
flows = int(sys.argv[3])
reused = json.load(open(sys.argv[4]))
s = done["summary"]
print(f"connections {s['connections']}, requests answered {s['replies']}, errors {s['errors']}, "
      f"resets {s['resets']}, connections whose variant changed {s['changed_variant']}")
print(f"variants of the long-lived connections (kept across the switch): {s['first_variants']}")
ok = True
if after["variants"] != {"green": flows}:
    print(f"FAIL: new connections after the switch were not all green: {after['variants']}"); ok = False
else:
    print(f"OK: all {flows} new connections after the switch went to green")
if reused["variants"] != {"green": 300}:
    print(f"FAIL: new connections from reused source ports did not all go to green: {reused['variants']}"); ok = False
else:
    print("OK: all 300 new connections from reused source ports went to green")
if s["errors"] or s["changed_variant"] or s["ok"] != s["connections"]:
    print("FAIL: some long-lived connection broke or changed variant"); ok = False
else:
    print("OK: no long-lived connection was reset; each kept its variant")
sys.exit(0 if ok else 1)
EOF

say "veerctl status ranker"
veerctl status ranker
fi  # DEMO_SKIP_SPLIT

# ---------------------------------------------------------------- a canary rollout that rolls itself back
CANARY_CONFIG="$ROOT/examples/rollout-canary.yaml"
RATE=200
BUDGET=3.0   # interval 1 s x (failure_limit 1 + 1) + 1 s
DEMO_OK=1

ok() { echo "OK: $*"; }
fail() { echo "FAIL: $*"; DEMO_OK=0; }

# ranker_eval EXPR: EXPR (Python) over the ranker's status: s = service, r = rollout, w = applied weights
ranker_eval() {
  veerctl --json status ranker | python3 -c '
import json, sys
s = [x for x in json.loads(sys.stdin.readline())["result"]["services"] if x["name"] == "ranker"][0]
r = s.get("rollout") or {}
w = {v["name"]: float(v["weight_applied"]) for v in s["variants"]}
print(eval(sys.argv[1]))' "$1"
}

stop_watch() {
  if [ -n "$WATCH_PID" ]; then
    kill -INT "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
    echo
  fi
}

# watch_until EXPR SECONDS [SINCE]: polls the ranker's status on the control socket every 100 ms until EXPR
# holds (Python over s = service, r = rollout, w = applied weights) and prints the seconds since SINCE (Unix
# time; default: now) on stdout. The live status meanwhile: `veerctl status ranker --watch` on a terminal,
# else one line per second on stderr (phase, step, weights desired/applied, the canary's P95 and error rate
# over the last interval, gate results). Returns 1 if EXPR did not hold within SECONDS.
watch_until() {
  local rc=0 quiet=0
  if [ -t 1 ] || [ -t 2 ]; then
    veerctl status ranker --watch >/dev/tty &
    WATCH_PID=$!
    quiet=1
  fi
  python3 - "$SOCKET" "$1" "$2" "${3:-$(date +%s.%N)}" "$quiet" <<'EOF' || rc=$?
import json, socket, sys, time
path, expr, limit, since, quiet = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"

def status():
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(5)
    conn.connect(path)
    conn.sendall(b'{"cmd":"status","service":"ranker"}\n')
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    conn.close()
    services = json.loads(buf.split(b"\n")[0])["result"]["services"]
    return [x for x in services if x["name"] == "ranker"][0]

start, last_line = time.monotonic(), 0.0
while True:
    s = status()
    r = s.get("rollout") or {}
    w = {v["name"]: float(v["weight_applied"]) for v in s["variants"]}
    if eval(expr):
        print(f"{time.time() - since:.2f}")
        sys.exit(0)
    now = time.monotonic()
    if now - start > limit:
        sys.exit(1)
    if not quiet and now - last_line >= 1.0:
        last_line = now
        weights = " ".join(f"{v['name']} {v['weight_desired']}/{v['weight_applied']}" for v in s["variants"])
        win = {v["name"]: v.get("window") or {} for v in s["variants"]}.get("canary", {})
        p95, err = win.get("latency_p95_ms"), win.get("error_rate")
        p95_text = "-" if p95 is None else f"{p95:.1f} ms"
        err_text = "-" if err is None else f"{100 * err:.2f} %"
        gates = " ".join(f"{g['name']}={g['last_result']}" for g in r.get("gates", []))
        print(f"  {time.strftime('%T')}  {r.get('phase')} step {r.get('step', 0) + 1}/{r.get('steps')}  "
              f"weights desired/applied: {weights}  canary p95 {p95_text} errors {err_text}  gates: {gates}",
              file=sys.stderr, flush=True)
    time.sleep(0.1)
EOF
  stop_watch
  return $rc
}

if [ -n "$VEERD_PID" ]; then say "stopping veerd"; stop_veerd; fi
testbed_up
start_veerd "$CANARY_CONFIG"

say "steady traffic: $RATE new connections/s to $VIP:80 from 50 client addresses (client.py rate, 120 s at most)"
client rate --dst "$VIP" --port 80 --src-range 10.0.1.11-10.0.1.60 --rate "$RATE" --duration 120 --progress 1 \
  --stop-file "$WORK/stop-rate" >"$WORK/rate.jsonl" 2>"$WORK/rate.err" &
TRAFFIC_PID=$!
sleep 2

say "veerctl rollout start ranker   (canary 5 -> 20 -> 50 -> 100 %, 5 s pauses; gates every 1 s:"
echo "   latency_p95_ms max 200, error_rate max 0.001 (kernel telemetry); failure_limit 1)"
veerctl rollout start ranker >/dev/null
if watch_until 'w["canary"] >= 50' 40 >/dev/null; then
  ok "the healthy canary walked 5 -> 20 -> 50 %; no gate failed"
else
  fail "the canary did not reach 50 % within 40 s"
fi
veerctl status ranker

say "the canary degrades: +300 ms per request (scripts/testbed/control.py --variant canary latency=fixed:300)"
# The same POST /control that control.py sends, from inside the canary's namespace, printing the time just
# before the request: the reaction time below counts from the change itself, not from a process start.
T0=$(ip netns exec "$PREFIX-canary" python3 -c '
import time, urllib.request
req = urllib.request.Request("http://127.0.0.1:8080/control", data=b"{\"latency\": \"fixed:300\"}", method="POST",
                             headers={"Content-Type": "application/json"})
t = time.time()
urllib.request.urlopen(req, timeout=5).read()
print(f"{t:.6f}")')
if REACTION=$(watch_until 'w["canary"] == 0' 15 "$T0"); then
  echo "canary weight 0 (applied, read back from the maps) ${REACTION} s after the latency change"
  if python3 -c "import sys; sys.exit(0 if $REACTION <= $BUDGET else 1)"; then
    ok "veer rolled the canary back by itself within ${BUDGET} s (interval x (failure_limit + 1) + 1 s)"
  else
    fail "rollback took ${REACTION} s, over the ${BUDGET} s budget"
  fi
else
  fail "veer did not roll the canary back within 15 s"
fi
[ "$(ranker_eval 'r["phase"]')" = Aborted ] && ok "rollout phase Aborted" || fail "rollout phase $(ranker_eval 'r["phase"]')"
veerctl status ranker

say "veerctl events ranker"
veerctl events ranker
veerctl --json events ranker | python3 -c '
import json, sys
# --json events: the daemon answer lines as they came, {"ok":true,"result":{"events":[...],"next":N}}
events = [e for line in sys.stdin if line.strip() for e in json.loads(line)["result"]["events"]]
aborts = [e for e in events if e["kind"] == "abort"]
value = aborts[-1]["values"].get("value", 0) if aborts else 0
if value > 200:
    print(f"OK: the event log holds the P95 that tripped the gate: {value:.1f} ms > 200")
else:
    print(f"FAIL: no abort event with the P95 value: {aborts}"); sys.exit(1)' || DEMO_OK=0

sleep 2.5
touch "$WORK/stop-rate"
wait "$TRAFFIC_PID" || true
TRAFFIC_PID=""
say "what the client saw"
python3 - "$WORK/rate.jsonl" <<'EOF' || DEMO_OK=0
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
done = lines[-1]
progress = [l for l in lines if l.get("event") == "progress"]
t = done["totals"]
per = {v: o["count"] for v, o in done["variants"].items()}
print(f"{done['done']} requests at {done['offered_rate']}/s: per variant {per}; 5xx {t['http_5xx']}, resets {t['resets']}, "
      f"timeouts {t['timeouts']}")
canary = [p["window"].get("canary", {}).get("count", 0) for p in progress]
print("canary requests per second:", " ".join(str(n) for n in canary))
ok = True
if progress and progress[-1]["window"].get("canary", {}).get("count", 0) == 0:
    print("OK: after the rollback new connections go to blue only")
else:
    print("FAIL: new connections still reach the canary"); ok = False
if t["http_5xx"] or t["resets"] or sum(t["timeouts"].values()):
    print("FAIL: the client saw errors"); ok = False
else:
    print("OK: no request failed: the slow canary answered slowly, then got no new traffic")
sys.exit(0 if ok else 1)
EOF

# ---------------------------------------------------------------- the same canary judged by a real Prometheus
if [ "${DEMO_SKIP_PROMQL:-0}" != 1 ]; then
stop_veerd
testbed_up
say "Prometheus in the lb namespace (examples/prometheus-testbed.yml: the model servers and veerd, every second)"
mkdir -p "$WORK/prometheus"
ip netns exec "$PREFIX-lb" prometheus --config.file "$ROOT/examples/prometheus-testbed.yml" \
  --storage.tsdb.path "$WORK/prometheus" --web.listen-address 127.0.0.1:9090 >"$WORK/prometheus.log" 2>&1 &
PROMETHEUS_PID=$!
promql() {  # promql EXPR: the first value of an instant query to the testbed's Prometheus ("-" if none)
  ip netns exec "$PREFIX-lb" python3 -c '
import json, sys, urllib.parse, urllib.request
url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[1]})
r = json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]
print(r[0]["value"][1] if r else "-")' "$1"
}
for _ in $(seq 100); do
  ip netns exec "$PREFIX-lb" curl -sf http://127.0.0.1:9090/-/ready >/dev/null 2>&1 && break
  sleep 0.2
done
start_veerd "$ROOT/examples/rollout-promql.yaml"
client rate --dst "$VIP" --port 80 --src-range 10.0.1.11-10.0.1.60 --rate "$RATE" --duration 60 --progress 1 \
  --stop-file "$WORK/stop-rate2" >"$WORK/rate2.jsonl" 2>"$WORK/rate2.err" &
TRAFFIC_PID=$!
sleep 3
say "veerctl rollout start ranker   (examples/rollout-promql.yaml: gates are PromQL queries, every 1 s:"
echo "   the canary's 5xx share from its model server's own counter, max 0.01; its p95 at most 1.5 x blue's)"
veerctl rollout start ranker >/dev/null
if watch_until 'w["canary"] == 20 and all(g["last_result"] == "Successful" for g in r["gates"])' 20 >/dev/null; then
  ok "canary at 20 %; both PromQL gates Successful"
else
  fail "the PromQL gates were not Successful at 20 % within 20 s"
fi
veerctl status ranker
say "the canary's model server answers 5 % of requests with HTTP 500 (control.py --variant canary error_rate=0.05)"
python3 "$TOOLS/control.py" --prefix "$PREFIX" --variant canary error_rate=0.05 >/dev/null
T0=$(date +%s.%N)
if REACTION=$(watch_until 'w["canary"] == 0' 15 "$T0"); then
  ok "the model_errors query aborted the rollout ${REACTION} s after the change (canary weight 0)"
else
  fail "the PromQL gate did not abort within 15 s"
fi
echo "Prometheus: canary 5xx answers so far: $(promql 'sum(model_requests_total{job="canary",code=~"5.."})')"
veerctl events ranker | tail -4
touch "$WORK/stop-rate2"
wait "$TRAFFIC_PID" || true
TRAFFIC_PID=""
kill "$PROMETHEUS_PID" 2>/dev/null || true
wait "$PROMETHEUS_PID" 2>/dev/null || true
PROMETHEUS_PID=""
fi

# ---------------------------------------------------------------- one rollout on three nodes (fleet mode)
if [ "${DEMO_SKIP_FLEET:-0}" != 1 ]; then
stop_veerd
say "the fleet testbed: three veer nodes, each in front of its own clients, the same backends, a three-member etcd"
"$ROOT/scripts/testbed.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true
"$ROOT/scripts/testbed.sh" up --fleet 3 --prefix "$PREFIX"
nodectl() { local n=$1; shift; "$VEERCTL" --socket "$RUN_DIR/lb$n/veer.sock" "$@"; }
# node_eval N EXPR: EXPR (Python) over node N's ranker status (s = service, r = rollout, w = applied weights)
node_eval() {
  nodectl "$1" --json status ranker | python3 -c '
import json, sys
s = [x for x in json.loads(sys.stdin.readline())["result"]["services"] if x["name"] == "ranker"][0]
r = s.get("rollout") or {}
w = {v["name"]: float(v["weight_applied"]) for v in s["variants"]}
print(eval(sys.argv[1]))' "$2"
}
for n in 1 2 3; do
  python3 "$TOOLS/make_config.py" --prefix "$PREFIX" --node "$n" --template "$CANARY_CONFIG" \
    --out "$RUN_DIR/lb$n/veer.yaml"
  ip netns exec "$PREFIX-lb$n" "$VEERD" --config "$RUN_DIR/lb$n/veer.yaml" --foreground >>"$WORK/veerd$n.log" 2>&1 &
  FLEET_PIDS+=($!)
  for _ in $(seq 100); do nodectl "$n" ping >/dev/null 2>&1 && break; sleep 0.1; done
  nodectl "$n" ping >/dev/null || { cat "$WORK/veerd$n.log" >&2; die "node $n's veerd does not answer"; }
  # node 1 first: it takes the leader key
  if [ "$n" = 1 ]; then
    for _ in $(seq 100); do [ "$(nodectl 1 --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["fleet"]["is_leader"])')" = True ] && break; sleep 0.1; done
  fi
done
echo "veerd on node-1, node-2, node-3 (examples/rollout-canary.yaml with a cluster: section, make_config.py --node N)"

say "veerctl weights ranker blue=90 canary=10 on node 2: one table version in etcd, applied by every node"
nodectl 2 weights ranker blue=90 canary=10 >/dev/null
sleep 0.5
nodectl 1 nodes
nodectl 1 --json nodes | python3 -c '
import json, sys
nodes = json.load(sys.stdin)["result"]["nodes"]
versions = {n["node"]: n["services"]["ranker"]["applied_version"] for n in nodes}
if len(versions) == 3 and len(set(versions.values())) == 1:
    print(f"OK: all three nodes applied version {set(versions.values()).pop()}")
else:
    print(f"FAIL: applied versions {versions}"); sys.exit(1)' || DEMO_OK=0
nodectl 3 weights ranker blue=100 canary=0 >/dev/null

say "steady traffic from every node's clients (100 new connections/s each); canary rollout started on node 3"
for n in 1 2 3; do
  ip netns exec "$PREFIX-client$n" python3 "$TOOLS/client.py" rate --dst "$VIP" --port 80 \
    --src-range "10.0.$n.11-10.0.$n.60" --rate 100 --duration 60 --stop-file "$WORK/stop-fleet" \
    >"$WORK/fleet-rate$n.json" 2>&1 &
  FLEET_CLIENTS+=($!)
done
sleep 1
nodectl 3 rollout start ranker >/dev/null
echo "the leader, node 1, runs it: its gates read the sum of the three nodes' kernel telemetry"
for _ in $(seq 200); do [ "$(node_eval 3 'w["canary"]')" = 20.0 ] && break; sleep 0.1; done
[ "$(node_eval 3 'w["canary"]')" = 20.0 ] && ok "the canary walked 5 -> 20 % on every node" || fail "the canary did not reach 20 %"
for n in 1 2 3; do echo "  node-$n: canary $(node_eval "$n" 'w["canary"]') % applied, $(node_eval "$n" 'r["phase"]')"; done

say "the canary slows down for node 3's clients only (+300 ms, latency_clients=10.0.3.0/24): node 1 sees no slow answer"
T0=$(date +%s.%N)
python3 "$TOOLS/control.py" --prefix "$PREFIX" --variant canary latency=fixed:300 latency_clients=10.0.3.0/24 >/dev/null
ZERO=""
for _ in $(seq 150); do
  if [ "$(node_eval 1 'w["canary"]')" = 0.0 ] && [ "$(node_eval 2 'w["canary"]')" = 0.0 ] && \
     [ "$(node_eval 3 'w["canary"]')" = 0.0 ]; then
    ZERO=$(python3 -c "import time; print(f'{time.time() - $T0:.2f}')"); break
  fi
  sleep 0.1
done
if [ -n "$ZERO" ]; then
  ok "the leader aborted on the fleet-wide P95; canary weight 0 applied on all three nodes ${ZERO} s after the change"
else
  fail "the fleet did not roll the canary back within 15 s"
fi
for n in 1 2 3; do
  [ "$(node_eval "$n" 'r["phase"]')" = Aborted ] && ok "node-$n: rollout Aborted" || fail "node-$n: $(node_eval "$n" 'r["phase"]')"
done
say "veerctl events ranker on node 2 (it mirrors the leader's decisions from etcd)"
nodectl 2 events ranker | tail -n 6
touch "$WORK/stop-fleet"
stop_fleet
fi  # DEMO_SKIP_FLEET

[ "$DEMO_OK" = 1 ] || die "some checks failed"
