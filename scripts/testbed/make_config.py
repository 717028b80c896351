#!/usr/bin/env python3
"""Writes a veerd config for testbed prefix P from examples/testbed.yaml (stdlib only).

  make_config.py --prefix P [--template examples/testbed.yaml] [--out FILE]
  make_config.py --prefix P --node N [--lease-ttl 2s] [--template ...] [--out FILE]     (fleet testbed)

Rewrites "/run/veer-testbed/" to "/run/P-testbed/" in socket, pin_path and state_dir. (metrics_listen
needs no change: veerd runs inside P-lb, whose loopback is its own.) Line numbers are unchanged, so tests
can point at lines of the template.

With --node N, the config of node N of the fleet testbed (scripts/testbed.sh up --fleet): veerd runs in
P-lbN on its interfaces [lbc, fab], socket /run/P-testbed/lbN/veer.sock, state_dir
/run/P-testbed/lbN/state, pins under /run/P-testbed/bpffs/lbN (the testbed's bpffs, shared by the nodes,
one folder each), metrics_listen as in the template (each node's own loopback), and a cluster: section
appended (endpoints: the three etcd members, node_name node-N, prefix /veer, lease_ttl); the template's
lines keep their numbers.
"""
import argparse
import os
import re
import sys

DEFAULT_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                                "testbed.yaml")
PREFIX_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}"
ETCD_MEMBERS = 3
FLEET_MAX = 9
FLEET_INTERFACES = "[lbc, fab]"


def etcd_endpoints():
    """The fleet testbed's etcd client URLs (member M at 10.2.M.2)."""
    return [f"http://10.2.{m}.2:2379" for m in range(1, ETCD_MEMBERS + 1)]


def render(template_text, prefix):
    if not re.fullmatch(PREFIX_RE, prefix):
        raise ValueError(f"bad prefix {prefix!r}")
    path_key = re.compile(r"^(\s*(?:socket|pin_path|state_dir):\s*)/run/veer-testbed/")
    return "".join(path_key.sub(rf"\g<1>/run/{prefix}-testbed/", line)
                   for line in template_text.splitlines(keepends=True))


def render_fleet(template_text, prefix, node, lease_ttl="2s", cluster_prefix="/veer"):
    """TEMPLATE_TEXT (written for the single-node testbed "veer") as node NODE of the fleet of PREFIX."""
    if not re.fullmatch(PREFIX_RE, prefix):
        raise ValueError(f"bad prefix {prefix!r}")
    if not isinstance(node, int) or not 1 <= node <= FLEET_MAX:
        raise ValueError(f"bad node {node!r}: 1..{FLEET_MAX}")
    if re.search(r"(?m)^cluster:", template_text):
        raise ValueError("the template has a cluster: section already")
    base = f"/run/{prefix}-testbed"
    rules = [
        (re.compile(r"^(\s*(?:socket|state_dir):\s*)/run/veer-testbed/"), rf"\g<1>{base}/lb{node}/"),
        (re.compile(r"^(\s*pin_path:\s*)/run/veer-testbed/bpffs(?=/|\s|$)"), rf"\g<1>{base}/bpffs/lb{node}"),
        (re.compile(r"^(\s*interfaces:\s*)\[[^\]]*\]"), rf"\g<1>{FLEET_INTERFACES}"),
    ]
    out = []
    for line in template_text.splitlines(keepends=True):
        for pattern, repl in rules:
            line = pattern.sub(repl, line)
        out.append(line)
    text = "".join(out)
    if text and not text.endswith("\n"):
        text += "\n"
    endpoints = ", ".join(etcd_endpoints())
    text += ("\n# fleet testbed: node %d of %s (scripts/testbed.sh up --fleet)\n"
             "cluster:\n"
             "  endpoints: [%s]\n"
             "  node_name: node-%d\n"
             "  prefix: %s\n"
             "  lease_ttl: %s\n") % (node, prefix, endpoints, node, cluster_prefix, lease_ttl)
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--template", default=DEFAULT_TEMPLATE)
    ap.add_argument("--node", type=int, help="fleet testbed: the config of node N (1..9)")
    ap.add_argument("--lease-ttl", default="2s", help="with --node: cluster.lease_ttl (default 2s)")
    ap.add_argument("--out", help="default: stdout")
    args = ap.parse_args()
    with open(args.template) as f:
        template = f.read()
    try:
        text = render(template, args.prefix) if args.node is None else \
            render_fleet(template, args.prefix, args.node, args.lease_ttl)
    except ValueError as exc:
        ap.error(str(exc))
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, args.out)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
