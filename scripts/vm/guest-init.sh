#!/bin/bash
# Stage 2 of the VM harness, PID 1 inside the guest, run from the host's root (read-only 9p under a
# tmpfs overlay; see scripts/vm/initramfs-init). It mounts what the tests need, loads the test
# modules, runs the command that scripts/vm-test.sh left in the run directory with its output on the
# second serial port, writes the exit marker there and powers the guest off.
# Kernel command line: veer.run=RUN_DIR (holds command.sh and env.sh), veer.token=T (exit marker).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

run_dir='' token=''
mount -t proc proc /proc
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    veer.run=*) run_dir=${arg#veer.run=} ;;
    veer.token=*) token=${arg#veer.token=} ;;
  esac
done
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# A fresh /run: the host's sockets, pid files and testbed state there are not the guest's. /tmp stays
# the host's (copy-on-write in the overlay), so a checkout or cache under /tmp works in the guest too.
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true

out=/dev/ttyS1
stty -F "$out" raw -echo -opost 2>/dev/null || true
# Everything from here on goes to the test output port, which the host prints.
exec >"$out" 2>&1

power_off() {
  sync
  echo o >/proc/sysrq-trigger
  # The 9p root goes away while the guest powers off: a failing exec here is expected.
  sleep 10 2>/dev/null
  # Still here: exiting PID 1 panics, panic=-1 reboots, and QEMU runs with -no-reboot.
  exit 1
}

finish() {
  # A fresh descriptor: the old one is dead if the port was hung up meanwhile.
  exec >"$out" 2>&1
  # On a line of its own even when the command's output did not end with a newline.
  printf '\nVEER-VM-EXIT %s %s\n' "$token" "$1"
  power_off
}

if [ -z "$run_dir" ] || [ ! -f "$run_dir/command.sh" ]; then
  echo "vm guest: no run directory on the kernel command line (veer.run=$run_dir)"
  finish 125
fi

ip link set lo up
echo 1 >/proc/sys/kernel/panic_on_oops

# Modules the tests use; anything else is autoloaded on demand through /sbin/modprobe, which sees
# the kernel package's modules under /lib/modules/$(uname -r).
for m in veth sch_ingress cls_bpf act_bpf; do
  modprobe "$m" || echo "vm guest: modprobe $m failed"
done

echo "vm guest: $(uname -r), $(nproc) CPUs, ready after $(cut -d' ' -f1 /proc/uptime) s of guest uptime"

# shellcheck disable=SC1091
[ -f "$run_dir/env.sh" ] && . "$run_dir/env.sh"
cd "${VEER_VM_WORKDIR:-/}" || finish 125
guest_timeout=${VEER_VM_GUEST_TIMEOUT:-840}
# In a session of its own, without a controlling terminal: a hangup of the serial port (seen once, mid
# e2e run, under a heavily loaded host) cannot signal the tests.
setsid -w timeout -k 10 "$guest_timeout" bash "$run_dir/command.sh" </dev/null
rc=$?
[ "$rc" -eq 124 ] && echo "vm guest: command timed out after ${guest_timeout} s"
finish "$rc"
