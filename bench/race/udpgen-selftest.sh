#!/usr/bin/env bash
# Self-test of veer_udpgen: two namespaces joined by a veth pair, the generator
# sends for 2 s out of the veth in vugen-a towards a UDP socket bound in
# vugen-b. Passes when vugen-b's IP layer received a large fraction of the
# frames the generator reports as sent, and the socket saw several distinct
# source ports. Needs root.
# usage: bench/race/udpgen-selftest.sh [path/to/veer_udpgen]
# UDPGEN_ARGS="--threads 2 --size 1514" adds options to the generator's command line.
set -euo pipefail

UDPGEN=${1:-${VEER_UDPGEN:-$(dirname "$0")/../../build/bench/race/veer_udpgen}}
NS_A=vugen-a
NS_B=vugen-b
DEV_A=vugen-a0
DEV_B=vugen-b0
ADDR_A=10.213.7.1
ADDR_B=10.213.7.2
PORT=9999
FLOWS=64
SECONDS_TO_SEND=2
MIN_FRACTION=0.5   # of "sent" that must reach vugen-b's IP layer
MIN_PORTS=8        # distinct source ports the socket must see

die() { echo "udpgen-selftest: FAIL: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root"
[[ -x $UDPGEN ]] || die "no executable veer_udpgen at $UDPGEN (pass its path)"

WORK=$(mktemp -d /tmp/udpgen-selftest.XXXXXX)
RECEIVER_PID=
cleanup() {
  [[ -n $RECEIVER_PID ]] && kill "$RECEIVER_PID" 2>/dev/null && wait "$RECEIVER_PID" 2>/dev/null
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns del "$NS_A" 2>/dev/null || true
ip netns del "$NS_B" 2>/dev/null || true
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "$DEV_A" netns "$NS_A" type veth peer name "$DEV_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$DEV_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$DEV_B"
ip -n "$NS_A" link set "$DEV_A" up
ip -n "$NS_B" link set "$DEV_B" up
ip -n "$NS_A" link set lo up
ip -n "$NS_B" link set lo up
# XDP frames transmitted into a veth are dropped unless its peer runs NAPI:
# GRO on the receiving side does that (FACTS.md).
ip netns exec "$NS_B" ethtool -K "$DEV_B" gro on >/dev/null
MAC_B=$(ip netns exec "$NS_B" cat "/sys/class/net/$DEV_B/address")

# The receiver records the distinct source ports of what it reads until told
# to stop (SIGTERM) or 10 s pass, and writes them when it ends.
cat >"$WORK/receiver.py" <<'PY'
import signal, socket, sys, time
addr, port, out, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(0.2)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
open(ready, "w").close()
ports, datagrams, deadline = set(), 0, time.monotonic() + 10
while not stop and time.monotonic() < deadline:
    try:
        data, (src, sport) = s.recvfrom(2048)
    except (socket.timeout, InterruptedError):
        continue
    datagrams += 1
    ports.add(sport)
with open(out, "w") as f:
    f.write(f"{datagrams} {len(ports)} {min(ports) if ports else 0} {max(ports) if ports else 0}\n")
PY
ip netns exec "$NS_B" python3 "$WORK/receiver.py" "$ADDR_B" "$PORT" "$WORK/ports" "$WORK/ready" &
RECEIVER_PID=$!
for _ in $(seq 50); do [[ -e $WORK/ready ]] && break; sleep 0.1; done
[[ -e $WORK/ready ]] || die "receiver did not start"

in_receives() { ip netns exec "$NS_B" awk '/^Ip: [0-9]/ { print $4 }' /proc/net/snmp; }
rx_packets() { ip netns exec "$NS_B" cat "/sys/class/net/$DEV_B/statistics/rx_packets"; }
before_ip=$(in_receives)
before_rx=$(rx_packets)

set +e
ip netns exec "$NS_A" timeout 30 "$UDPGEN" --dev "$DEV_A" --dst-mac "$MAC_B" --src-ip "$ADDR_A" \
  --dst-ip "$ADDR_B" --dst-port "$PORT" --flows "$FLOWS" --seconds "$SECONDS_TO_SEND" ${UDPGEN_ARGS:-} >"$WORK/out" 2>"$WORK/err"
rc=$?
set -e
cat "$WORK/err" >&2
[[ $rc == 0 ]] || die "veer_udpgen exited $rc"
sleep 0.3   # let the NAPI poll drain what is queued
after_ip=$(in_receives)
after_rx=$(rx_packets)
kill -TERM "$RECEIVER_PID"
wait "$RECEIVER_PID" || true
RECEIVER_PID=

echo "veer_udpgen: $(cat "$WORK/out")"
sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$WORK/out") ||
  die "output is not the JSON line {\"sent\": N, ...}: $(cat "$WORK/out")"
ip_delta=$((after_ip - before_ip))
rx_delta=$((after_rx - before_rx))
read -r datagrams ports min_port max_port <"$WORK/ports"
echo "vugen-b: Ip InReceives +$ip_delta, $DEV_B rx_packets +$rx_delta; socket read $datagrams datagrams" \
     "from $ports distinct source ports ($min_port..$max_port)"

[[ $sent -gt 0 ]] || die "sent is 0"
python3 -c "import sys; sys.exit(0 if $ip_delta >= $MIN_FRACTION * $sent else 1)" ||
  die "only $ip_delta of $sent frames reached vugen-b's IP layer (< $MIN_FRACTION)"
[[ $ports -ge $MIN_PORTS ]] || die "only $ports distinct source ports arrived (want >= $MIN_PORTS)"
(( min_port >= 10000 && max_port < 10000 + FLOWS )) ||
  die "source ports $min_port..$max_port outside 10000..$((10000 + FLOWS - 1))"
echo "udpgen-selftest: PASS"
