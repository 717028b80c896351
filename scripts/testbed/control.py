#!/usr/bin/env python3
"""Reads or changes a testbed backend's model knobs (Python 3 stdlib only; run as root for --prefix).

  control.py --prefix P --variant canary                         print the knobs (JSON)
  control.py --prefix P --variant canary latency=fixed:300 error_rate=0.02
  control.py --prefix P --variant canary reset=true              all knobs off
  control.py --prefix P --variant blue predictions=cat:0.7,dog:0.3
  control.py --prefix P --variant canary latency=fixed:300 latency_clients=10.0.3.0/24,fd00:3::/64
                                                                 slow only for those clients ("all": every one)
  control.py --host 10.1.3.2 latency=normal:50:5                 from a namespace that routes to it

With --prefix, it runs itself in the namespace P-VARIANT (ip netns exec) and talks to 127.0.0.1. The
changes are POSTed as one JSON object to /control, so they apply together or not at all (KEYs and VALUEs:
see model.py). Prints the backend's answer; exits 0 when it says ok, 1 otherwise.
"""
import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", help="testbed prefix: run inside the namespace PREFIX-VARIANT")
    ap.add_argument("--variant", help="with --prefix: blue, green or canary")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("changes", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args()
    changes = {}
    for item in args.changes:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"expected KEY=VALUE, got {item!r}")
        if key in changes:
            ap.error(f"{key} given twice")
        changes[key] = value
    if args.prefix:
        if not args.variant:
            ap.error("--prefix needs --variant")
        cmd = ["ip", "netns", "exec", f"{args.prefix}-{args.variant}", sys.executable, os.path.abspath(__file__),
               "--host", args.host, "--port", str(args.port), "--timeout", str(args.timeout), *args.changes]
        sys.exit(subprocess.run(cmd).returncode)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/control"
    data = json.dumps(changes).encode() if changes else None
    request = urllib.request.Request(url, data=data, method="POST" if changes else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as resp:
            answer = json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read().decode() or "{}")
    except (OSError, ValueError) as exc:
        print(f"control: {url}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(answer))
    sys.exit(0 if answer.get("ok") else 1)


if __name__ == "__main__":
    main()
