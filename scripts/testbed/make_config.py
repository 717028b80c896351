#!/usr/bin/env python3
"""Writes a veerd config for testbed prefix P from examples/testbed.yaml (stdlib only).

  make_config.py --prefix P [--template examples/testbed.yaml] [--out FILE]

Rewrites "/run/veer-testbed/" to "/run/P-testbed/" in socket, pin_path and state_dir. (metrics_listen
needs no change: veerd runs inside P-lb, whose loopback is its own.) Line numbers are unchanged, so tests
can point at lines of the template.
"""
import argparse
import os
import re
import sys

DEFAULT_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                                "testbed.yaml")


def render(template_text, prefix):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", prefix):
        raise ValueError(f"bad prefix {prefix!r}")
    path_key = re.compile(r"^(\s*(?:socket|pin_path|state_dir):\s*)/run/veer-testbed/")
    return "".join(path_key.sub(rf"\g<1>/run/{prefix}-testbed/", line)
                   for line in template_text.splitlines(keepends=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--template", default=DEFAULT_TEMPLATE)
    ap.add_argument("--out", help="default: stdout")
    args = ap.parse_args()
    with open(args.template) as f:
        text = render(f.read(), args.prefix)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, args.out)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
