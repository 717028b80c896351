#!/usr/bin/env bash
# veer in one command (as root):  sudo scripts/demo.sh
#
# Installs the Debian packages, builds, brings up the netns testbed (scripts/testbed.sh), starts veerd on
# the lb, splits client connections to the VIP 10.0.0.100:80 across blue/green/canary at 90/5/5 (counted at
# the backends and by the kernel), then switches the service to green live while long-lived keep-alive
# connections keep sending a request every 100 ms: new connections all go to green, the long-lived ones
# stay on their variant and none is reset. Everything is cleaned up at the end, also on failure or Ctrl-C.
#
# Environment: VEER_BUILD_DIR (default: build), DEMO_FLOWS (default 2000), DEMO_SKIP_DEPS=1, DEMO_SKIP_BUILD=1.
set -Eeuo pipefail

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

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  say "cleaning up"
  [ -n "$LONG_PID" ] && kill "$LONG_PID" 2>/dev/null && wait "$LONG_PID" 2>/dev/null
  if [ -n "$VEERD_PID" ] && kill -0 "$VEERD_PID" 2>/dev/null; then
    kill -TERM "$VEERD_PID"
    for _ in $(seq 50); do kill -0 "$VEERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$VEERD_PID" 2>/dev/null
    wait "$VEERD_PID" 2>/dev/null
  fi
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
VEERD="$BUILD/userspace/daemon/veerd"
VEERCTL="$BUILD/userspace/ctl/veerctl"
[ -x "$VEERD" ] && [ -x "$VEERCTL" ] || die "veerd/veerctl not found under $BUILD/userspace"

say "testbed up: client -> lb -> blue / green / canary (network namespaces $PREFIX-*)"
"$ROOT/scripts/testbed.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true
"$ROOT/scripts/testbed.sh" up --prefix "$PREFIX"

say "starting veerd on the lb: ip netns exec $PREFIX-lb veerd --config examples/testbed.yaml --foreground"
"$VEERD" --check-config "$CONFIG"
ip netns exec "$PREFIX-lb" "$VEERD" --config "$CONFIG" --foreground >"$WORK/veerd.log" 2>&1 &
VEERD_PID=$!
for _ in $(seq 100); do
  veerctl ping >/dev/null 2>&1 && break
  kill -0 "$VEERD_PID" 2>/dev/null || { cat "$WORK/veerd.log" >&2; die "veerd exited"; }
  sleep 0.1
done
veerctl ping >/dev/null || { cat "$WORK/veerd.log" >&2; die "veerd does not answer on $SOCKET"; }

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

say "veerctl switch ranker green   (live, while the long-lived connections keep talking)"
veerctl switch ranker green

say "$FLOWS new connections after the switch (10.0.1.13)"
client http --dst "$VIP" --port 80 --src 10.0.1.13 --count "$FLOWS" >"$WORK/after.json"
show_client "$WORK/after.json"
show_backend_counts 10.0.1.13
sleep 2
touch "$WORK/stop"
wait "$LONG_PID"
LONG_PID=""

say "long-lived connections across the switch"
python3 - "$WORK/long.jsonl" "$WORK/after.json" "$FLOWS" <<'EOF'
import json, sys
done = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
after = json.load(open(sys.argv[2]))
flows = int(sys.argv[3])
s = done["summary"]
print(f"connections {s['connections']}, requests answered {s['replies']}, errors {s['errors']}, "
      f"resets {s['resets']}, connections whose variant changed {s['changed_variant']}")
print(f"variants of the long-lived connections (kept across the switch): {s['first_variants']}")
ok = True
if after["variants"] != {"green": flows}:
    print(f"FAIL: new connections after the switch were not all green: {after['variants']}"); ok = False
else:
    print(f"OK: all {flows} new connections after the switch went to green")
if s["errors"] or s["changed_variant"] or s["ok"] != s["connections"]:
    print("FAIL: some long-lived connection broke or changed variant"); ok = False
else:
    print("OK: no long-lived connection was reset; each kept its variant")
sys.exit(0 if ok else 1)
EOF

say "veerctl status ranker"
veerctl status ranker
