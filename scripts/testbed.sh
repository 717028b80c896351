#!/usr/bin/env bash
# veer netns testbed: one client, one load balancer (lb) and three backends (blue, green, canary).
#
#   scripts/testbed.sh up|down|status [--prefix P]      (default prefix "veer"; run as root)
#
#   P-client  eth0 10.0.1.10/24 (+ 10.0.1.11..60), fd00:1::10/64 (+ fd00:1::11..60); default via the lb
#      |
#   P-lb      lbc 10.0.1.1/24 fd00:1::1/64 | lbblue 10.1.1.1 fd00:11::1 | lbgreen 10.1.2.1 fd00:12::1 |
#      |      lbcanary 10.1.3.1 fd00:13::1; forwarding on, rp_filter off. VIPs (10.0.0.100, fd00::100)
#      |      are on no interface: only veer answers for them.
#   P-blue    eth0 10.1.1.2/24 fd00:11::2/64   default via the lb (client addresses are preserved,
#   P-green   eth0 10.1.2.2/24 fd00:12::2/64   so replies must come back through the lb)
#   P-canary  eth0 10.1.3.2/24 fd00:13::2/64
#
# Each backend runs scripts/testbed/backend.py: HTTP/1.1 on 8080 (answers its variant name, GET /stats
# gives JSON counts), UDP echo on 9000 ("<variant> <payload>"), TCP line echo on 7000 ("<variant> <line>").
# It is a model-server stand-in with knobs (added latency, 500 and reset shares, prediction labels; all off
# by default), served on 8080 too: GET /metrics, GET|POST /control (see backend.py), changed at run time by
#   ip netns exec P-canary curl -s '127.0.0.1:8080/control?latency=fixed:300&error_rate=0.02'
# or set at start by TESTBED_BACKEND_ARGS_<variant>="--latency fixed:300 --error-rate 0.02" in the environment.
#
# /run/P-testbed/ holds: bpffs/ (a bpffs mount for veerd's pins: `ip netns exec` gives each process a
# fresh /sys, so /sys/fs/bpf is not shared between a veerd and the one restarted after it), state/
# (veerd state_dir), veer.sock (veerd socket, created by veerd), pids/, logs/.
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BACKEND_PY="$SCRIPT_DIR/testbed/backend.py"
VARIANTS=(blue green canary)
declare -A SUBNET=([blue]=1 [green]=2 [canary]=3)
EXTRA_CLIENTS_FIRST=11
EXTRA_CLIENTS_LAST=60

usage() {
  echo "usage: $0 up|down|status [--prefix P]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
ACTION="$1"; shift
PREFIX=veer
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
    *) usage ;;
  esac
done
[[ "$PREFIX" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$ ]] || { echo "testbed: bad prefix '$PREFIX'" >&2; exit 2; }

RUN_DIR="/run/$PREFIX-testbed"
NS_CLIENT="$PREFIX-client"
NS_LB="$PREFIX-lb"
ALL_NS=("$NS_CLIENT" "$NS_LB" "$PREFIX-blue" "$PREFIX-green" "$PREFIX-canary")

log() { echo "testbed[$PREFIX]: $*" >&2; }
nsx() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }
ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }
mac_of() { ip -n "$1" -br link show dev "$2" | awk '{print $3}'; }

require_root() {
  if [ "$(id -u)" -ne 0 ]; then echo "testbed: run as root" >&2; exit 1; fi
}

# Settings every namespace gets before any interface exists in it (defaults apply to new links).
ns_base_setup() {
  local ns="$1"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
  nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# FACTS.md: XDP_REDIRECT into a veth needs GRO on the target (NAPI receive) unless its peer has an XDP
# program; TCP across an XDP redirect needs TX checksum offload off on the sending veth (CHECKSUM_PARTIAL
# is lost when the skb becomes an xdp_frame). Both on every veth end: harmless where not needed.
veth_offloads() {
  local ns="$1" dev="$2"
  nsx "$ns" ethtool -K "$dev" gro on >/dev/null
  nsx "$ns" ethtool -K "$dev" tx off >/dev/null 2>&1 || nsx "$ns" ethtool -K "$dev" tx-checksumming off >/dev/null
}

# veth pair: LBDEV in the lb namespace, eth0 in namespace NS.
make_link() {
  local ns="$1" lbdev="$2"
  ip -n "$NS_LB" link add "$lbdev" type veth peer name eth0 netns "$ns"
  ip -n "$NS_LB" link set "$lbdev" up
  ip -n "$ns" link set eth0 up
  veth_offloads "$NS_LB" "$lbdev"
  veth_offloads "$ns" eth0
}

start_backend() {
  local variant="$1" ns="$PREFIX-$1"
  local pidfile="$RUN_DIR/pids/backend-$variant.pid"
  rm -f "$pidfile"
  # Start-time knobs of the model-server stand-in, e.g. TESTBED_BACKEND_ARGS_canary="--latency fixed:300
  # --error-rate 0.02" (split on blanks; backend.py refuses bad values, and up fails).
  local knobs_var="TESTBED_BACKEND_ARGS_$variant" knobs=()
  read -r -a knobs <<<"${!knobs_var:-}"
  # `ip netns exec` execs the command, so $! is python's pid; backend.py writes the pid file itself
  # once every socket is bound, which is what we wait for.
  setsid ip netns exec "$ns" python3 "$BACKEND_PY" --variant "$variant" --pid-file "$pidfile" "${knobs[@]}" \
    >"$RUN_DIR/logs/backend-$variant.log" 2>&1 </dev/null &
}

wait_backends() {
  local deadline=$((SECONDS + 15)) v
  for v in "${VARIANTS[@]}"; do
    while [ ! -s "$RUN_DIR/pids/backend-$v.pid" ]; do
      if [ $SECONDS -ge $deadline ]; then
        log "backend $v did not start; log:"; cat "$RUN_DIR/logs/backend-$v.log" >&2 || true
        return 1
      fi
      sleep 0.05
    done
  done
}

do_up() {
  require_root
  local ns
  for ns in "${ALL_NS[@]}"; do
    if ns_exists "$ns"; then
      log "namespace $ns exists: run '$0 down --prefix $PREFIX' first"; exit 1
    fi
  done
  trap 'log "up failed, tearing down"; do_down >/dev/null 2>&1 || true' ERR
  mkdir -p "$RUN_DIR"/{pids,logs,state,bpffs}
  echo "$PREFIX" >"$RUN_DIR/prefix"
  if ! mountpoint -q "$RUN_DIR/bpffs"; then
    mount -t bpf bpf "$RUN_DIR/bpffs"
  fi

  for ns in "${ALL_NS[@]}"; do ns_base_setup "$ns"; done
  nsx "$NS_LB" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding=1 \
    net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.forwarding=1

  # client <-> lb
  make_link "$NS_CLIENT" lbc
  ip -n "$NS_LB" addr add 10.0.1.1/24 dev lbc
  ip -n "$NS_LB" addr add fd00:1::1/64 dev lbc nodad
  ip -n "$NS_CLIENT" addr add 10.0.1.10/24 dev eth0
  ip -n "$NS_CLIENT" addr add fd00:1::10/64 dev eth0 nodad
  local i
  for ((i = EXTRA_CLIENTS_FIRST; i <= EXTRA_CLIENTS_LAST; i++)); do
    ip -n "$NS_CLIENT" addr add "10.0.1.$i/24" dev eth0
    ip -n "$NS_CLIENT" addr add "fd00:1::$i/64" dev eth0 nodad
  done
  # default routes cover the VIPs (10.0.0.0/24, fd00::/120) and the backend addresses (plain routing)
  ip -n "$NS_CLIENT" route add default via 10.0.1.1
  ip -n "$NS_CLIENT" -6 route add default via fd00:1::1

  # lb <-> backends
  local v n lbdev
  for v in "${VARIANTS[@]}"; do
    n=${SUBNET[$v]}; lbdev="lb$v"; ns="$PREFIX-$v"
    make_link "$ns" "$lbdev"
    ip -n "$NS_LB" addr add "10.1.$n.1/24" dev "$lbdev"
    ip -n "$NS_LB" addr add "fd00:1$n::1/64" dev "$lbdev" nodad
    ip -n "$ns" addr add "10.1.$n.2/24" dev eth0
    ip -n "$ns" addr add "fd00:1$n::2/64" dev eth0 nodad
    ip -n "$ns" route add default via "10.1.$n.1"
    ip -n "$ns" -6 route add default via "fd00:1$n::1"
  done

  # Permanent neighbour entries everywhere: bpf_fib_lookup() in the data plane answers NO_NEIGH for an
  # unresolved next hop, and the first packets of a run should not depend on ARP/ND timing.
  local client_mac lb_c_mac
  client_mac=$(mac_of "$NS_CLIENT" eth0)
  lb_c_mac=$(mac_of "$NS_LB" lbc)
  ip -n "$NS_CLIENT" neigh replace 10.0.1.1 lladdr "$lb_c_mac" dev eth0 nud permanent
  ip -n "$NS_CLIENT" neigh replace fd00:1::1 lladdr "$lb_c_mac" dev eth0 nud permanent
  ip -n "$NS_LB" neigh replace 10.0.1.10 lladdr "$client_mac" dev lbc nud permanent
  ip -n "$NS_LB" neigh replace fd00:1::10 lladdr "$client_mac" dev lbc nud permanent
  for ((i = EXTRA_CLIENTS_FIRST; i <= EXTRA_CLIENTS_LAST; i++)); do
    ip -n "$NS_LB" neigh replace "10.0.1.$i" lladdr "$client_mac" dev lbc nud permanent
    ip -n "$NS_LB" neigh replace "fd00:1::$i" lladdr "$client_mac" dev lbc nud permanent
  done
  local be_mac lb_be_mac
  for v in "${VARIANTS[@]}"; do
    n=${SUBNET[$v]}; lbdev="lb$v"; ns="$PREFIX-$v"
    be_mac=$(mac_of "$ns" eth0)
    lb_be_mac=$(mac_of "$NS_LB" "$lbdev")
    ip -n "$NS_LB" neigh replace "10.1.$n.2" lladdr "$be_mac" dev "$lbdev" nud permanent
    ip -n "$NS_LB" neigh replace "fd00:1$n::2" lladdr "$be_mac" dev "$lbdev" nud permanent
    ip -n "$ns" neigh replace "10.1.$n.1" lladdr "$lb_be_mac" dev eth0 nud permanent
    ip -n "$ns" neigh replace "fd00:1$n::1" lladdr "$lb_be_mac" dev eth0 nud permanent
  done

  for v in "${VARIANTS[@]}"; do start_backend "$v"; done
  wait_backends
  trap - ERR
  log "up: namespaces ${ALL_NS[*]}; bpffs $RUN_DIR/bpffs; socket $RUN_DIR/veer.sock"
}

# Alive = exists and is not a zombie (our backends are reparented to init, which may reap them late).
pid_alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

kill_pid() {
  local pid="$1" t
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((t = 0; t < 40; t++)); do
    pid_alive "$pid" || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

do_down() {
  require_root
  local f ns pid
  if [ -d "$RUN_DIR/pids" ]; then
    for f in "$RUN_DIR"/pids/*.pid; do
      [ -e "$f" ] || continue
      kill_pid "$(cat "$f" 2>/dev/null || true)"
    done
  fi
  # Anything else still running inside our namespaces (e.g. a veerd or a client a test left behind)
  # was started in them by this testbed's user: stop it by pid before the namespace goes away.
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill_pid "$pid"; done
  done
  for ns in "${ALL_NS[@]}"; do
    if ns_exists "$ns"; then ip netns del "$ns" || log "could not delete $ns"; fi
  done
  # A veerd may have stacked its own bpffs on the mount point: unmount until none is left.
  local tries=0
  while [ -d "$RUN_DIR/bpffs" ] && mountpoint -q "$RUN_DIR/bpffs" && [ $tries -lt 5 ]; do
    umount "$RUN_DIR/bpffs" 2>/dev/null || umount -l "$RUN_DIR/bpffs" || true
    tries=$((tries + 1))
  done
  rm -rf "$RUN_DIR"
  log "down"
}

do_status() {
  local ns rc=0 v pid
  for ns in "${ALL_NS[@]}"; do
    if ns_exists "$ns"; then
      echo "== $ns"
      # the client has 102 addresses: show the first ones and a count
      ip -n "$ns" -br addr show | grep -v '^lo ' | awk '{
        line = "   " $1 " " $2; n = NF - 2
        for (i = 3; i <= NF && i < 7; i++) line = line " " $i
        if (n > 4) line = line " ... (" n " addresses)"
        print line }'
    else
      echo "== $ns: missing"; rc=1
    fi
  done
  if [ -d "$RUN_DIR/bpffs" ] && mountpoint -q "$RUN_DIR/bpffs"; then
    echo "bpffs: $RUN_DIR/bpffs (mounted)"
  else
    echo "bpffs: $RUN_DIR/bpffs not mounted"; rc=1
  fi
  for v in "${VARIANTS[@]}"; do
    pid=$(cat "$RUN_DIR/pids/backend-$v.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && pid_alive "$pid"; then
      echo "backend $v: pid $pid alive"
    else
      echo "backend $v: not running"; rc=1
    fi
  done
  if [ -S "$RUN_DIR/veer.sock" ]; then echo "veerd socket: $RUN_DIR/veer.sock"; else echo "veerd socket: none"; fi
  return $rc
}

case "$ACTION" in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  *) usage ;;
esac
