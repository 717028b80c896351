#!/usr/bin/env bash
# Fetches and unpacks a Debian kernel image package for the VM harness, without installing it.
#   scripts/vm/fetch-kernel.sh SERIES CACHE_DIR     SERIES: 6.1 (bookworm) or 6.12 (bookworm-backports)
# Prints the unpacked directory (it holds boot/vmlinuz-*, lib/modules/<ver>/ with modules.dep).
#
# apt runs with a private sources list, lists and cache under CACHE_DIR/apt-SERIES: the host's apt
# configuration, lists and package state are never touched, and nothing is installed (dpkg -x only).
# When the mirror cannot be reached, an already unpacked kernel of that series is reused.
# Env: VEER_VM_MIRROR (default http://deb.debian.org/debian), VEER_VM_SECURITY_MIRROR (default
# http://deb.debian.org/debian-security), VEER_VM_KERNEL_PKG (an exact package name, to pin an ABI).
set -euo pipefail

series=${1:?usage: fetch-kernel.sh 6.1|6.12 CACHE_DIR}
cache=${2:?usage: fetch-kernel.sh 6.1|6.12 CACHE_DIR}
cache=$(realpath -m "$cache")
mirror=${VEER_VM_MIRROR:-http://deb.debian.org/debian}
security_mirror=${VEER_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

case "$series" in
  # bookworm-security carries the newest 6.1 ABI (the point release lags behind it).
  6.1)  suites="bookworm bookworm-updates bookworm-security" ;;
  6.12) suites="bookworm-backports" ;;
  *) echo "fetch-kernel: unknown kernel series '$series' (expected 6.1 or 6.12)" >&2; exit 2 ;;
esac

log() { echo "vm: $*" >&2; }

aptdir=$cache/apt-$series
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/parts" "$cache/debs" "$cache/kernels"
: >"$aptdir/sources.list"
for s in $suites; do
  case "$s" in
    *-security) echo "deb [signed-by=$keyring] $security_mirror $s main" ;;
    *)          echo "deb [signed-by=$keyring] $mirror $s main" ;;
  esac >>"$aptdir/sources.list"
done
apt_opts=(
  -o "Dir::Etc::SourceList=$aptdir/sources.list"
  -o "Dir::Etc::SourceParts=$aptdir/parts"
  -o "Dir::State::Lists=$aptdir/lists"
  -o "Dir::Cache=$aptdir/cache"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root"
)

reuse_cached() {
  local found
  found=$(ls -d "$cache/kernels/linux-image-$series"[.-]*-amd64-unsigned_* 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$found" ] && [ -f "$found/.unpacked" ]; then
    log "$1; reusing cached $(basename "$found")"
    echo "$found"
    exit 0
  fi
  echo "fetch-kernel: $1 and no cached $series kernel in $cache/kernels" >&2
  exit 1
}

# A kernel resolved less than a day ago is used without asking the mirror again (apt-get update and
# apt-cache take several seconds); VEER_VM_REFRESH=1 asks anyway.
resolved=$aptdir/resolved
if [ "${VEER_VM_REFRESH:-0}" != 1 ] && [ -z "${VEER_VM_KERNEL_PKG:-}" ] && [ -s "$resolved" ] &&
   [ -n "$(find "$resolved" -mmin -1440)" ] && [ -f "$(cat "$resolved")/.unpacked" ]; then
  cat "$resolved"
  exit 0
fi

if ! apt-get "${apt_opts[@]}" -q update >"$aptdir/update.log" 2>&1; then
  reuse_cached "apt-get update for $suites failed (see $aptdir/update.log)"
fi

pkg=${VEER_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
  # linux-image-amd64 depends on the current ABI's signed image, e.g. linux-image-6.1.0-56-amd64;
  # its -unsigned twin carries the same kernel without the secure-boot signature.
  abi=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
  [ -n "$abi" ] || reuse_cached "no linux-image-amd64 in $suites"
  pkg=$abi-unsigned
fi
case "$pkg" in
  linux-image-"$series"[.-]*) ;;
  *) echo "fetch-kernel: package $pkg is not a $series kernel" >&2; exit 1 ;;
esac

version=$(apt-cache "${apt_opts[@]}" show "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n1)
[ -n "$version" ] || reuse_cached "package $pkg not found in $suites"
dest=$cache/kernels/${pkg}_$version
if [ -f "$dest/.unpacked" ]; then
  echo "$dest" | tee "$resolved"
  exit 0
fi

deb=$cache/debs/${pkg}_${version//:/%3a}_amd64.deb
if [ ! -s "$deb" ]; then
  log "downloading $pkg $version"
  (cd "$cache/debs" && apt-get "${apt_opts[@]}" -q download "$pkg=$version" >"$aptdir/download.log" 2>&1) ||
    { cat "$aptdir/download.log" >&2; reuse_cached "download of $pkg failed"; }
  deb=$(ls "$cache/debs/${pkg}_"*"_amd64.deb" | sort -V | tail -n1)
fi

log "unpacking $(basename "$deb")"
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
dpkg -x "$deb" "$dest.tmp"
kver=$(ls "$dest.tmp/lib/modules")
# The package's postinst would run depmod; modprobe (in the initramfs builder and in the guest) needs
# modules.dep, so build it inside the unpacked tree.
depmod -b "$dest.tmp" "$kver"
touch "$dest.tmp/.unpacked"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
# The unpacked tree is all the harness needs: the .deb and older unpacked versions of this series
# go (each is 100-400 MB).
rm -f "$deb"
for old in "$cache/kernels/linux-image-$series"[.-]*-amd64-unsigned_*; do
  if [ "$old" != "$dest" ]; then rm -rf "$old"; fi
done
echo "$dest" | tee "$resolved"
