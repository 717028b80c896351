# shellcheck shell=bash
# The fleet testbed of scripts/testbed.sh (sourced by it; uses its PREFIX, RUN_DIR, OFFLOADS, log, scaled,
# ns_settings, ns_batch, in_background, wait_background, start_backend, wait_backends, kill_pids, pid_alive).
#
#   scripts/testbed.sh up --fleet N [--prefix P] [--offloads xdp-safe|nic]     N veer nodes (1..9, tests: 3)
#   scripts/testbed.sh etcd-stop|etcd-start --member M [--prefix P]           one etcd member (1..3)
#   scripts/testbed.sh cut --node N [--links fabric|all] [--prefix P]         node N's links down
#   scripts/testbed.sh restore --node N [--prefix P]                          back up, as configured
#   scripts/testbed.sh status|down [--prefix P]
#
#   P-clientN  eth0 10.0.N.10/24 (+ .11..60), fd00:N::10/64 (+ ::11..60); default via node N
#      |
#   P-lbN      lbc 10.0.N.1/24 fd00:N::1/64 | fab 10.3.N.2/24 fd00:3N::2/64; routes to the backends
#      |       (10.1.0.0/16, fd00:10::/28), etcd (10.2.0.0/16) and the other nodes (10.3.0.0/16,
#      |       fd00:30::/28) via the fabric router; the VIP (10.0.0.100, fd00::100) is routed nowhere.
#   P-fabric   the router every node, backend and etcd member hangs off: rlbN 10.3.N.1 fd00:3N::1,
#      |       rblue/rgreen/rcanary 10.1.{1,2,3}.1 fd00:1{1,2,3}::1, retcdM 10.2.M.1; routes each client
#      |       subnet (10.0.N.0/24, fd00:N::/64) via node N, so a backend's replies to client N's addresses
#      |       go back through node N.
#   P-blue     eth0 10.1.1.2/24 fd00:11::2/64, P-green 10.1.2.2 fd00:12::2, P-canary 10.1.3.2 fd00:13::2;
#              default via the router (the same addresses and servers as the single-node testbed)
#   P-etcdM    eth0 10.2.M.2/24, default via the router: etcd member eM, clients on http://10.2.M.2:2379
#              (and 127.0.0.1:2379 inside), peers on :2380; data in a mktemp folder /tmp/P-fleet-etcd.*
#
# /run/P-testbed/ holds, besides bpffs/, pids/ and logs/ (etcdM.log): fleet (the node count), etcd-data
# (the data folder's path), lbN/ (node N's state/ and veer.sock), cut-N (node N is cut: its links).
# Every link is a veth pair with fixed MACs 02:76:66:00:LL:01 (lb or router end) / :02 (the other end):
# LL 0N client link of node N, 1N node N's fabric link, 2n backend n, 3M etcd member M.

FLEET_MAX=9
ETCD_MEMBERS=3

fleet_mac() { printf '02:76:66:00:%02x:%02x' "$((16#$1))" "$2"; }

# Every possible namespace of a fleet of PREFIX (for down: whatever a killed run left).
fleet_all_ns() {
  local n m
  for ((n = 1; n <= FLEET_MAX; n++)); do echo "$PREFIX-client$n"; echo "$PREFIX-lb$n"; done
  echo "$PREFIX-fabric"
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do echo "$PREFIX-etcd$m"; done
}

fleet_nodes() { cat "$RUN_DIR/fleet" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- topology (ip -batch generators)
# Idempotent (replace everywhere): restore re-runs them after links went down (an admin-down link loses its
# IPv6 addresses, its routes and its neighbour entries). Phase "links": links up and addresses; phase
# "routes": routes and permanent neighbour entries (every link of every namespace is up by then).

fleet_veths_lb() {  # in P-lbN: the client link
  local n=$1
  echo "link add lbc address $(fleet_mac "0$n" 1) type veth peer name eth0 address $(fleet_mac "0$n" 2) netns $PREFIX-client$n"
}

fleet_veths_router() {  # in P-fabric: every other link
  local nodes=$1 n m v k
  for ((n = 1; n <= nodes; n++)); do
    echo "link add rlb$n address $(fleet_mac "1$n" 1) type veth peer name fab address $(fleet_mac "1$n" 2) netns $PREFIX-lb$n"
  done
  for v in "${VARIANTS[@]}"; do
    k=${SUBNET[$v]}
    echo "link add r$v address $(fleet_mac "2$k" 1) type veth peer name eth0 address $(fleet_mac "2$k" 2) netns $PREFIX-$v"
  done
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do
    echo "link add retcd$m address $(fleet_mac "3$m" 1) type veth peer name eth0 address $(fleet_mac "3$m" 2) netns $PREFIX-etcd$m"
  done
}

fleet_client_topology() {
  local n=$1 phase=$2 i
  if [ "$phase" = links ]; then
    echo "link set lo up"
    echo "link set eth0 up"
    for ((i = 10; i <= EXTRA_CLIENTS_LAST; i++)); do
      echo "address replace 10.0.$n.$i/24 dev eth0"
      echo "address replace fd00:$n::$i/64 dev eth0 nodad"
    done
  else
    echo "route replace default via 10.0.$n.1 dev eth0"
    echo "route replace ::/0 via fd00:$n::1 dev eth0"
    echo "neighbour replace 10.0.$n.1 lladdr $(fleet_mac "0$n" 1) dev eth0 nud permanent"
    echo "neighbour replace fd00:$n::1 lladdr $(fleet_mac "0$n" 1) dev eth0 nud permanent"
  fi
}

fleet_lb_topology() {
  local n=$1 phase=$2 i
  if [ "$phase" = links ]; then
    echo "link set lo up"
    echo "link set lbc up"
    echo "link set fab up"
    echo "address replace 10.0.$n.1/24 dev lbc"
    echo "address replace fd00:$n::1/64 dev lbc nodad"
    echo "address replace 10.3.$n.2/24 dev fab"
    echo "address replace fd00:3$n::2/64 dev fab nodad"
  else
    for i in 10.1.0.0/16 10.2.0.0/16 10.3.0.0/16; do echo "route replace $i via 10.3.$n.1 dev fab"; done
    for i in fd00:10::/28 fd00:30::/28; do echo "route replace $i via fd00:3$n::1 dev fab"; done
    echo "neighbour replace 10.3.$n.1 lladdr $(fleet_mac "1$n" 1) dev fab nud permanent"
    echo "neighbour replace fd00:3$n::1 lladdr $(fleet_mac "1$n" 1) dev fab nud permanent"
    for ((i = 10; i <= EXTRA_CLIENTS_LAST; i++)); do
      echo "neighbour replace 10.0.$n.$i lladdr $(fleet_mac "0$n" 2) dev lbc nud permanent"
      echo "neighbour replace fd00:$n::$i lladdr $(fleet_mac "0$n" 2) dev lbc nud permanent"
    done
  fi
}

# The router's part for node N only (restore), or all of it (up: "all").
fleet_router_node() {
  local n=$1 phase=$2
  if [ "$phase" = links ]; then
    echo "link set rlb$n up"
    echo "address replace 10.3.$n.1/24 dev rlb$n"
    echo "address replace fd00:3$n::1/64 dev rlb$n nodad"
  else
    echo "route replace 10.0.$n.0/24 via 10.3.$n.2 dev rlb$n"
    echo "route replace fd00:$n::/64 via fd00:3$n::2 dev rlb$n"
    echo "neighbour replace 10.3.$n.2 lladdr $(fleet_mac "1$n" 2) dev rlb$n nud permanent"
    echo "neighbour replace fd00:3$n::2 lladdr $(fleet_mac "1$n" 2) dev rlb$n nud permanent"
  fi
}

fleet_router_topology() {
  local nodes=$1 phase=$2 n m v k
  [ "$phase" = links ] && echo "link set lo up"
  for ((n = 1; n <= nodes; n++)); do fleet_router_node "$n" "$phase"; done
  for v in "${VARIANTS[@]}"; do
    k=${SUBNET[$v]}
    if [ "$phase" = links ]; then
      echo "link set r$v up"
      echo "address replace 10.1.$k.1/24 dev r$v"
      echo "address replace fd00:1$k::1/64 dev r$v nodad"
    else
      echo "neighbour replace 10.1.$k.2 lladdr $(fleet_mac "2$k" 2) dev r$v nud permanent"
      echo "neighbour replace fd00:1$k::2 lladdr $(fleet_mac "2$k" 2) dev r$v nud permanent"
    fi
  done
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do
    if [ "$phase" = links ]; then
      echo "link set retcd$m up"
      echo "address replace 10.2.$m.1/24 dev retcd$m"
    else
      echo "neighbour replace 10.2.$m.2 lladdr $(fleet_mac "3$m" 2) dev retcd$m nud permanent"
    fi
  done
}

fleet_backend_topology() {
  local k=${SUBNET[$1]} phase=$2
  if [ "$phase" = links ]; then
    echo "link set lo up"
    echo "link set eth0 up"
    echo "address replace 10.1.$k.2/24 dev eth0"
    echo "address replace fd00:1$k::2/64 dev eth0 nodad"
  else
    echo "route replace default via 10.1.$k.1 dev eth0"
    echo "route replace ::/0 via fd00:1$k::1 dev eth0"
    echo "neighbour replace 10.1.$k.1 lladdr $(fleet_mac "2$k" 1) dev eth0 nud permanent"
    echo "neighbour replace fd00:1$k::1 lladdr $(fleet_mac "2$k" 1) dev eth0 nud permanent"
  fi
}

fleet_etcd_topology() {
  local m=$1 phase=$2
  if [ "$phase" = links ]; then
    echo "link set lo up"
    echo "link set eth0 up"
    echo "address replace 10.2.$m.2/24 dev eth0"
  else
    echo "route replace default via 10.2.$m.1 dev eth0"
    echo "neighbour replace 10.2.$m.1 lladdr $(fleet_mac "3$m" 1) dev eth0 nud permanent"
  fi
}

# ---------------------------------------------------------------- etcd

etcd_url() { echo "http://10.2.$1.2:$2"; }

etcd_initial_cluster() {
  local m out=""
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do out+="${out:+,}e$m=$(etcd_url "$m" 2380)"; done
  echo "$out"
}

etcd_pids() { ip netns pids "$PREFIX-etcd$1" 2>/dev/null || true; }

# Accepts a TCP connection on member M's client port (listening; serving needs quorum, see etcd_wait_health).
etcd_listening() {
  ip netns exec "$PREFIX-fabric" timeout 2 bash -c "exec 3<>/dev/tcp/10.2.$1.2/2379" 2>/dev/null
}

etcd_healthy() {
  ip netns exec "$PREFIX-fabric" timeout 5 etcdctl --endpoints "$(etcd_url "$1" 2379)" --dial-timeout 1s \
    --command-timeout 2s endpoint health >/dev/null 2>&1
}

# Starts member M (no-op if it runs) on its data folder and waits (bounded) until its client port listens.
etcd_start() {
  local m=$1 ns="$PREFIX-etcd$1" data deadline
  if [ -n "$(etcd_pids "$m")" ]; then log "etcd member $m already runs"; return 0; fi
  data=$(cat "$RUN_DIR/etcd-data")
  [ -d "$data" ] || { log "etcd data folder '$data' missing"; return 1; }
  echo "--- start $(date +%T)" >>"$RUN_DIR/logs/etcd$m.log"
  setsid ip netns exec "$ns" etcd --name "e$m" --data-dir "$data/e$m" \
    --listen-client-urls "$(etcd_url "$m" 2379),http://127.0.0.1:2379" \
    --advertise-client-urls "$(etcd_url "$m" 2379)" \
    --listen-peer-urls "$(etcd_url "$m" 2380)" --initial-advertise-peer-urls "$(etcd_url "$m" 2380)" \
    --initial-cluster "$(etcd_initial_cluster)" --initial-cluster-token "$PREFIX-fleet" \
    --initial-cluster-state new --logger zap --log-outputs stderr --log-level warn \
    >>"$RUN_DIR/logs/etcd$m.log" 2>&1 </dev/null &
  # setsid and `ip netns exec` exec (no fork: a background job of a script leads no process group), so
  # $! becomes etcd's pid.
  local pid=$!
  deadline=$((SECONDS + $(scaled 15)))
  until etcd_listening "$m"; do
    # Dead only if nothing runs in its namespace either: were the job a process group leader after all,
    # setsid would fork and $! (setsid) exit at once while etcd starts (seen once in e2e_fleet: "did not
    # start" within a second, with an empty log).
    if [ $SECONDS -ge $deadline ] || { ! pid_alive "$pid" && [ -z "$(etcd_pids "$m")" ]; }; then
      log "etcd member $m did not start; log:"; tail -n 20 "$RUN_DIR/logs/etcd$m.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
}

# Stops member M: TERM, KILL after 2 s (scaled); returns once it is gone.
etcd_stop() {
  local m=$1 pids
  # shellcheck disable=SC2207
  pids=($(etcd_pids "$m"))
  [ ${#pids[@]} -gt 0 ] || { log "etcd member $m is not running"; return 0; }
  kill_pids "${pids[@]}"
}

# Waits (bounded) until every member given answers `endpoint health` (needs a quorum).
etcd_wait_health() {
  local deadline=$((SECONDS + $(scaled 30))) m
  for m in "$@"; do
    until etcd_healthy "$m"; do
      if [ $SECONDS -ge $deadline ]; then
        log "etcd member $m not healthy in time; log:"; tail -n 20 "$RUN_DIR/logs/etcd$m.log" >&2 || true
        return 1
      fi
      sleep 0.2
    done
  done
}

# ---------------------------------------------------------------- up, cut, restore, status

fleet_up() {
  local nodes=$1 ns n m v existing all_ns=()
  [[ "$nodes" =~ ^[1-9]$ ]] || { echo "testbed: --fleet 1..$FLEET_MAX, not '$nodes'" >&2; exit 2; }
  command -v etcd >/dev/null && command -v etcdctl >/dev/null || { log "etcd and etcdctl are needed (etcd-server, etcd-client)"; exit 1; }
  for ((n = 1; n <= nodes; n++)); do all_ns+=("$PREFIX-client$n" "$PREFIX-lb$n"); done
  all_ns+=("$PREFIX-fabric")
  for v in "${VARIANTS[@]}"; do all_ns+=("$PREFIX-$v"); done
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do all_ns+=("$PREFIX-etcd$m"); done
  existing=$(ip netns list 2>/dev/null | awk '{print $1}')
  for ns in "${all_ns[@]}" "${ALL_NS[@]}"; do
    if grep -qx -- "$ns" <<<"$existing"; then
      log "namespace $ns exists: run '$0 down --prefix $PREFIX' first"; exit 1
    fi
  done
  [ ! -e "$RUN_DIR" ] || { log "$RUN_DIR exists: run '$0 down --prefix $PREFIX' first"; exit 1; }
  trap 'log "up failed, tearing down"; do_down >/dev/null 2>&1 || true' ERR
  mkdir -p "$RUN_DIR"/{pids,logs,bpffs}
  for ((n = 1; n <= nodes; n++)); do mkdir -p "$RUN_DIR/lb$n/state"; done
  echo "$PREFIX" >"$RUN_DIR/prefix"
  echo "$nodes" >"$RUN_DIR/fleet"
  mktemp -d "/tmp/$PREFIX-fleet-etcd.XXXXXX" >"$RUN_DIR/etcd-data"
  if ! mountpoint -q "$RUN_DIR/bpffs"; then mount -t bpf bpf "$RUN_DIR/bpffs"; fi

  for ns in "${all_ns[@]}"; do echo "netns add $ns"; done | ip -batch -
  for ((n = 1; n <= nodes; n++)); do in_background ns_batch "$PREFIX-lb$n" fleet_veths_lb "$n"; done
  in_background ns_batch "$PREFIX-fabric" fleet_veths_router "$nodes"
  wait_background

  local rdevs=()
  for ((n = 1; n <= nodes; n++)); do
    in_background ns_settings "$PREFIX-lb$n" 1 lbc fab
    in_background ns_settings "$PREFIX-client$n" 0 eth0
    rdevs+=("rlb$n")
  done
  for v in "${VARIANTS[@]}"; do in_background ns_settings "$PREFIX-$v" 0 eth0; rdevs+=("r$v"); done
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do in_background ns_settings "$PREFIX-etcd$m" 0 eth0; rdevs+=("retcd$m"); done
  in_background ns_settings "$PREFIX-fabric" 1 "${rdevs[@]}"
  wait_background

  local phase
  for phase in links routes; do
    for ((n = 1; n <= nodes; n++)); do
      in_background ns_batch "$PREFIX-lb$n" fleet_lb_topology "$n" "$phase"
      in_background ns_batch "$PREFIX-client$n" fleet_client_topology "$n" "$phase"
    done
    in_background ns_batch "$PREFIX-fabric" fleet_router_topology "$nodes" "$phase"
    for v in "${VARIANTS[@]}"; do in_background ns_batch "$PREFIX-$v" fleet_backend_topology "$v" "$phase"; done
    for ((m = 1; m <= ETCD_MEMBERS; m++)); do in_background ns_batch "$PREFIX-etcd$m" fleet_etcd_topology "$m" "$phase"; done
    wait_background
  done

  for v in "${VARIANTS[@]}"; do start_backend "$v"; done
  # The members wait for each other: start all, then wait for each to listen and for a healthy cluster.
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do in_background etcd_start "$m"; done
  wait_background
  wait_backends
  etcd_wait_health $(seq 1 $ETCD_MEMBERS)
  trap - ERR
  log "up: fleet of $nodes nodes ($PREFIX-lb1..$nodes, $PREFIX-client1..$nodes), backends, $PREFIX-fabric, etcd" \
      "$(etcd_initial_cluster); data $(cat "$RUN_DIR/etcd-data")"
}

fleet_check_node() {
  local nodes
  nodes=$(fleet_nodes)
  [ "$nodes" -gt 0 ] || { log "no fleet testbed is up (no $RUN_DIR/fleet)"; exit 1; }
  [[ "$1" =~ ^[1-9]$ ]] && [ "$1" -le "$nodes" ] || { echo "testbed: --node 1..$nodes, not '$1'" >&2; exit 2; }
}

fleet_check_member() {
  [ "$(fleet_nodes)" -gt 0 ] || { log "no fleet testbed is up (no $RUN_DIR/fleet)"; exit 1; }
  [[ "$1" =~ ^[1-9]$ ]] && [ "$1" -le "$ETCD_MEMBERS" ] || { echo "testbed: --member 1..$ETCD_MEMBERS, not '$1'" >&2; exit 2; }
}

# Node N's links down, both ends: its fabric link (no etcd, no backends, no peers), with "all" its client link.
fleet_cut() {
  local n=$1 links=$2
  case "$links" in fabric|all) ;; *) echo "testbed: --links fabric or all, not '$links'" >&2; exit 2 ;; esac
  ip -n "$PREFIX-lb$n" link set fab down
  ip -n "$PREFIX-fabric" link set "rlb$n" down
  if [ "$links" = all ]; then ip -n "$PREFIX-lb$n" link set lbc down; fi
  echo "$links" >"$RUN_DIR/cut-$n"
  log "node $n cut ($links)"
}

# Node N's links up again, addresses, routes and neighbours as up made them (both ends, both phases).
fleet_restore() {
  local n=$1 phase
  for phase in links routes; do
    ns_batch "$PREFIX-fabric" fleet_router_node "$n" "$phase"
    ns_batch "$PREFIX-lb$n" fleet_lb_topology "$n" "$phase"
    ns_batch "$PREFIX-client$n" fleet_client_topology "$n" "$phase"
  done
  rm -f "$RUN_DIR/cut-$n"
  log "node $n restored"
}

fleet_status() {
  local nodes rc=0 n m v pids
  nodes=$(fleet_nodes)
  local list=()
  for ((n = 1; n <= nodes; n++)); do list+=("$PREFIX-client$n" "$PREFIX-lb$n"); done
  list+=("$PREFIX-fabric")
  for v in "${VARIANTS[@]}"; do list+=("$PREFIX-$v"); done
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do list+=("$PREFIX-etcd$m"); done
  echo "fleet: $nodes nodes"
  show_status_of "; node N pins under lbN/" "${list[@]}" || rc=1
  echo "etcd data: $(cat "$RUN_DIR/etcd-data" 2>/dev/null || echo none)"
  for ((m = 1; m <= ETCD_MEMBERS; m++)); do
    pids=$(etcd_pids "$m" | tr '\n' ' ')
    if [ -z "$pids" ]; then echo "etcd member $m ($(etcd_url "$m" 2379)): stopped"
    elif etcd_healthy "$m"; then echo "etcd member $m ($(etcd_url "$m" 2379)): pid $pids healthy"
    else echo "etcd member $m ($(etcd_url "$m" 2379)): pid $pids not healthy"; fi
  done
  for ((n = 1; n <= nodes; n++)); do
    local state=connected
    [ -e "$RUN_DIR/cut-$n" ] && state="cut ($(cat "$RUN_DIR/cut-$n"))"
    if [ -S "$RUN_DIR/lb$n/veer.sock" ]; then echo "node $n: $state, veerd socket $RUN_DIR/lb$n/veer.sock"
    else echo "node $n: $state, no veerd socket"; fi
  done
  return $rc
}

# Down's part: the etcd data folder (only one this testbed made: /tmp/P-fleet-etcd.*).
fleet_remove_data() {
  local data
  data=$(cat "$RUN_DIR/etcd-data" 2>/dev/null || true)
  case "$data" in
    /tmp/"$PREFIX"-fleet-etcd.??????) rm -rf -- "$data" ;;
    "") ;;
    *) log "not removing '$data' (not a fleet etcd folder)" ;;
  esac
}
