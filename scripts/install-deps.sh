#!/usr/bin/env bash
# Installs every Debian 12 package veer needs to build, test and demo.
# Idempotent: packages already present are left alone; apt-get update runs
# only when something is missing.
set -euo pipefail
# Root by `su` without `-` keeps the user's PATH, which lacks the sbin folders (dpkg needs ldconfig and
# start-stop-daemon from there, the tests sysctl and ethtool): add them.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH" ;; esac

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config git
  clang llvm                      # BPF programs (clang -target bpf), llvm-strip
  # BPF userspace
  libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  # libraries (see README "Libraries")
  libyaml-cpp-dev nlohmann-json3-dev libboost-dev libboost-program-options-dev
  libspdlog-dev libfmt-dev libsystemd-dev
  libssl-dev                      # TLS to etcd (cluster.tls), PEM checks of the config
  # tests
  libgtest-dev googletest
  # testbed and e2e
  iproute2 ethtool procps psmisc python3 python3-yaml curl util-linux
  # packaging and the node service (CPack DEB shlibdeps, postinst group, systemd-analyze verify; the unit
  # under a real systemd in a systemd-nspawn container: ctest e2e_systemd)
  dpkg-dev adduser systemd systemd-container
  # man pages: scdoc turns packaging/man/*.scd into roff at build time; man-db and mandoc render and lint
  # them (ctest package_man_pages); bash-completion loads the packaged completion (ctest e2e_package)
  scdoc man-db mandoc bash-completion
  # `vagrant validate` of vagrant/Vagrantfile (ctest vagrant_validate)
  vagrant vagrant-libvirt
  # VM harness (scripts/vm-test.sh): QEMU, the initramfs (static busybox, cpio), kernel package
  # unpacking (dpkg -x, xz, depmod/modprobe from kmod) and apt's keyring for the private sources
  qemu-system-x86 busybox-static cpio xz-utils zstd kmod debian-archive-keyring
  # bench/race: the peers veer is raced against (nginx stream, HAProxy, nftables, iptables) and wrk
  wrk nginx-light libnginx-mod-stream haproxy nftables iptables
  # the fleet mode (issue 11): etcd 3.4, started by the tests on loopback with its data in a temporary
  # folder, and etcdctl to look at what veer wrote
  etcd-server etcd-client
  openssl                         # the etcd TLS tests make their CA and certificates with it
  # Prometheus 2.42 and promtool: `promtool check/test rules` of packaging/prometheus, the dashboard's
  # queries parsed (ctest promtool_*, grafana_dashboard_check) and a real Prometheus scraping the testbed
  # (tests/e2e/veer_prometheus.py, e2e_prometheus), started by the tests in a namespace
  prometheus
  # the live view (docs/view.md): e2e_live_view renders veerd's page and `veerctl report`'s file in
  # headless chromium and asserts on the DOM and takes screenshots
  chromium
)
# Packages whose postinst would start a system-wide service listening on the host (port 80, etcd's 2379
# etc.): bench/race runs them only inside its own network namespaces, the fleet tests their own etcd, the
# Prometheus tests their own prometheus (the package's would listen on :9090 and scrape the host).
SERVICE_PACKAGES=(nginx-light haproxy etcd-server prometheus)

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
# invoke-rc.d asks /usr/sbin/policy-rc.d before it starts a service: exit 101 = "not allowed", so no
# postinst starts nginx or haproxy. A policy already there is left as it is.
POLICY_RC=/usr/sbin/policy-rc.d
policy_created=0
if [ ! -e "$POLICY_RC" ]; then
  printf '#!/bin/sh\n# temporary, from veer scripts/install-deps.sh\nexit 101\n' >"$POLICY_RC"
  chmod 755 "$POLICY_RC"
  policy_created=1
  trap 'rm -f "$POLICY_RC"' EXIT
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Not started, and not started at boot either (systemd hosts): only the ones installed just now.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for p in "${SERVICE_PACKAGES[@]}"; do
    if printf '%s\n' "${missing[@]}" | grep -qx -- "$p"; then
      unit=${p%-light}
      unit=${unit%-server}  # etcd-server's unit is etcd.service
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
if [ "$policy_created" = 1 ]; then rm -f "$POLICY_RC"; trap - EXIT; fi
