#!/usr/bin/env bash
# Runs every test layer of veer on this machine, as root:
#   unit  (tests/unit, no privileges)
#   bpf   (tests/bpf, BPF_PROG_TEST_RUN with crafted packets; userspace/dataplane selftest)
#   e2e   (tests/e2e, network-namespace testbed with real TCP/UDP traffic)
# Usage (as root): scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit
set -euo pipefail
# Root by `su` without `-` keeps the user's PATH, which lacks the sbin folders (dpkg needs ldconfig and
# start-stop-daemon from there, the tests sysctl and ethtool): add them.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH" ;; esac
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the bpf and e2e layers need root (log in as root or use su -, then scripts/test.sh)" >&2
  exit 2
fi

scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"

# One ctest run over all layers so the summary line covers everything.
# Serial on purpose: the e2e cases each build a testbed of namespaces and
# time-sensitive traffic; running them side by side on 2 cores skews them.
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 900 "$@"
