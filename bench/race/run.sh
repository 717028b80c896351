#!/usr/bin/env bash
# Races veer against its peers on a fresh netns testbed per (peer, round); see bench/race/README.md.
#
#   sudo bench/race/run.sh [--rounds N] [--seconds S] [--peers a,b,...] [--out DIR]
#                          [--connections C] [--wrk-threads T] [--udp-flows F]
#   sudo bench/race/run.sh --cleanup        (removes what a killed run left: vrace-* namespaces, /run/vrace)
#
# Build dir: $VEER_BUILD_DIR (default build/ in the repo): userspace/daemon/veerd, userspace/ctl/veerctl,
# bench/race/veer_udpgen (without it the UDP figures are n/a).
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BUILD="${VEER_BUILD_DIR:-$REPO/build}"

if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: run as root (network namespaces, BPF)" >&2
  exit 1
fi

# race.py cleans up after itself (also on SIGINT/SIGTERM); this covers a driver that died hard.
cleanup() { python3 "$HERE/race.py" --build "$BUILD" --cleanup || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 "$HERE/race.py" --build "$BUILD" "$@"
