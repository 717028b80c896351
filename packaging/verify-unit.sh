#!/usr/bin/env bash
# Renders veerd.service.in for binaries in SBINDIR/BINDIR and runs
# `systemd-analyze verify` on it. Any diagnostic fails: verify exits 0 on
# warnings such as an unknown key or a bad value, which must not pass.
#   packaging/verify-unit.sh UNIT_IN SBINDIR BINDIR
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 UNIT_IN SBINDIR BINDIR" >&2; exit 2; }
unit_in=$1 sbindir=$2 bindir=$3
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s|@VEER_SBINDIR@|$sbindir|g" -e "s|@VEER_BINDIR@|$bindir|g" \
    -e "s|@VEER_SYSCONFDIR@|/etc|g" -e "s|@VEER_DOCDIR@|/usr/share/doc/veer|g" "$unit_in" > "$work/veerd.service"
if grep -n '@[A-Z_]*@' "$work/veerd.service"; then echo "unrendered placeholder in the unit" >&2; exit 1; fi
set +e
out=$(cd "$work" && systemd-analyze verify --man=no "$work/veerd.service" 2>&1)
rc=$?
set -e
echo "systemd-analyze verify: exit $rc"
[ -z "$out" ] || printf '%s\n' "$out"
[ $rc -eq 0 ] && [ -z "$out" ]
