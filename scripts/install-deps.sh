#!/usr/bin/env bash
# Installs every Debian 12 package veer needs to build, test and demo.
# Idempotent: packages already present are left alone; apt-get update runs
# only when something is missing.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config git
  clang llvm                      # BPF programs (clang -target bpf), llvm-strip
  # BPF userspace
  libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  # libraries (see README "Libraries")
  libyaml-cpp-dev nlohmann-json3-dev libboost-dev libboost-program-options-dev
  libspdlog-dev libfmt-dev libsystemd-dev
  # tests
  libgtest-dev googletest
  # testbed and e2e
  iproute2 ethtool procps psmisc python3 python3-yaml curl util-linux
  # packaging and the node service (CPack DEB shlibdeps, postinst group, systemd-analyze verify)
  dpkg-dev adduser systemd
  # `vagrant validate` of vagrant/Vagrantfile (ctest vagrant_validate)
  vagrant vagrant-libvirt
  # VM harness (scripts/vm-test.sh): QEMU, the initramfs (static busybox, cpio), kernel package
  # unpacking (dpkg -x, xz, depmod/modprobe from kmod) and apt's keyring for the private sources
  qemu-system-x86 busybox-static cpio xz-utils zstd kmod debian-archive-keyring
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
