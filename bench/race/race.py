#!/usr/bin/env python3
"""bench/race driver: races veer against its peers on a fresh netns testbed per (peer, round).

Run through bench/race/run.sh (root). Topology, peers and figures: bench/race/README.md.
Standard library only (python3 of Debian 12); public tools: ip, ethtool, curl, wrk,
nginx, haproxy, nft, iptables-restore.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "vrace"
RUN_DIR = Path("/run/vrace")
NS_CLIENT, NS_LB = f"{PREFIX}-client", f"{PREFIX}-lb"
# variant, subnet number (10.1.N.0/24), weight in percent
VARIANTS = [("blue", 1, 70), ("green", 2, 20), ("canary", 3, 10)]
NS_BACKEND = {v: f"{PREFIX}-{v}" for v, _, _ in VARIANTS}
ALL_NS = [NS_CLIENT, NS_LB] + list(NS_BACKEND.values())
VIP = "10.0.0.100"
CLIENT_IP = "10.0.1.10"
HTTP_PORT, UDP_PORT, STATUS_PORT = 80, 9000, 8081
LB_IFS = ["lbc"] + [f"lb{v}" for v, _, _ in VARIANTS]
VEER_MODES = {"veer-xdp": ("xdp", "xdp"), "veer-xdp-generic": ("xdp-generic", "xdp-generic"),
              "veer-tcx": ("tc", "tcx"), "veer-cls_bpf": ("cls_bpf", "tc")}  # peer -> (config attach, status mode)
ALL_PEERS = ["plain", "ecmp", "veer-xdp", "veer-xdp-generic", "veer-tcx", "veer-cls_bpf", "nftables", "iptables",
             "nginx", "haproxy"]
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# Fixed, locally administered MACs (02:...). Link k (1 lbc, 2 lbblue, 3 lbgreen, 4 lbcanary): lb end ..:k:01,
# peer eth0 ..:k:02; 0x72 ('r') keeps them apart from scripts/testbed.sh's. Permanent neighbour entries are
# written from them, so no run depends on ARP timing.
def lb_mac(k: int) -> str:
    return f"02:76:72:00:{k:02x}:01"


def peer_mac(k: int) -> str:
    return f"02:76:72:00:{k:02x}:02"


def log(msg: str) -> None:
    print(f"race: {msg}", file=sys.stderr, flush=True)


class RaceError(Exception):
    pass


def run(cmd: list[str], timeout: float = 20, check: bool = True, input: str | None = None) -> str:
    """Runs cmd (bounded in time); returns stdout; raises RaceError with stderr on failure."""
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RaceError(f"timed out after {timeout}s: {' '.join(cmd)}")
    if check and p.returncode != 0:
        raise RaceError(f"failed ({p.returncode}): {' '.join(cmd)}: {p.stderr.strip()[-800:]}")
    return p.stdout


def nsexec(ns: str, cmd: list[str], **kw) -> str:
    return run(["ip", "netns", "exec", ns] + cmd, **kw)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def kill_pids(pids: list[int], grace: float = 2.0) -> None:
    """TERM to each pid (all started by this driver inside its namespaces), KILL after `grace` s."""
    live = []
    for pid in pids:
        if pid > 1 and pid != os.getpid() and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
                live.append(pid)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [p for p in live if pid_alive(p)]
    for pid in live:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def existing_namespaces() -> set[str]:
    out = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def cleanup_everything() -> None:
    """Removes whatever a run (or a killed run) left: processes in our namespaces, the namespaces, bpffs."""
    present = [ns for ns in ALL_NS if ns in existing_namespaces()]
    pids: list[int] = []
    for ns in present:
        pids += [int(p) for p in run(["ip", "netns", "pids", ns], check=False).split() if p.isdigit()]
    kill_pids(pids)
    for ns in present:
        run(["ip", "netns", "del", ns], check=False)
    bpffs = RUN_DIR / "bpffs"
    for _ in range(5):
        if not (bpffs.is_dir() and os.path.ismount(bpffs)):
            break
        if subprocess.run(["umount", str(bpffs)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(bpffs)], capture_output=True)
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Testbed: client -- lb -- blue/green/canary, like scripts/testbed.sh (IPv4 only, nginx backends).

# Offloads of every veth end, the same for every peer of a run (--offloads):
#   xdp-safe  GRO on, TX checksum offload off. FACTS.md: XDP_REDIRECT into a veth needs GRO (NAPI) on the
#             target, and native XDP on a veth turns a CHECKSUM_PARTIAL skb into a frame whose checksum is
#             never completed, so TCP through veer-xdp needs the senders to checksum in software. The default:
#             the one testbed on which all peers, veer-xdp included, run.
#   nic       GRO on, TX checksum offload (and so TSO) on, like a NIC: the senders do not checksum, so the
#             lb hop is a larger share of the work. veer-xdp cannot carry TCP here and is not run.
OFFLOADS = {"xdp-safe": "gro on tx off", "nic": "gro on tx on"}


def ns_settings_script(forward: bool, devs: list[str], offloads: str) -> str:
    lines = ["set -e", "w() { echo \"$2\" > /proc/sys/net/$1; }"]
    for c in ["all", "default"] + devs:
        lines.append(f"w ipv4/conf/{c}/rp_filter 0")
    if forward:
        lines += ["w ipv4/ip_forward 1", "w ipv4/conf/all/forwarding 1"]
    # Client (and proxies on the lb): many short connections; the same on every namespace.
    lines += ["w ipv4/ip_local_port_range '1024 65535'", "w ipv4/tcp_tw_reuse 1",
              "echo 4096 > /proc/sys/net/core/somaxconn", "w ipv4/tcp_max_syn_backlog 4096"]
    for d in devs:
        lines.append(f"ethtool -K {d} {OFFLOADS[offloads]} >/dev/null")
    return "\n".join(lines)


def topo_up(offloads: str = "xdp-safe") -> None:
    if existing_namespaces() & set(ALL_NS):
        raise RaceError(f"namespaces of a previous run exist ({PREFIX}-*): run bench/race/run.sh --cleanup")
    (RUN_DIR / "logs").mkdir(parents=True, exist_ok=True)
    run(["ip", "-batch", "-"], input="".join(f"netns add {ns}\n" for ns in ALL_NS))
    pairs = [f"link add lbc address {lb_mac(1)} type veth peer name eth0 address {peer_mac(1)} netns {NS_CLIENT}"]
    for v, n, _ in VARIANTS:
        pairs.append(f"link add lb{v} address {lb_mac(n + 1)} type veth peer name eth0 address {peer_mac(n + 1)}"
                     f" netns {NS_BACKEND[v]}")
    run(["ip", "-n", NS_LB, "-batch", "-"], input="\n".join(pairs) + "\n")

    procs = [subprocess.Popen(["ip", "netns", "exec", NS_LB, "sh", "-c",
                               ns_settings_script(True, LB_IFS, offloads)], stderr=subprocess.PIPE, text=True)]
    for ns in [NS_CLIENT] + list(NS_BACKEND.values()):
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c",
                                       ns_settings_script(False, ["eth0"], offloads)],
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=20)
        if p.returncode != 0:
            raise RaceError(f"namespace settings failed: {err.strip()}")

    lb = ["link set lo up", "link set lbc up", "address add 10.0.1.1/24 dev lbc",
          f"neighbour replace {CLIENT_IP} lladdr {peer_mac(1)} dev lbc nud permanent"]
    for v, n, _ in VARIANTS:
        lb += [f"link set lb{v} up", f"address add 10.1.{n}.1/24 dev lb{v}",
               f"neighbour replace 10.1.{n}.2 lladdr {peer_mac(n + 1)} dev lb{v} nud permanent"]
    client = ["link set lo up", "link set eth0 up", f"address add {CLIENT_IP}/24 dev eth0",
              "route add default via 10.0.1.1",
              f"neighbour replace 10.0.1.1 lladdr {lb_mac(1)} dev eth0 nud permanent"]
    run(["ip", "-n", NS_LB, "-batch", "-"], input="\n".join(lb) + "\n")
    run(["ip", "-n", NS_CLIENT, "-batch", "-"], input="\n".join(client) + "\n")
    for v, n, _ in VARIANTS:
        be = ["link set lo up", "link set eth0 up", f"address add 10.1.{n}.2/24 dev eth0",
              f"route add default via 10.1.{n}.1",
              f"neighbour replace 10.1.{n}.1 lladdr {lb_mac(n + 1)} dev eth0 nud permanent"]
        run(["ip", "-n", NS_BACKEND[v], "-batch", "-"], input="\n".join(be) + "\n")


class Processes:
    """Processes this driver started (by pid), stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, ns: str, cmd: list[str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
        logf = open(RUN_DIR / "logs" / f"{name}.log", "w")
        # `ip netns exec` execs the command: the pid is the program's own.
        p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=stdout, stderr=logf,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        self.procs.append((name, p))
        return p

    def stop_all(self) -> None:
        kill_pids([p.pid for _, p in reversed(self.procs)])
        for _, p in self.procs:
            try:
                p.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                tail = (RUN_DIR / "logs" / f"{name}.log").read_text(errors="replace")[-600:]
                raise RaceError(f"{name} exited ({p.returncode}): {tail.strip()}")


def backend_nginx_conf(v: str, workers: str) -> str:
    d = RUN_DIR / f"nginx-{v}"
    return f"""worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    default_type text/plain;
    server {{
        listen {HTTP_PORT} backlog=4096;
        location / {{ return 200 "veer race {v}\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{STATUS_PORT};
        location /status {{ stub_status; }}
    }}
}}
"""


# The UDP sink exists so that datagrams for :9000 are not answered with ICMP port unreachable; it never reads
# (reading would cost backend CPU that competes with the lb on 2 cores): deliveries are counted from the
# namespace's UDP MIB (InDatagrams + RcvbufErrors, see udp_delivered()).
UDP_SINK = ("import socket,sys,time\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"s.bind(('0.0.0.0',{UDP_PORT}))\n"
            "print('ready',flush=True)\n"
            "time.sleep(3600)\n")


def start_backends(procs: Processes, args) -> dict[str, int]:
    sink_pids = {}
    for v, _, _ in VARIANTS:
        d = RUN_DIR / f"nginx-{v}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "nginx.conf").write_text(backend_nginx_conf(v, args.backend_workers))
        procs.start(f"nginx-{v}", NS_BACKEND[v], ["nginx", "-p", str(d), "-c", str(d / "nginx.conf")])
        sink = procs.start(f"udpsink-{v}", NS_BACKEND[v], ["python3", "-c", UDP_SINK], stdout=subprocess.PIPE)
        sink_pids[v] = sink.pid
    deadline = time.monotonic() + 10
    for v, _, _ in VARIANTS:
        while http_requests(v) is None:
            procs.check_alive()
            if time.monotonic() > deadline:
                raise RaceError(f"backend nginx {v} did not answer on :{STATUS_PORT}")
            time.sleep(0.05)
    for name, p in procs.procs:
        if name.startswith("udpsink-") and p.stdout.readline().strip() != b"ready":
            raise RaceError(f"{name} did not start")
    return sink_pids


def http_requests(v: str) -> int | None:
    """Requests the backend has served (stub_status; the status request itself is one of them)."""
    out = nsexec(NS_BACKEND[v], ["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{STATUS_PORT}/status"],
                 check=False, timeout=5)
    m = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", out, re.M)
    return int(m.group(3)) if m else None


def request_counts() -> dict[str, int]:
    counts = {v: http_requests(v) for v, _, _ in VARIANTS}
    missing = [v for v, c in counts.items() if c is None]
    if missing:
        raise RaceError(f"no stub_status answer from backend(s) {', '.join(missing)}")
    return counts


def udp_delivered(pid: int) -> int:
    """Datagrams that reached the backend's UDP layer for a bound port with valid headers and checksums:
    InDatagrams (queued to the sink) + RcvbufErrors (sink's buffer full). /proc/PID/net is the netns of PID."""
    lines = [l.split() for l in Path(f"/proc/{pid}/net/snmp").read_text().splitlines() if l.startswith("Udp:")]
    row = dict(zip(lines[0][1:], (int(x) for x in lines[1][1:])))
    return row["InDatagrams"] + row["RcvbufErrors"]


# ---------------------------------------------------------------------------------------------------------
# Peers: each sets up the lb namespace; returns (HTTP target address, UDP target address or None, note).

@dataclass
class PeerSetup:
    http_target: str
    udp_target: str | None
    note: str = ""
    veer_config: Path | None = None


def setup_plain(procs: Processes, args) -> PeerSetup:
    # Reference: the client addresses blue directly; the lb only routes (the cost floor of the lb hop).
    return PeerSetup("10.1.1.2", "10.1.1.2", "routing only, blue backend addressed directly, no split")


def setup_nftables(procs: Processes, args) -> PeerSetup:
    def mapping() -> str:
        lo, parts = 0, []
        for v, n, w in VARIANTS:
            parts.append(f"{lo}-{lo + w - 1} : 10.1.{n}.2")
            lo += w
        return "{ " + ", ".join(parts) + " }"
    # kube-proxy nftables style: one random number per new connection (conntrack keeps the flow's choice).
    rules = f"""table ip vrace {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {VIP} tcp dport {HTTP_PORT} dnat to numgen random mod 100 map {mapping()}
        ip daddr {VIP} udp dport {UDP_PORT} dnat to numgen random mod 100 map {mapping()}
    }}
}}
"""
    (RUN_DIR / "nft.conf").write_text(rules)
    nsexec(NS_LB, ["nft", "-f", str(RUN_DIR / "nft.conf")])
    return PeerSetup(VIP, VIP, "nft numgen random mod 100 map, DNAT in prerouting")


def setup_iptables(procs: Processes, args) -> PeerSetup:
    # kube-proxy iptables style: a chain of `statistic --mode random` DNAT rules, probability of the rest.
    lines = ["*nat", ":VRACE-TCP - [0:0]", ":VRACE-UDP - [0:0]",
             f"-A PREROUTING -d {VIP}/32 -p tcp --dport {HTTP_PORT} -j VRACE-TCP",
             f"-A PREROUTING -d {VIP}/32 -p udp --dport {UDP_PORT} -j VRACE-UDP"]
    for chain, port, proto in (("VRACE-TCP", HTTP_PORT, "tcp"), ("VRACE-UDP", UDP_PORT, "udp")):
        rest = 100
        for i, (v, n, w) in enumerate(VARIANTS):
            target = f"-j DNAT --to-destination 10.1.{n}.2:{port}"
            if i < len(VARIANTS) - 1:
                lines.append(f"-A {chain} -p {proto} -m statistic --mode random --probability {w / rest:.11f} "
                             f"{target}")
            else:
                lines.append(f"-A {chain} -p {proto} {target}")
            rest -= w
    lines.append("COMMIT")
    nsexec(NS_LB, ["iptables-restore", "--noflush"], input="\n".join(lines) + "\n")
    version = run(["iptables", "-V"], check=False).strip()
    return PeerSetup(VIP, VIP, f"statistic random DNAT chain; {version}")


def setup_ecmp(procs: Processes, args) -> PeerSetup:
    # The routing floor of a split: no NAT, no conntrack, no program. Every backend owns the VIP (on lo) and
    # the lb routes it by weighted multipath with the L4 hash (per connection, like a splitter), replies are
    # routed back as in `plain`. What any lb that works as a routing hop pays at least, with the same split
    # (same backends, same worker processes engaged) as the splitters, which `plain` (blue only) has not.
    for v, _, _ in VARIANTS:
        run(["ip", "-n", NS_BACKEND[v], "address", "add", f"{VIP}/32", "dev", "lo"])
    nsexec(NS_LB, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/fib_multipath_hash_policy"])
    hops = []
    for v, n, w in VARIANTS:
        hops += ["nexthop", "via", f"10.1.{n}.2", "dev", f"lb{v}", "weight", str(w)]
    run(["ip", "-n", NS_LB, "route", "add", f"{VIP}/32"] + hops)
    return PeerSetup(VIP, VIP, "routing only, weighted multipath route to the VIP (L4 hash), VIP on the "
                               "backends' lo, no NAT")


def add_vip_to_lb_lo() -> None:
    run(["ip", "-n", NS_LB, "address", "add", f"{VIP}/32", "dev", "lo"])


def setup_nginx(procs: Processes, args) -> PeerSetup:
    if not Path(NGINX_STREAM_MODULE).exists():
        raise RaceError(f"{NGINX_STREAM_MODULE} missing (package libnginx-mod-stream)")
    add_vip_to_lb_lo()
    d = RUN_DIR / "nginx-lb"
    d.mkdir(parents=True, exist_ok=True)

    def split(var: str, kind: str) -> str:
        entries = "".join(f" {w}% {v}_{kind};" for v, _, w in VARIANTS[:-1]) + f" * {VARIANTS[-1][0]}_{kind};"
        return f'    split_clients "$remote_addr$remote_port" ${var} {{{entries} }}\n'

    ups = "".join(f"    upstream {v}_tcp {{ server 10.1.{n}.2:{HTTP_PORT}; }}\n"
                  f"    upstream {v}_udp {{ server 10.1.{n}.2:{UDP_PORT}; }}\n" for v, n, _ in VARIANTS)
    conf = f"""load_module {NGINX_STREAM_MODULE};
worker_processes auto;
worker_rlimit_nofile 16384;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8000; }}
stream {{
{split("vrace_tcp", "tcp")}{split("vrace_udp", "udp")}{ups}    server {{
        listen {VIP}:{HTTP_PORT} backlog=4096 reuseport;
        proxy_pass $vrace_tcp;
    }}
    server {{
        listen {VIP}:{UDP_PORT} udp reuseport;
        proxy_pass $vrace_udp;
        proxy_responses 0;
        proxy_timeout 2s;
    }}
}}
"""
    (d / "nginx.conf").write_text(conf)
    procs.start("nginx-lb", NS_LB, ["nginx", "-p", str(d), "-c", str(d / "nginx.conf")])
    return PeerSetup(VIP, VIP, "nginx stream split_clients $remote_addr$remote_port, worker_processes auto")


def setup_haproxy(procs: Processes, args) -> PeerSetup:
    add_vip_to_lb_lo()
    servers = "".join(f"    server {v} 10.1.{n}.2:{HTTP_PORT} weight {w}\n" for v, n, w in VARIANTS)
    conf = f"""global
    # 2 fds a connection; stays below the usual 20000-65536 hard RLIMIT_NOFILE (haproxy refuses to start
    # when it cannot raise the limit to what maxconn needs).
    maxconn 8000
    pidfile {RUN_DIR}/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend vrace
    bind {VIP}:{HTTP_PORT}
    default_backend variants
backend variants
    balance roundrobin
{servers}"""
    (RUN_DIR / "haproxy.cfg").write_text(conf)
    procs.start("haproxy", NS_LB, ["haproxy", "-db", "-f", str(RUN_DIR / "haproxy.cfg")])
    return PeerSetup(VIP, None, "HAProxy tcp mode, balance roundrobin, weights 70/20/10; no UDP")


def veer_config(attach: str) -> str:
    def variants(port: int) -> str:
        return "".join(f"      {v}: {{ backends: [\"10.1.{n}.2:{port}\"] }}\n" for v, n, _ in VARIANTS)
    weights = ", ".join(f"{v}: {w}" for v, _, w in VARIANTS)
    services = ""
    for name, port, proto in (("race-http", HTTP_PORT, "tcp"), ("race-udp", UDP_PORT, "udp")):
        services += f"""  - name: {name}
    vip: {VIP}
    port: {port}
    protocol: {proto}
    affinity: connection
    stable: blue
    variants:
{variants(port)}    weights: {{ {weights} }}
"""
    return f"""# written by bench/race/race.py
node:
  interfaces: [{", ".join(LB_IFS)}]
  attach: {attach}
  hash_seed: 0x5eed
  flow_table_size: 262144
  socket: {RUN_DIR}/veer.sock
  pin_path: {RUN_DIR}/bpffs
  state_dir: {RUN_DIR}/state
  metrics_listen: 127.0.0.1:9469
services:
{services}"""


def veer_status(args) -> dict | None:
    out = run([str(args.veerctl), "--socket", str(RUN_DIR / "veer.sock"), "--json", "status"], check=False,
              timeout=5)
    for line in out.splitlines():
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def attached_modes(status: dict) -> dict[str, str]:
    node = status.get("node") or status.get("result", {}).get("node") or {}
    return {a.get("interface"): a.get("mode") for a in node.get("interfaces", [])}


def make_veer_setup(peer: str):
    attach, expected_mode = VEER_MODES[peer]

    def setup(procs: Processes, args) -> PeerSetup:
        bpffs = RUN_DIR / "bpffs"
        bpffs.mkdir(parents=True, exist_ok=True)
        # `ip netns exec` gives each process a fresh /sys: veerd pins under a bpffs of the run dir.
        run(["mount", "-t", "bpf", "bpf", str(bpffs)])
        (RUN_DIR / "state").mkdir(exist_ok=True)
        cfg = RUN_DIR / "veer.yaml"
        cfg.write_text(veer_config(attach))
        procs.start("veerd", NS_LB, [str(args.veerd), "--config", str(cfg), "--foreground", "--log-level", "warn"])
        deadline = time.monotonic() + 20
        modes: dict[str, str] = {}
        while time.monotonic() < deadline:
            procs.check_alive()
            st = veer_status(args) if (RUN_DIR / "veer.sock").exists() else None
            if st:
                modes = attached_modes(st)
                if all(modes.get(i) == expected_mode for i in LB_IFS):
                    return PeerSetup(VIP, VIP, f"veerd attach {attach}: " +
                                     ", ".join(f"{i} {modes[i]}" for i in LB_IFS), cfg)
            time.sleep(0.1)
        raise RaceError(f"veerd not attached as {expected_mode} on {LB_IFS} within 20 s (status: {modes})")
    return setup


PEER_SETUP = {"plain": setup_plain, "ecmp": setup_ecmp, "nftables": setup_nftables, "iptables": setup_iptables,
              "nginx": setup_nginx, "haproxy": setup_haproxy}
PEER_SETUP.update({p: make_veer_setup(p) for p in VEER_MODES})


# ---------------------------------------------------------------------------------------------------------
# Figures

def busy_jiffies() -> int:
    f = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f[1:9])
    return user + nice + system + irq + softirq + steal


UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out: str) -> dict:
    def val(pattern: str, conv=float, default=None):
        m = re.search(pattern, out, re.M)
        return conv(m.group(1)) if m else default
    r = {"rps": val(r"^Requests/sec:\s+([\d.]+)"), "requests": val(r"^\s*(\d+) requests in", int, 0)}
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    r["p99_ms"] = float(m.group(1)) * UNIT_MS[m.group(2)] if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(int(x) for x in m.groups()) if m else 0
    r["error_text"] = m.group(0) if m else ""
    r["non2xx"] = val(r"Non-2xx or 3xx responses:\s+(\d+)", int, 0)
    if r["rps"] is None:
        raise RaceError(f"wrk output not understood: {out.strip()[-400:]}")
    return r


def wrk_command(args, target: str, close: bool) -> list[str]:
    """The client's wrk run, in the client namespace: a new connection per request (close) or keep-alive."""
    cmd = ["ip", "netns", "exec", NS_CLIENT, "wrk", f"-t{args.wrk_threads}", f"-c{args.connections}",
           f"-d{args.seconds}s", "--latency", "--timeout", "2s"]
    if close:
        cmd += ["-H", "Connection: close"]
    return cmd + [f"http://{target}/"]


def wrk(args, target: str, close: bool) -> dict:
    before = busy_jiffies()
    out = run(wrk_command(args, target, close), timeout=args.seconds + 20)
    busy = busy_jiffies() - before
    r = parse_wrk(out)
    r["cpu_us_per_req"] = busy * 1e6 / CLK_TCK / r["requests"] if r["requests"] else None
    return r


def chi2_p(counts: list[float]) -> tuple[float | None, float | None]:
    """Pearson chi-square of counts against the weights; p-value for df=2 (3 variants): exp(-x/2)."""
    total = sum(counts)
    if total == 0:
        return None, None
    x = sum((c - total * w / 100) ** 2 / (total * w / 100) for c, (_, _, w) in zip(counts, VARIANTS))
    return x, math.exp(-x / 2)


def udp_flow_estimate(counts: list[int], flows: int) -> list[float]:
    """The split is drawn per flow, not per packet: the generator cycles its source ports, so every flow
    carries the same number of frames and a backend's flows are its share of the packets times --udp-flows.
    (A chi-square over packets would count each flow's draw thousands of times.)"""
    total = sum(counts)
    return [c * flows / total for c in counts] if total else [0.0] * len(counts)


def udp_run(args, setup: PeerSetup, sink_pids: dict[str, int]) -> dict:
    if not args.udpgen.exists():
        return {"udp_note": "n/a (generator missing)"}
    if setup.udp_target is None:
        return {"udp_note": "n/a (no UDP)"}
    before = {v: udp_delivered(pid) for v, pid in sink_pids.items()}
    cmd = [str(args.udpgen), "--dev", "eth0", "--dst-mac", lb_mac(1), "--src-ip", CLIENT_IP,
           "--dst-ip", setup.udp_target, "--dst-port", str(UDP_PORT), "--flows", str(args.udp_flows),
           "--seconds", str(args.seconds)]
    out = nsexec(NS_CLIENT, cmd, timeout=args.seconds + 20)
    time.sleep(0.3)  # frames still queued in the veths and backlogs
    after = {v: udp_delivered(pid) for v, pid in sink_pids.items()}
    gen = json.loads(out.strip().splitlines()[-1])
    counts = [after[v] - before[v] for v, _, _ in VARIANTS]
    secs = float(gen["seconds"]) or args.seconds
    return {"udp_sent": int(gen["sent"]), "udp_sent_pps": float(gen["pps"]), "udp_delivered": sum(counts),
            "udp_delivered_pps": sum(counts) / secs, "udp_counts": counts}


@dataclass
class Result:
    round: int
    position: int
    peer: str
    fig: dict = field(default_factory=dict)
    note: str = ""
    failed: str = ""


def connectivity(target: str) -> None:
    last = ""
    for _ in range(30):
        out = nsexec(NS_CLIENT, ["curl", "-s", "--max-time", "1", f"http://{target}/"], check=False, timeout=5)
        if out.startswith("veer race"):
            return
        last = out
        time.sleep(0.2)
    raise RaceError(f"no HTTP answer through the lb from http://{target}/ (last: {last!r})")


def tear_down(args, peer: str, procs: Processes) -> None:
    """Stops what a measurement started and removes the testbed."""
    procs.stop_all()
    if peer in VEER_MODES and (RUN_DIR / "veer.yaml").exists() and NS_LB in existing_namespaces():
        # Pinned links keep the programs attached after veerd stops (by design): detach and unpin.
        nsexec(NS_LB, [str(args.veerd), "--unload", "--config", str(RUN_DIR / "veer.yaml")], check=False,
               timeout=15)
    cleanup_everything()


def measure(args, peer: str, rnd: int, pos: int) -> Result:
    res = Result(rnd, pos, peer)
    procs = Processes()
    t0 = time.monotonic()
    try:
        topo_up(args.offloads)
        sink_pids = start_backends(procs, args)
        setup = PEER_SETUP[peer](procs, args)
        res.note = setup.note
        connectivity(setup.http_target)
        procs.check_alive()
        before = request_counts()
        close = wrk(args, setup.http_target, close=True)
        after = request_counts()
        keep = wrk(args, setup.http_target, close=False)
        f = res.fig
        for prefix, r in (("new", close), ("ka", keep)):
            for k in ("rps", "requests", "p99_ms", "errors", "non2xx", "cpu_us_per_req", "error_text"):
                f[f"{prefix}_{k}"] = r[k]
        # Each request of the close run is a new connection, i.e. a new flow: its split is the one to test.
        # (-1: the second status request is counted by its own reading.)
        f["http_counts"] = [after[v] - before[v] - 1 for v, _, _ in VARIANTS]
        if peer != "plain":
            f["http_chi2"], f["http_p"] = chi2_p(f["http_counts"])
        f.update(udp_run(args, setup, sink_pids))
        if peer != "plain" and "udp_counts" in f:
            f["udp_chi2"], f["udp_p"] = chi2_p(udp_flow_estimate(f["udp_counts"], args.udp_flows))
        procs.check_alive()
    except RaceError as e:
        res.failed = str(e)
        log(f"round {rnd} {peer}: FAILED: {e}")
        logs = RUN_DIR / "logs"
        if logs.is_dir() and args.out:
            keep_dir = args.out / "failed-logs" / f"r{rnd}-{peer}"
            shutil.copytree(logs, keep_dir, dirs_exist_ok=True)
    finally:
        tear_down(args, peer, procs)
    f = res.fig
    if not res.failed:
        udp = f"{f['udp_delivered_pps']:.0f}/s" if "udp_delivered_pps" in f else f.get("udp_note", "n/a")
        log(f"round {rnd} {peer}: new {f['new_rps']:.0f}/s ka {f['ka_rps']:.0f}/s udp {udp} "
            f"({time.monotonic() - t0:.1f} s)")
    return res


# ---------------------------------------------------------------------------------------------------------
# Output

FIGURES = [  # key, header, format, higher is better
    ("new_rps", "new-conn req/s", "{:.0f}", True),
    ("new_p99_ms", "new-conn p99 ms", "{:.2f}", False),
    ("new_cpu_us_per_req", "new-conn CPU µs/req", "{:.1f}", False),
    ("ka_rps", "keep-alive req/s", "{:.0f}", True),
    ("ka_p99_ms", "keep-alive p99 ms", "{:.2f}", False),
    ("ka_cpu_us_per_req", "keep-alive CPU µs/req", "{:.1f}", False),
    ("udp_delivered_pps", "UDP delivered pkt/s", "{:.0f}", True),
    ("udp_sent_pps", "UDP sent pkt/s", "{:.0f}", True),
]


def values(results: list[Result], peer: str, key: str) -> list[float]:
    return [r.fig[key] for r in results if r.peer == peer and not r.failed and r.fig.get(key) is not None]


def summarize(results: list[Result], peers: list[str]) -> dict:
    s = {}
    for p in peers:
        for key, *_ in FIGURES:
            v = values(results, p, key)
            s[(p, key)] = (statistics.median(v), min(v), max(v), len(v)) if v else None
    return s


def ratio(s: dict, a: str, b: str, key: str) -> float | None:
    x, y = s.get((a, key)), s.get((b, key))
    if not x or not y or not y[0]:
        return None
    return x[0] / y[0]


def split_text(results: list[Result], peer: str, kind: str) -> str:
    """Shares summed over rounds; p: median [min] of the per-round chi-square p-values. Rounds are not pooled
    into one test: veer's hash is deterministic (fixed seed) and the client's ports and the generator's flows
    recur from round to round, so pooling would count the same draws several times."""
    counts, pvalues = [0, 0, 0], []
    for r in results:
        c = r.fig.get(f"{kind}_counts") if r.peer == peer and not r.failed else None
        if c and sum(c):
            counts = [a + b for a, b in zip(counts, c)]
            if r.fig.get(f"{kind}_p") is not None:
                pvalues.append(r.fig[f"{kind}_p"])
    total = sum(counts)
    if peer == "plain" or total == 0 or not pvalues:
        return "n/a"
    return ("/".join(f"{100 * c / total:.1f}" for c in counts) +
            f" (p {statistics.median(pvalues):.2g} [min {min(pvalues):.2g}])")


def header_lines(args) -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    lines = [f"date: {args.started.isoformat(timespec='seconds')}", f"kernel: {os.uname().release}",
             f"cpu: {cpu}", f"nproc: {os.cpu_count()}",
             f"rounds: {args.rounds}, seconds per figure: {args.seconds}, wrk -t{args.wrk_threads} "
             f"-c{args.connections}, udp flows: {args.udp_flows}, backend nginx workers: {args.backend_workers}",
             f"veth offloads: {args.offloads} ({OFFLOADS[args.offloads]})",
             f"iptables: {run(['iptables', '-V'], check=False).strip()}"]
    return lines


def fmt(fmt_s: str, x) -> str:
    return "—" if x is None else fmt_s.format(x)


def markdown(header: list[str], results: list[Result], peers: list[str]) -> str:
    s = summarize(results, peers)
    out = ["# veer race", ""] + [f"- {l}" for l in header] + [""]
    out.append("Medians over rounds [min–max] and ratio of medians to `plain` (×plain). "
               "`!` = the peer had socket errors or non-2xx answers in some round (see below).")
    out.append("")
    cols = ["peer"]
    for key, head, _, _ in FIGURES:
        cols.append(head)
        if key in ("new_rps", "ka_rps", "udp_delivered_pps"):
            cols.append("×plain")
    cols += ["HTTP split b/g/c % (χ² p per round: median [min])", "UDP split b/g/c % (χ² p per flow, per round)"]
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "---|" * len(cols))
    for p in peers:
        failed = [r for r in results if r.peer == p and r.failed]
        errs = any((r.fig.get("new_errors") or r.fig.get("new_non2xx") or r.fig.get("ka_errors")
                    or r.fig.get("ka_non2xx")) for r in results if r.peer == p and not r.failed)
        name = p + (" !" if errs else "") + (f" ({len(failed)} failed)" if failed else "")
        row = [name]
        for key, _, f, _ in FIGURES:
            v = s[(p, key)]
            if v is None:
                na = next((r.fig.get("udp_note") for r in results if r.peer == p and r.fig.get("udp_note")), None)
                row.append(na if key.startswith("udp") and na else "—")
            else:
                row.append(f"{f.format(v[0])} [{f.format(v[1])}–{f.format(v[2])}]")
            if key in ("new_rps", "ka_rps", "udp_delivered_pps"):
                rt = ratio(s, p, "plain", key)
                row.append(fmt("{:.2f}", rt))
        row += [split_text(results, p, "http"), split_text(results, p, "udp")]
        out.append("| " + " | ".join(row) + " |")
    out += [""] + targets(s, peers) + [""]
    problems = [r for r in results if r.failed or r.fig.get("new_errors") or r.fig.get("new_non2xx")
                or r.fig.get("ka_errors") or r.fig.get("ka_non2xx")]
    if problems:
        out.append("Errors:")
        for r in problems:
            if r.failed:
                out.append(f"- round {r.round} {r.peer}: failed: {r.failed}")
            else:
                out.append(f"- round {r.round} {r.peer}: new-conn {r.fig['new_error_text']} non-2xx "
                           f"{r.fig['new_non2xx']}; keep-alive {r.fig['ka_error_text']} non-2xx {r.fig['ka_non2xx']}")
        out.append("")
    return "\n".join(out)


def targets(s: dict, peers: list[str]) -> list[str]:
    """The issue's targets, for every veer attach mode that ran (a column each): the ratio of medians and
    PASS/MISS. For p99 and CPU/req the ratio is peer / veer, i.e. how many times lower veer is."""
    modes = [p for p in VEER_MODES if p in peers]
    if not modes:
        return ["Targets: no veer peer in this run."]
    # The routing floor in the same places: what a hop with no lb logic at all reaches against each peer.
    floor = ["ecmp"] if "ecmp" in peers else []
    rows: list[tuple[str, float, list[float | None]]] = []

    def target(label: str, bound: float, ratio_of) -> None:
        rows.append((label, bound, [ratio_of(m) for m in modes + floor]))

    target("new-conn req/s vs nftables", 1.25, lambda m: ratio(s, m, "nftables", "new_rps"))
    target("new-conn req/s vs plain", 1.0, lambda m: ratio(s, m, "plain", "new_rps"))
    target("keep-alive req/s vs nftables", 1.2, lambda m: ratio(s, m, "nftables", "ka_rps"))
    target("UDP delivered pkt/s vs nftables", 1.6, lambda m: ratio(s, m, "nftables", "udp_delivered_pps"))
    for other in ("nginx", "haproxy"):
        for key, head, _, higher in FIGURES:
            if key.startswith("udp"):
                continue
            target(f"{head} vs {other}", 1.9,
                   (lambda m, k=key, o=other, h=higher: ratio(s, m, o, k) if h else ratio(s, o, m, k)))
    lines = ["Targets (ratio of medians per veer attach mode; p99 and CPU/req: peer ÷ veer, how many times "
             "lower veer is)" + ("; last column: the same ratios for `ecmp`, routing with the same split and no "
                                 "lb logic, the floor of any lb that is a routing hop" if floor else "") + ":", "",
             "| target | bound | " + " | ".join(modes + [f"{f} (floor)" for f in floor]) + " |",
             "|---|---|" + "---|" * len(modes + floor)]
    for label, bound, values in rows:
        cells = [("n/a" if r is None else f"{r:.2f} {'PASS' if r >= bound else 'MISS'}") for r in values]
        lines.append(f"| {label} | >= {bound} | " + " | ".join(cells) + " |")
    return lines


RAW_FIELDS = ["round", "position", "peer", "failed", "new_rps", "new_requests", "new_p99_ms", "new_errors",
              "new_non2xx", "new_cpu_us_per_req", "ka_rps", "ka_requests", "ka_p99_ms", "ka_errors", "ka_non2xx",
              "ka_cpu_us_per_req", "udp_sent", "udp_sent_pps", "udp_delivered", "udp_delivered_pps",
              "http_blue", "http_green", "http_canary", "http_chi2", "http_p",
              "udp_blue", "udp_green", "udp_canary", "udp_chi2", "udp_p", "udp_note", "new_error_text",
              "ka_error_text", "note"]
TEXT_FIELDS = {"peer", "failed", "udp_note", "new_error_text", "ka_error_text", "note"}


def write_csv(args, results: list[Result], peers: list[str]) -> None:
    with open(args.out / "raw.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, RAW_FIELDS)
        w.writeheader()
        for r in results:
            row = {"round": r.round, "position": r.position, "peer": r.peer, "failed": r.failed, "note": r.note}
            for k in RAW_FIELDS:
                if k in r.fig:
                    row[k] = r.fig[k]
            for kind in ("http", "udp"):
                for (v, _, _), c in zip(VARIANTS, r.fig.get(f"{kind}_counts") or []):
                    row[f"{kind}_{v}"] = c
            w.writerow(row)
    s = summarize(results, peers)
    with open(args.out / "summary.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["peer", "figure", "median", "min", "max", "rounds", "ratio_to_plain"])
        for p in peers:
            for key, *_ in FIGURES:
                v = s[(p, key)]
                if v:
                    rt = ratio(s, p, "plain", key)
                    w.writerow([p, key, f"{v[0]:.4g}", f"{v[1]:.4g}", f"{v[2]:.4g}", v[3],
                                "" if rt is None else f"{rt:.3f}"])


def main() -> int:
    ap = argparse.ArgumentParser(description="race veer against its peers (see bench/race/README.md)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5, help="length of each wrk run and of the UDP run")
    ap.add_argument("--peers", help="comma-separated, default: all (all but veer-xdp with --offloads nic)")
    ap.add_argument("--offloads", choices=sorted(OFFLOADS), default="xdp-safe",
                    help="offloads of every veth end (see OFFLOADS in race.py)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--build", type=Path, default=Path("build"))
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--udp-flows", type=int, default=1024)
    # auto (one per CPU), not 1: with one worker, `plain` (all requests to blue) was capped by blue's single
    # worker while the splitters spread 70/20/10 and looked up to 1/0.7 x faster than plain.
    ap.add_argument("--backend-workers", default="auto", help="nginx worker_processes of each backend")
    ap.add_argument("--cleanup", action="store_true", help="only remove what a killed run left, then exit")
    ap.add_argument("--profile", metavar="PEER", help="profile one peer's two wrk phases with perf, then exit")
    ap.add_argument("--report", type=Path, metavar="DIR", help="rebuild DIR/table.md from DIR/raw.csv, exit")
    args = ap.parse_args()
    if args.report:
        return report(args.report)
    if os.geteuid() != 0:
        print("race: run as root", file=sys.stderr)
        return 1
    if args.cleanup:
        cleanup_everything()
        return 0
    if args.profile:
        args.peers = args.profile
    if args.peers is None:
        args.peers = ",".join(p for p in ALL_PEERS if not (args.offloads == "nic" and p == "veer-xdp"))
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in peers if p not in ALL_PEERS]
    if bad or not peers or len(set(peers)) != len(peers):
        print(f"race: bad --peers {args.peers!r}; known: {','.join(ALL_PEERS)}", file=sys.stderr)
        return 2
    if args.offloads == "nic" and "veer-xdp" in peers:
        print("race: veer-xdp cannot carry TCP with --offloads nic (native XDP on a veth does not complete "
              "CHECKSUM_PARTIAL checksums): drop it from --peers or use --offloads xdp-safe", file=sys.stderr)
        return 2
    if not re.fullmatch(r"auto|[1-9][0-9]?", args.backend_workers):
        print("race: --backend-workers auto or 1..99", file=sys.stderr)
        return 2
    if not (1 <= args.rounds <= 100) or not (1 <= args.seconds <= 600) or not (1 <= args.connections <= 10000) \
            or not (1 <= args.wrk_threads <= 64) or not (1 <= args.udp_flows <= 65535):
        print("race: --rounds 1..100, --seconds 1..600, connections 1..10000, wrk threads 1..64, "
              "udp flows 1..65535", file=sys.stderr)
        return 2
    args.veerd = args.build / "userspace/daemon/veerd"
    args.veerctl = args.build / "userspace/ctl/veerctl"
    args.udpgen = args.build / "bench/race/veer_udpgen"
    need = ["ip", "ethtool", "curl", "wrk"]
    need += ["nginx"]
    if "nftables" in peers:
        need.append("nft")
    if "iptables" in peers:
        need += ["iptables", "iptables-restore"]
    if "haproxy" in peers:
        need.append("haproxy")
    missing = [t for t in need if shutil.which(t) is None]
    if any(p in VEER_MODES for p in peers):
        missing += [str(x) for x in (args.veerd, args.veerctl) if not x.exists()]
    if missing:
        print(f"race: missing: {', '.join(missing)} (scripts/install-deps.sh; build veerd/veerctl in "
              f"$VEER_BUILD_DIR)", file=sys.stderr)
        return 1
    if not args.udpgen.exists():
        log(f"{args.udpgen} missing: UDP figures are n/a (build it: cmake --build BUILD --target veer_udpgen)")
    args.started = dt.datetime.now().astimezone()
    if args.out is None:
        args.out = Path(__file__).resolve().parent / "results" / args.started.strftime("%Y-%m-%d_%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    if args.profile:
        return profile(args, args.profile)

    results: list[Result] = []
    t0 = time.monotonic()
    try:
        cleanup_everything()
        for rnd in range(args.rounds):
            k = rnd % len(peers)
            order = peers[k:] + peers[:k]  # interleaved rounds, order rotated by the round number
            for pos, peer in enumerate(order):
                results.append(measure(args, peer, rnd + 1, pos + 1))
    except KeyboardInterrupt:
        log("interrupted: cleaning up, writing what was measured")
    finally:
        cleanup_everything()
    elapsed = time.monotonic() - t0
    header = header_lines(args) + [f"run time: {elapsed:.0f} s"]
    (args.out / "meta.json").write_text(json.dumps({"header": header, "peers": peers}, indent=1) + "\n")
    write_csv(args, results, peers)
    table = markdown(header, results, peers)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    print(f"run time {elapsed:.0f} s; results in {args.out} (table.md, raw.csv, summary.csv, meta.json)")
    return 0 if results and not any(r.failed for r in results) else 1


# ---------------------------------------------------------------------------------------------------------
# Profile: where the machine's time goes for one peer (what limits a figure)

IDLE_SYMBOLS = ("pv_native_safe_halt", "default_idle", "native_safe_halt", "acpi_idle", "intel_idle",
                "mwait_idle", "cpu_idle_poll")
WAKEUP_SYMBOLS = ("_raw_spin_unlock_irqrestore", "finish_task_switch.isra.0", "finish_task_switch",
                  "_raw_spin_unlock_irq")


def perf_shares(data: Path, sort: str) -> list[tuple[float, str]]:
    out = run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio", "-g", "none",
               "--percent-limit", "0.01"], timeout=300)
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s+([0-9.]+)%\s+(.*?)\s*$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2)))
    return rows


def profile_phase(args, peer: str, target: str, close: bool, out_dir: Path) -> list[str]:
    phase = "new-conn" if close else "keep-alive"
    data = out_dir / f"perf-{peer}-{phase}.data"
    wrk_out = run(["perf", "record", "-a", "-g", "-q", "-o", str(data), "--"] + wrk_command(args, target, close),
                  timeout=args.seconds + 60)
    rps = parse_wrk(wrk_out)["rps"]
    syms = perf_shares(data, "sym")
    comms = perf_shares(data, "comm")

    def share(pred) -> float:
        return sum(pct for pct, name in syms if pred(name.split()[-1]))
    lines = [f"## {peer}, {phase}: {rps:.0f} req/s under perf", "",
             "| where | % of samples |", "|---|---|"]
    lines += [f"| process {name} | {pct:.1f} |" for pct, name in comms[:6]]
    lines += [f"| idle ({', '.join(IDLE_SYMBOLS[:1])}, ...) | {share(lambda n: n in IDLE_SYMBOLS):.1f} |",
              f"| wakeups and switches ({', '.join(WAKEUP_SYMBOLS[:2])}, ...) | "
              f"{share(lambda n: n in WAKEUP_SYMBOLS):.1f} |",
              f"| BPF programs (bpf_prog_*) | {share(lambda n: n.startswith('bpf_prog_')):.1f} |",
              f"| netfilter and conntrack (nf_*, nft_*, ipt_*) | "
              f"{share(lambda n: n.startswith(('nf_', 'nft_', 'ipt_', '__nf_'))):.1f} |",
              f"| forwarding (ip_forward*, ip_route_input*, fib_*) | "
              f"{share(lambda n: n.startswith(('ip_forward', 'ip_route_input', 'fib_'))):.1f} |",
              "", "Top symbols:", "", "```"]
    lines += [f"{pct:6.2f}%  {name}" for pct, name in syms[:25]]
    lines += ["```", ""]
    data.unlink(missing_ok=True)
    return lines


def profile(args, peer: str) -> int:
    """Sets up the testbed and `peer` once, runs wrk's two phases under `perf record -a -g` and writes the
    shares that explain a figure (idle, wakeups, BPF, netfilter, forwarding, per process) to
    OUT/profile-PEER.md."""
    if shutil.which("perf") is None:
        print("race: --profile needs perf (apt-get install linux-perf)", file=sys.stderr)
        return 1
    procs = Processes()
    lines = [f"# profile of {peer}", ""] + [f"- {l}" for l in header_lines(args)] + [""]
    try:
        cleanup_everything()
        topo_up(args.offloads)
        start_backends(procs, args)
        setup = PEER_SETUP[peer](procs, args)
        connectivity(setup.http_target)
        for close in (True, False):
            lines += profile_phase(args, peer, setup.http_target, close, args.out)
        procs.check_alive()
    except (RaceError, KeyboardInterrupt) as e:
        log(f"profile {peer}: FAILED: {e}")
        return 1
    finally:
        tear_down(args, peer, procs)
    text = "\n".join(lines)
    (args.out / f"profile-{peer}.md").write_text(text + "\n")
    print(text)
    return 0


def report(out: Path) -> int:
    """Rebuilds table.md and summary.csv of a finished run from its raw.csv and meta.json."""
    try:
        meta = json.loads((out / "meta.json").read_text())
        rows = list(csv.DictReader(open(out / "raw.csv", newline="")))
    except (OSError, ValueError) as e:
        print(f"race: --report {out}: {e}", file=sys.stderr)
        return 1
    results = []
    for row in rows:
        r = Result(int(row["round"]), int(row["position"]), row["peer"], note=row["note"], failed=row["failed"])
        for k in RAW_FIELDS:
            v = row.get(k, "")
            if k in ("round", "position", "peer", "failed", "note") or v == "":
                continue
            r.fig[k] = v if k in TEXT_FIELDS else float(v)
        for kind in ("http", "udp"):
            if all(row.get(f"{kind}_{v}") for v, _, _ in VARIANTS):
                r.fig[f"{kind}_counts"] = [int(row[f"{kind}_{v}"]) for v, _, _ in VARIANTS]
        r.fig.setdefault("new_error_text", "")
        r.fig.setdefault("ka_error_text", "")
        results.append(r)

    class Out:
        pass
    o = Out()
    o.out = out
    write_csv(o, results, meta["peers"])
    table = markdown(meta["header"], results, meta["peers"])
    (out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
