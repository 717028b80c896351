#!/usr/bin/env bash
# Races veer against its peers on a fresh netns testbed per (peer, round); see bench/race/README.md.
#
#   bench/race/run.sh [--rounds N] [--seconds S] [--peers a,b,...] [--out DIR]
#                          [--connections C] [--wrk-threads T] [--udp-flows F]
#   bench/race/run.sh --cleanup        (removes what a killed run left: vrace-* namespaces, /run/vrace)
#
# Build dir: $VEER_BUILD_DIR (default build/ in the repo): userspace/daemon/veerd, userspace/ctl/veerctl,
# bench/race/veer_udpgen; built there first (after scripts/install-deps.sh) when any is missing.
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

# From a fresh clone: dependencies and the three binaries the race needs are built first (once).
needs_build=0
for f in userspace/daemon/veerd userspace/ctl/veerctl bench/race/veer_udpgen; do
  [ -x "$BUILD/$f" ] || needs_build=1
done
case " $* " in *" --cleanup "*|*" --report "*|*" -h "*|*" --help "*) needs_build=0 ;; esac
if [ "$needs_build" = 1 ]; then
  echo "run.sh: building veerd, veerctl and veer_udpgen in $BUILD (scripts/install-deps.sh first)" >&2
  "$REPO/scripts/install-deps.sh"
  cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target veerd veerctl veer_udpgen
fi

python3 "$HERE/race.py" --build "$BUILD" "$@"
