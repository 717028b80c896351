#!/usr/bin/env bash
# veer netns testbed: one client, one load balancer (lb) and three backends (blue, green, canary).
#
#   scripts/testbed.sh up|down|status [--prefix P] [--offloads xdp-safe|nic]   (run as root)
#   --prefix: default "veer". --offloads (up): the veths' offloads. xdp-safe (default): GRO on, TX checksum
#   offload off, which native XDP on a veth needs for TCP; nic: GRO on, the rest as veth creates it (TX
#   checksum offload, scatter-gather and TSO on, like a NIC): TCP leaves its senders with checksums left to
#   offload (CHECKSUM_PARTIAL), which the TC hook's NAT must carry; not for `attach: xdp`.
#   env: TESTBED_WAIT_SCALE (default $VEER_E2E_SCALE, else 1) multiplies the waits (backends' start: 15 s)
#
#   Fleet mode (scripts/testbed/fleet.sh: N veer nodes with a client each, the same backends behind a fabric
#   router, a three-member etcd):
#   scripts/testbed.sh up --fleet N [--prefix P] [--offloads ...]   namespaces P-lbN, P-clientN, P-fabric,
#                                                                   P-blue/green/canary, P-etcd1..3
#   scripts/testbed.sh etcd-stop|etcd-start --member M [--prefix P] one etcd member
#   scripts/testbed.sh cut --node N [--links fabric|all] [--prefix P]  node N's links down (default: its
#                                                                   fabric link; all: its client link too)
#   scripts/testbed.sh restore --node N [--prefix P]                node N's links back as up made them
#   status and down find out the mode by themselves; down removes whatever of either mode exists.
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
# shellcheck source=testbed/fleet.sh
. "$SCRIPT_DIR/testbed/fleet.sh"
VARIANTS=(blue green canary)
declare -A SUBNET=([blue]=1 [green]=2 [canary]=3)
EXTRA_CLIENTS_FIRST=11
EXTRA_CLIENTS_LAST=60

usage() {
  echo "usage: $0 up|down|status [--prefix P] [--offloads xdp-safe|nic] [--fleet N]" >&2
  echo "       $0 etcd-stop|etcd-start --member M [--prefix P]" >&2
  echo "       $0 cut --node N [--links fabric|all] [--prefix P]; $0 restore --node N [--prefix P]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
ACTION="$1"; shift
PREFIX=veer
OFFLOADS=xdp-safe
FLEET=0 MEMBER="" NODE="" LINKS=fabric
while [ $# -gt 0 ]; do
  case "$1" in
    --fleet) [ $# -ge 2 ] || usage; FLEET="$2"; shift 2 ;;
    --fleet=*) FLEET="${1#--fleet=}"; shift ;;
    --member) [ $# -ge 2 ] || usage; MEMBER="$2"; shift 2 ;;
    --member=*) MEMBER="${1#--member=}"; shift ;;
    --node) [ $# -ge 2 ] || usage; NODE="$2"; shift 2 ;;
    --node=*) NODE="${1#--node=}"; shift ;;
    --links) [ $# -ge 2 ] || usage; LINKS="$2"; shift 2 ;;
    --links=*) LINKS="${1#--links=}"; shift ;;
    --prefix) [ $# -ge 2 ] || usage; PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
    --offloads) [ $# -ge 2 ] || usage; OFFLOADS="$2"; shift 2 ;;
    --offloads=*) OFFLOADS="${1#--offloads=}"; shift ;;
    *) usage ;;
  esac
done
[[ "$PREFIX" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$ ]] || { echo "testbed: bad prefix '$PREFIX'" >&2; exit 2; }
case "$OFFLOADS" in xdp-safe|nic) ;; *) echo "testbed: --offloads xdp-safe or nic, not '$OFFLOADS'" >&2; exit 2 ;; esac

RUN_DIR="/run/$PREFIX-testbed"
NS_CLIENT="$PREFIX-client"
NS_LB="$PREFIX-lb"
ALL_NS=("$NS_CLIENT" "$NS_LB" "$PREFIX-blue" "$PREFIX-green" "$PREFIX-canary")

log() { echo "testbed[$PREFIX]: $*" >&2; }
ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }

# Waits scale with TESTBED_WAIT_SCALE (default: VEER_E2E_SCALE, else 1), e.g. 4 under QEMU's software
# emulation (scripts/vm-test.sh), where one process start costs ~0.17 s and an `ip netns exec` ~1 s.
WAIT_SCALE=${TESTBED_WAIT_SCALE:-${VEER_E2E_SCALE:-1}}
[[ "$WAIT_SCALE" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "testbed: bad wait scale '$WAIT_SCALE'" >&2; exit 2; }
scaled() { awk -v s="$1" -v f="$WAIT_SCALE" 'BEGIN { v = s * f; printf "%d", (v < 1 ? 1 : v + 0.5) }'; }

require_root() {
  if [ "$(id -u)" -ne 0 ]; then echo "testbed: run as root" >&2; exit 1; fi
}

# Fixed, locally administered MACs (02:...): the permanent neighbour entries below are written from them
# without asking each namespace. Link k (1 lbc, 2 lbblue, 3 lbgreen, 4 lbcanary): lb end ..:k:01, peer
# eth0 ..:k:02. Each pair is its own L2 segment, so testbeds of other prefixes never see these.
# (Looked up, not computed: a $(...) per line of the batches below costs a fork each, ~0.03 s under TCG.)
LB_MAC=() PEER_MAC=()
for k in 1 2 3 4; do
  printf -v "LB_MAC[$k]" '02:76:65:00:%02x:01' "$k"
  printf -v "PEER_MAC[$k]" '02:76:65:00:%02x:02' "$k"
done

# One `ip netns exec NS sh -c` per namespace (an exec costs ~1 s under emulation): the namespace's
# sysctls (all, default and each of DEVS, written through /proc/sys by the shell itself: the devices
# already exist, so setting only `default` would not reach them) and the veth offloads of DEVS.
# FACTS.md: XDP_REDIRECT into a veth needs GRO on the target (NAPI receive) unless its peer has an XDP
# program; TCP across an XDP redirect needs TX checksum offload off on the sending veth (CHECKSUM_PARTIAL
# is lost when the skb becomes an xdp_frame). Both on every veth end: harmless where not needed.
ns_settings() {
  local ns="$1" forward="$2"; shift 2
  local tx=off
  [ "$OFFLOADS" = nic ] && tx=on
  # shellcheck disable=SC2016  # expanded by the inner shell
  ip netns exec "$ns" sh -c '
    set -e
    forward=$1; tx=$2; shift 2
    w() { echo "$2" >"/proc/sys/net/$1"; }
    for c in all default "$@"; do
      w "ipv6/conf/$c/accept_dad" 0
      w "ipv6/conf/$c/accept_ra" 0
      w "ipv4/conf/$c/rp_filter" 0
    done
    if [ "$forward" = 1 ]; then
      w ipv4/ip_forward 1
      w ipv4/conf/all/forwarding 1
      w ipv6/conf/all/forwarding 1
      w ipv6/conf/default/forwarding 1
    fi
    for d in "$@"; do
      ethtool -K "$d" gro on tx "$tx" >/dev/null 2>&1 || ethtool -K "$d" gro on tx-checksumming "$tx" >/dev/null
    done' veer-testbed-settings "$forward" "$tx" "$@"
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
  local deadline=$((SECONDS + $(scaled 15))) v
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

# Runs "$@" in the background (without the ERR trap: the caller tears down once, after wait_background).
BACKGROUND=()
in_background() {
  ( trap - ERR; "$@" ) &
  BACKGROUND+=($!)
}

# Waits for every job of in_background; fails (after all have ended) if any failed.
wait_background() {
  local pid rc=0
  for pid in "${BACKGROUND[@]}"; do wait "$pid" || rc=1; done
  BACKGROUND=()
  return $rc
}

# ip -n NS -batch - fed by GENERATOR ARGS... (one `ip` command a line).
ns_batch() {
  local ns="$1"; shift
  "$@" | ip -n "$ns" -batch -
}

# The topology is written as `ip -batch` scripts (one process per namespace instead of one per address,
# route and neighbour entry: ~300 commands before, which took 90-120 s under QEMU's software emulation).
# Permanent neighbour entries everywhere: bpf_fib_lookup() in the data plane answers NO_NEIGH for an
# unresolved next hop, and the first packets of a run should not depend on ARP/ND timing. The default
# routes cover the VIPs (10.0.0.0/24, fd00::/120) and the backend addresses (plain routing).
veth_pairs() {
  local v n
  echo "link add lbc address ${LB_MAC[1]} type veth peer name eth0 address ${PEER_MAC[1]} netns $NS_CLIENT"
  for v in "${VARIANTS[@]}"; do
    n=$((SUBNET[$v] + 1))
    echo "link add lb$v address ${LB_MAC[n]} type veth peer name eth0 address ${PEER_MAC[n]} netns $PREFIX-$v"
  done
}

lb_topology() {
  local i v n
  echo "link set lo up"
  echo "link set lbc up"
  echo "address add 10.0.1.1/24 dev lbc"
  echo "address add fd00:1::1/64 dev lbc nodad"
  echo "neighbour replace 10.0.1.10 lladdr ${PEER_MAC[1]} dev lbc nud permanent"
  echo "neighbour replace fd00:1::10 lladdr ${PEER_MAC[1]} dev lbc nud permanent"
  for ((i = EXTRA_CLIENTS_FIRST; i <= EXTRA_CLIENTS_LAST; i++)); do
    echo "neighbour replace 10.0.1.$i lladdr ${PEER_MAC[1]} dev lbc nud permanent"
    echo "neighbour replace fd00:1::$i lladdr ${PEER_MAC[1]} dev lbc nud permanent"
  done
  for v in "${VARIANTS[@]}"; do
    n=${SUBNET[$v]}
    echo "link set lb$v up"
    echo "address add 10.1.$n.1/24 dev lb$v"
    echo "address add fd00:1$n::1/64 dev lb$v nodad"
    echo "neighbour replace 10.1.$n.2 lladdr ${PEER_MAC[n + 1]} dev lb$v nud permanent"
    echo "neighbour replace fd00:1$n::2 lladdr ${PEER_MAC[n + 1]} dev lb$v nud permanent"
  done
}

client_topology() {
  local i
  echo "link set lo up"
  echo "link set eth0 up"
  echo "address add 10.0.1.10/24 dev eth0"
  echo "address add fd00:1::10/64 dev eth0 nodad"
  for ((i = EXTRA_CLIENTS_FIRST; i <= EXTRA_CLIENTS_LAST; i++)); do
    echo "address add 10.0.1.$i/24 dev eth0"
    echo "address add fd00:1::$i/64 dev eth0 nodad"
  done
  echo "route add default via 10.0.1.1"
  echo "route add ::/0 via fd00:1::1"
  echo "neighbour replace 10.0.1.1 lladdr ${LB_MAC[1]} dev eth0 nud permanent"
  echo "neighbour replace fd00:1::1 lladdr ${LB_MAC[1]} dev eth0 nud permanent"
}

backend_topology() {
  local n=${SUBNET[$1]}
  echo "link set lo up"
  echo "link set eth0 up"
  echo "address add 10.1.$n.2/24 dev eth0"
  echo "address add fd00:1$n::2/64 dev eth0 nodad"
  echo "route add default via 10.1.$n.1"
  echo "route add ::/0 via fd00:1$n::1"
  echo "neighbour replace 10.1.$n.1 lladdr ${LB_MAC[n + 1]} dev eth0 nud permanent"
  echo "neighbour replace fd00:1$n::1 lladdr ${LB_MAC[n + 1]} dev eth0 nud permanent"
}

do_up() {
  require_root
  if [ "$FLEET" != 0 ]; then fleet_up "$FLEET"; return; fi
  local ns v existing
  existing=$(ip netns list 2>/dev/null | awk '{print $1}')
  for ns in "${ALL_NS[@]}"; do
    if grep -qx -- "$ns" <<<"$existing"; then
      log "namespace $ns exists: run '$0 down --prefix $PREFIX' first"; exit 1
    fi
  done
  trap 'log "up failed, tearing down"; do_down >/dev/null 2>&1 || true' ERR
  mkdir -p "$RUN_DIR"/{pids,logs,state,bpffs}
  echo "$PREFIX" >"$RUN_DIR/prefix"
  if ! mountpoint -q "$RUN_DIR/bpffs"; then
    mount -t bpf bpf "$RUN_DIR/bpffs"
  fi

  for ns in "${ALL_NS[@]}"; do echo "netns add $ns"; done | ip -batch -
  # veth pairs, created down: LBDEV in the lb namespace, eth0 in the other end's namespace.
  ns_batch "$NS_LB" veth_pairs

  # Sysctls and offloads while every link is down (no DAD, no RA on the link-local addresses either),
  # then addresses, routes and neighbours; the namespaces in parallel.
  in_background ns_settings "$NS_LB" 1 lbc lbblue lbgreen lbcanary
  for ns in "$NS_CLIENT" "$PREFIX-blue" "$PREFIX-green" "$PREFIX-canary"; do
    in_background ns_settings "$ns" 0 eth0
  done
  wait_background
  in_background ns_batch "$NS_LB" lb_topology
  in_background ns_batch "$NS_CLIENT" client_topology
  for v in "${VARIANTS[@]}"; do in_background ns_batch "$PREFIX-$v" backend_topology "$v"; done
  wait_background

  for v in "${VARIANTS[@]}"; do start_backend "$v"; done
  wait_backends
  trap - ERR
  log "up: namespaces ${ALL_NS[*]}; bpffs $RUN_DIR/bpffs; socket $RUN_DIR/veer.sock"
}

# Alive = exists and is not a zombie (our backends are reparented to init, which may reap them late).
# Shell builtins only: down runs it in loops, and a process start costs ~0.17 s under emulation.
pid_alive() {
  local line
  [ -r "/proc/$1/status" ] || return 1
  while read -r line; do
    case "$line" in State:*Z*) return 1 ;; State:*) return 0 ;; esac
  done <"/proc/$1/status" 2>/dev/null
  return 1
}

# TERM to every pid given, KILL to those still alive after 2 s (scaled).
kill_pids() {
  local pid live=() t rounds
  for pid in "$@"; do
    if [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$pid")
    fi
  done
  [ ${#live[@]} -gt 0 ] || return 0
  rounds=$(scaled 40)
  for ((t = 0; t < rounds && ${#live[@]} > 0; t++)); do
    sleep 0.05
    for pid in "${!live[@]}"; do pid_alive "${live[$pid]}" || unset "live[$pid]"; done
  done
  for pid in "${live[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

do_down() {
  require_root
  local f ns pids=() present=() existing fleet_ns
  if [ -d "$RUN_DIR/pids" ]; then
    for f in "$RUN_DIR"/pids/*.pid; do
      [ -e "$f" ] || continue
      pids+=("$(cat "$f" 2>/dev/null || true)")
    done
  fi
  existing=$(ip netns list 2>/dev/null | awk '{print $1}')
  # Either mode's namespaces (a fleet's: every name it could have made).
  # Not a process substitution: the kernel guests have no /dev/fd.
  read -r -a fleet_ns <<<"$(fleet_all_ns | tr "\n" " ")"
  for ns in "${ALL_NS[@]}" "${fleet_ns[@]}"; do
    if grep -qx -- "$ns" <<<"$existing"; then present+=("$ns"); fi
  done
  # Anything else still running inside our namespaces (e.g. a veerd or a client a test left behind)
  # was started in them by this testbed's user: stop it by pid before the namespace goes away.
  for ns in "${present[@]}"; do
    # shellcheck disable=SC2207  # pids: one number a line
    pids+=($(ip netns pids "$ns" 2>/dev/null))
  done
  kill_pids "${pids[@]}"
  if [ ${#present[@]} -gt 0 ]; then
    for ns in "${present[@]}"; do echo "netns del $ns"; done | ip -force -batch - ||
      log "could not delete every namespace of ${present[*]}"
  fi
  # A veerd may have stacked its own bpffs on the mount point: unmount until none is left.
  local tries=0
  while [ -d "$RUN_DIR/bpffs" ] && mountpoint -q "$RUN_DIR/bpffs" && [ $tries -lt 5 ]; do
    umount "$RUN_DIR/bpffs" 2>/dev/null || umount -l "$RUN_DIR/bpffs" || true
    tries=$((tries + 1))
  done
  fleet_remove_data
  rm -rf "$RUN_DIR"
  log "down"
}

# Either mode's status: the namespaces NS... with their addresses, the bpffs (NOTE after "mounted") and the
# backends. Returns 1 if something is missing.
show_status_of() {
  local note=$1 ns rc=0 v pid
  shift
  for ns in "$@"; do
    if ns_exists "$ns"; then
      echo "== $ns"
      # a client has 102 addresses: show the first ones and a count
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
    echo "bpffs: $RUN_DIR/bpffs (mounted$note)"
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
  return $rc
}

do_status() {
  local rc=0
  if [ "$(fleet_nodes)" -gt 0 ]; then fleet_status; return; fi
  show_status_of "" "${ALL_NS[@]}" || rc=1
  if [ -S "$RUN_DIR/veer.sock" ]; then echo "veerd socket: $RUN_DIR/veer.sock"; else echo "veerd socket: none"; fi
  return $rc
}

case "$ACTION" in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  etcd-stop|etcd-start)
    require_root; fleet_check_member "$MEMBER"
    if [ "$ACTION" = etcd-stop ]; then etcd_stop "$MEMBER"; else etcd_start "$MEMBER"; fi ;;
  cut) require_root; fleet_check_node "$NODE"; fleet_cut "$NODE" "$LINKS" ;;
  restore) require_root; fleet_check_node "$NODE"; fleet_restore "$NODE" ;;
  *) usage ;;
esac
