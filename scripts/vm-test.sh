#!/usr/bin/env bash
# Runs veer's tests (or any command) inside a QEMU guest booting a Debian kernel package.
#
#   scripts/vm-test.sh [--kernel 6.1|6.12] [--timeout S] [--build-dir DIR] [--accel tcg|kvm]
#                      [--cpus N] [--memory MB] [--labels REGEX] [--tests REGEX] [--exclude REGEX]
#                      [COMMAND...]
#
# The kernel (6.1 from bookworm, 6.12 from bookworm-backports) is downloaded with a private apt
# configuration and unpacked (dpkg -x), never installed. The guest's root is this machine's root,
# read-only over virtio-9p under a tmpfs overlay: the build is visible at the same path, binaries run
# unchanged, and whatever the guest writes stays in the guest. Without COMMAND the guest runs ctest in
# the build dir (default: $BUILD_DIR or build/, built beforehand) on the tests labelled --labels
# (default ^(bpf|e2e)$: the bpf and e2e layers), narrowed to names matching --tests if given and to
# names not matching --exclude if given.
# The exit status is the guest command's (124 if QEMU or the command timed out, 125 for a harness
# failure). The command's output streams to stdout; the guest console is printed on failure.
#
# Env: VEER_VM_CACHE (kernels, initramfs, run logs; default .vm/ in the repo, gitignored),
#      VEER_VM_KEEP_RUNS (run dirs kept, default 4); VEER_* variables are passed to the guest command.
# Docs: docs/kernels.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
kernel=6.1
timeout_s=900
build_dir=${BUILD_DIR:-build}
accel=${VEER_VM_ACCEL:-tcg}
cpus=2
memory=2048
labels=${VEER_VM_LABELS:-'^(bpf|e2e)$'}
tests=${VEER_VM_TESTS:-}
exclude=${VEER_VM_EXCLUDE:-}

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=${2:?}; shift 2 ;;
    --kernel=*) kernel=${1#*=}; shift ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --timeout=*) timeout_s=${1#*=}; shift ;;
    --build-dir) build_dir=${2:?}; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    --accel) accel=${2:?}; shift 2 ;;
    --accel=*) accel=${1#*=}; shift ;;
    --cpus) cpus=${2:?}; shift 2 ;;
    --memory) memory=${2:?}; shift 2 ;;
    --labels) labels=${2:?}; shift 2 ;;
    --labels=*) labels=${1#*=}; shift ;;
    --tests) tests=${2:?}; shift 2 ;;
    --tests=*) tests=${1#*=}; shift ;;
    --exclude) exclude=${2:?}; shift 2 ;;
    --exclude=*) exclude=${1#*=}; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "vm-test: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done

case "$kernel" in 6.1|6.12) ;; *) echo "vm-test: --kernel must be 6.1 or 6.12, not '$kernel'" >&2; exit 2 ;; esac
case "$accel" in tcg|kvm) ;; *) echo "vm-test: --accel must be tcg or kvm, not '$accel'" >&2; exit 2 ;; esac
[[ "$timeout_s" =~ ^[0-9]+$ ]] && [ "$timeout_s" -ge 60 ] ||
  { echo "vm-test: --timeout must be a number of seconds >= 60" >&2; exit 2; }
[[ "$cpus" =~ ^[1-9][0-9]*$ ]] || { echo "vm-test: --cpus must be a positive number" >&2; exit 2; }
[[ "$memory" =~ ^[0-9]+$ ]] && [ "$memory" -ge 512 ] || { echo "vm-test: --memory must be >= 512 (MB)" >&2; exit 2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "vm-test: run as root (the guest runs the bpf and e2e layers as root; apt-get download)" >&2
  exit 2
fi
for tool in qemu-system-x86_64 busybox cpio xz modprobe depmod dpkg apt-get timeout; do
  command -v "$tool" >/dev/null || { echo "vm-test: $tool missing: run scripts/install-deps.sh" >&2; exit 2; }
done
busybox_bin=$(readlink -f "$(command -v busybox)")
# The initramfs has no libc: busybox must be the static build (package busybox-static).
if LC_ALL=C readelf -l "$busybox_bin" 2>/dev/null | grep -q 'INTERP'; then
  echo "vm-test: $busybox_bin is dynamically linked: install busybox-static" >&2
  exit 2
fi

cache=${VEER_VM_CACHE:-$repo/.vm}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# The guest sees the host root, but with its own /run, /dev, /proc and /sys.
for p in "$repo" "$cache"; do
  case "$p/" in
    /run/*|/dev/*|/proc/*|/sys/*)
      echo "vm-test: $p is hidden in the guest (its own /run, /dev...): use another VEER_VM_CACHE or clone" >&2
      exit 2 ;;
  esac
done

log() { echo "vm: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The default command needs a build; a COMMAND may not.
if [ $# -eq 0 ]; then
  build_abs=$(cd "$repo" && realpath -m "$build_dir")
  if [ ! -f "$build_abs/CTestTestfile.cmake" ]; then
    echo "vm-test: no build in $build_abs (build first: cmake -S . -B $build_dir && cmake --build $build_dir)" >&2
    exit 2
  fi
fi

t_start=$(now)

# 1. The kernel package.
kdir=$("$repo/scripts/vm/fetch-kernel.sh" "$kernel" "$cache") ||
  { echo "vm-test: could not get a $kernel kernel" >&2; exit 125; }
kver=$(ls "$kdir/lib/modules")
bzimage=$kdir/boot/vmlinuz-$kver

# 2. The ELF vmlinux, cut out of the bzImage's compressed payload (xz on 6.1, zstd on 6.12): QEMU
#    boots it through PVH (Debian builds with CONFIG_PVH), which skips the decompressor (seconds under
#    TCG). Falls back to the bzImage when no payload decompresses to an ELF file.
boot_image=$bzimage
vmlinux=$kdir/vmlinux
if [ ! -s "$vmlinux" ]; then
  for format in '\xfd7zXZ\x00:xz -dc' '\x28\xb5\x2f\xfd:zstd -qdc'; do
    magic=${format%%:*} decompress=${format#*:}
    offset=$(LC_ALL=C grep -obUaP "$magic" "$bzimage" | head -n1 | cut -d: -f1 || true)
    [ -n "$offset" ] || continue
    # The decompressor complains about the bytes after the payload; the ELF check is what counts.
    tail -c +"$((offset + 1))" "$bzimage" | $decompress >"$vmlinux.tmp" 2>/dev/null || true
    if [ "$(head -c 4 "$vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
      mv "$vmlinux.tmp" "$vmlinux"
      break
    fi
  done
  rm -f "$vmlinux.tmp"
fi
[ -s "$vmlinux" ] && boot_image=$vmlinux

# 3. The initramfs: static busybox, the init script, and the modules that reach the 9p root.
initramfs=$kdir/initramfs.cpio.gz
init_src=$repo/scripts/vm/initramfs-init
if [ ! -s "$initramfs" ] || [ "$init_src" -nt "$initramfs" ] || [ "$busybox_bin" -nt "$initramfs" ]; then
  stage=$(mktemp -d "$cache/initramfs.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/bin" "$stage/modules"
  cp "$busybox_bin" "$stage/bin/busybox"
  cp "$init_src" "$stage/init"
  chmod 755 "$stage/init"
  : >"$stage/modules/order"
  # virtio_pci and virtio are built in on 6.12 and modules on 6.1; modprobe knows which.
  while read -r verb path _; do
    [ "$verb" = insmod ] || continue
    name=$(basename "$path")
    name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
    grep -qx "$name" "$stage/modules/order" && continue
    case "$path" in
      *.xz) xz -dc "$path" >"$stage/modules/$name" ;;
      *.zst) zstd -qdc "$path" >"$stage/modules/$name" ;;
      *.gz) gzip -dc "$path" >"$stage/modules/$name" ;;
      *) cp "$path" "$stage/modules/$name" ;;
    esac
    echo "$name" >>"$stage/modules/order"
  done < <(modprobe -d "$kdir" -S "$kver" --show-depends -a virtio_pci 9pnet_virtio 9p overlay)
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$initramfs.tmp"
  mv "$initramfs.tmp" "$initramfs"
  rm -rf "$stage"
  trap - EXIT
fi

# 4. The run directory: the command, the environment, the logs.
run_dir=$cache/runs/$(date +%Y%m%d-%H%M%S)-$kernel-$$
mkdir -p "$run_dir"
token=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
guest_timeout=$((timeout_s - 60))
{
  echo "export VEER_VM_KERNEL=$kernel VEER_VM_GUEST_TIMEOUT=$guest_timeout"
  # The caller's VEER_* settings (e.g. test knobs), except the harness's own.
  export -p | grep -E '^declare -x VEER_' | grep -vE '^declare -x VEER_VM_(KERNEL|GUEST_TIMEOUT|CACHE)=' || true
} >"$run_dir/env.sh"
if [ $# -eq 0 ]; then
  # Serial, like scripts/test.sh: e2e cases measure traffic. The build tree is writable in the guest
  # (tmpfs overlay), so ctest keeps its Testing/ dir there; nothing reaches the host's build dir.
  ctest_args=(-L "$labels" --output-on-failure --timeout "$guest_timeout")
  [ -n "$tests" ] && ctest_args+=(-R "$tests")
  [ -n "$exclude" ] && ctest_args+=(-E "$exclude")
  printf 'cd %q && exec ctest' "$build_abs" >"$run_dir/command.sh"
  printf ' %q' "${ctest_args[@]}" >>"$run_dir/command.sh"
  echo >>"$run_dir/command.sh"
  echo "export VEER_VM_WORKDIR=$(printf %q "$build_abs")" >>"$run_dir/env.sh"
else
  printf '%q ' "$@" >"$run_dir/command.sh"
  echo >>"$run_dir/command.sh"
  echo "export VEER_VM_WORKDIR=$(printf %q "$PWD")" >>"$run_dir/env.sh"
fi

console=$run_dir/console.log
output=$run_dir/output.log
: >"$console"; : >"$output"

accel_opts=(-accel "tcg,thread=multi" -cpu max)
[ "$accel" = kvm ] && accel_opts=(-accel kvm -cpu "${VEER_VM_KVM_CPU:-host}")
cmdline="console=ttyS0 panic=-1 oops=panic mitigations=off acpi=noirq"
# VEER_VM_VERBOSE=1 keeps the kernel's boot messages on the console (timing a boot).
[ "${VEER_VM_VERBOSE:-0}" = 1 ] || cmdline+=" quiet"
cmdline+=" veer.stage2=$repo/scripts/vm/guest-init.sh veer.moddir=$kdir/lib/modules/$kver"
cmdline+=" veer.run=$run_dir veer.token=$token"
qemu=(qemu-system-x86_64 -machine q35 "${accel_opts[@]}" -smp "$cpus" -m "$memory"
      -nodefaults -display none -monitor none -no-reboot
      -serial "file:$console" -serial "file:$output"
      -kernel "$boot_image" -initrd "$initramfs" -append "$cmdline"
      -virtfs "local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap")
printf '%q ' "${qemu[@]}" >"$run_dir/qemu.cmd"; echo >>"$run_dir/qemu.cmd"
log "kernel $(basename "$kdir") ($kver), $accel, $cpus vCPUs, timeout ${timeout_s} s, run dir $run_dir"
log "guest command: $(cat "$run_dir/command.sh")"

t_qemu=$(now)
timeout -k 10 "$timeout_s" "${qemu[@]}" >"$run_dir/qemu.log" 2>&1 &
qemu_pid=$!
stop_qemu() { kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; }
trap 'stop_qemu; log "interrupted: QEMU stopped"; exit 130' INT TERM HUP
# Stream the command's output while the guest runs.
tail -n +1 -F "$output" --pid="$qemu_pid" 2>/dev/null | grep -v --line-buffered "^VEER-VM-EXIT $token " &
tail_pid=$!
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
trap - INT TERM HUP
wait "$tail_pid" 2>/dev/null || true

rc=$(sed -n "s/^VEER-VM-EXIT $token \([0-9]*\).*/\1/p" "$output" | tail -n1)
if [ -z "$rc" ]; then
  if [ "$qemu_rc" -eq 124 ]; then
    log "QEMU killed after the ${timeout_s} s timeout"
    rc=124
  else
    log "the guest ended without an exit status (QEMU exit $qemu_rc)"
    rc=125
  fi
fi
log "guest finished with status $rc after $(elapsed "$t_qemu") s in QEMU ($(elapsed "$t_start") s in all)"
if [ "$rc" -ne 0 ]; then
  echo "----- guest console ($console) -----" >&2
  cat "$console" >&2
  if [ -s "$run_dir/qemu.log" ]; then
    echo "----- QEMU ($run_dir/qemu.log) -----" >&2
    cat "$run_dir/qemu.log" >&2
  fi
  echo "----- QEMU command -----" >&2
  cat "$run_dir/qemu.cmd" >&2
fi

# Keep the newest few run directories (logs) and drop the rest.
keep=${VEER_VM_KEEP_RUNS:-4}
ls -1d "$cache"/runs/*/ 2>/dev/null | sort | head -n "-$keep" | xargs -r rm -rf
exit "$rc"
