#!/usr/bin/env python3
"""The .deb's veerd.service under a real systemd as PID 1: a systemd-nspawn container booting this machine's
own root (a throw-away overlay of /, a network namespace of its own with a veth, a bpffs of its own at /sys/fs/bpf), the
package installed in it with dpkg, veerd started on the config the package installs (only its interface and
weights changed), reloaded, hung and stopped through systemctl:

- `systemctl start` returns once veerd is READY (Type=notify): the control socket answers at once and
  systemd's status line is veerd's STATUS= (the programs on sd0, tcx);
- WATCHDOG=1 keeps it alive past several WatchdogSec; a hung veerd (SIGSTOP) is killed by the watchdog and
  restarted (Restart=on-failure), adopting the pinned data plane with the weights it had;
- `systemctl reload` applies a changed config; a refused config makes `systemctl reload` fail and changes
  nothing (same process, same weights);
- `systemctl stop` leaves the programs attached (links pinned; socket gone); `veerctl shutdown --unload`
  ends the unit cleanly (inactive, not failed, not restarted) with every pin removed.

This is the unit as shipped (its sandboxing, capability set and paths), not a copy. Runs on the host only
(label "package"): it needs systemd-nspawn (Debian's systemd-container), which the QEMU guests lack. Leaves the
machine as it was: everything lives in a tmpfs, the network namespaces ve2e-sd and ve2e-sdp and the container, all removed
by tearDownClass.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import veer_e2e as e2e
from test_package import build_dir_of, package_installed
from veer_e2e import run

NETNS = "ve2e-sd"        # the container's network namespace (veth sd0)
PEER_NETNS = "ve2e-sdp"  # the other end of the veth (sdp0)
MACHINE = "ve2e-sd"
WATCHDOG_S = 2

SHIPPED_INTERFACES = "interfaces: [eth0]"
SHIPPED_WEIGHTS = "weights: { blue: 95, canary: 5 }"


class TestSystemd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        e2e.require_veer(cls)
        if not shutil.which("systemd-nspawn"):
            raise unittest.SkipTest("systemd-nspawn not found (Debian package systemd-container)")
        if package_installed():
            raise unittest.SkipTest("a veer package is installed on this machine: not touching it")
        cls.work = tempfile.mkdtemp(prefix="veer-e2e-systemd-")
        cls.mounts, cls.nspawn, cls.leader, cls.console = [], None, None, None
        try:
            cls.set_up_container()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def set_up_container(cls):
        w = cls.work
        # The overlay's upper layer is a tmpfs: whatever the container writes (dpkg, /etc/veer, the
        # journal) never reaches this machine's disk. Its lower layer is / itself (the mount only, not the
        # mounts below it, so the tmpfs is not seen through itself).
        run(["mount", "-t", "tmpfs", "veer-e2e-systemd", w])
        cls.mounts.append(w)
        for d in ("upper", "work", "root", "bpf", "deb"):
            os.mkdir(os.path.join(w, d))
        overlay = run(["mount", "-t", "overlay", "overlay", "-o",
                       f"lowerdir=/,upperdir={w}/upper,workdir={w}/work", f"{w}/root"], check=False)
        if overlay.returncode != 0:  # the machine, not the unit: skip, loudly
            raise unittest.SkipTest(f"cannot overlay / here: {overlay.stderr.strip()}")
        cls.mounts.append(f"{w}/root")
        run(["mount", "-t", "bpf", "bpf", f"{w}/bpf"])
        cls.mounts.append(f"{w}/bpf")
        cls.bpffs_before = sorted(os.listdir(f"{w}/bpf"))  # a fresh bpffs has the kernel's *.debug files
        cls.root = f"{w}/root"

        build = build_dir_of(e2e.ARGS.veerd)
        run(["cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", f"{w}/deb"],
            timeout=600)
        debs = [f for f in os.listdir(f"{w}/deb") if f.endswith(".deb")]
        assert len(debs) == 1, debs
        shutil.copy(os.path.join(w, "deb", debs[0]), os.path.join(cls.root, "root", "veer.deb"))
        # A short watchdog so that a hang is seen within the test (the shipped unit says 30 s).
        dropin = os.path.join(cls.root, "etc/systemd/system/veerd.service.d")
        os.makedirs(dropin, exist_ok=True)
        with open(os.path.join(dropin, "watchdog.conf"), "w") as f:
            f.write(f"[Service]\nWatchdogSec={WATCHDOG_S}s\n")

        # The container runs in a network namespace made here (not `ip netns exec`, whose private /sys
        # has no cgroup mounts for nspawn), with one veth into another namespace.
        run(["ip", "netns", "add", NETNS])
        run(["ip", "netns", "add", PEER_NETNS])
        run(["ip", "link", "add", "sd0", "netns", NETNS, "type", "veth", "peer", "name", "sdp0", "netns", PEER_NETNS])
        cls.console = open(os.path.join(w, "console.log"), "w")
        # --keep-unit/--register=no: no machined or bus needed on this side. bpf(2) is outside nspawn's
        # default syscall filter. basic.target: systemd up, no services of this machine's image started.
        cls.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", cls.root, "-M", MACHINE, "--register=no", "--keep-unit",
             f"--network-namespace-path=/run/netns/{NETNS}", "--capability=all", "--system-call-filter=bpf",
             f"--bind={w}/bpf:/sys/fs/bpf", "-b", "--", "systemd.unit=basic.target"],
            stdin=subprocess.DEVNULL, stdout=cls.console, stderr=subprocess.STDOUT, start_new_session=True)

        def booted():
            if cls.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {cls.nspawn.returncode}: {cls.console_tail()}")
            if cls.leader is None:
                kids = run(["pgrep", "-P", str(cls.nspawn.pid)], check=False).stdout.split()
                for pid in kids:
                    with open(f"/proc/{pid}/comm") as comm:
                        is_systemd = comm.read().strip() == "systemd"
                    if is_systemd:
                        cls.leader = int(pid)
                if cls.leader is None:
                    return None
            state = cls.inside("systemctl", "is-system-running", check=False).stdout.strip()
            return state if state in ("running", "degraded") else None
        try:
            state, took = e2e.wait_for("systemd in the container", booted, e2e.scaled(90), 0.2)
        except (AssertionError, RuntimeError) as exc:
            # Booting the machine's own root in a container is the harness, not the unit under test: a
            # machine that cannot do it skips (printed), whatever veerd.service does is checked after this.
            print(f"  SKIP: no systemd container here: {exc}\n{cls.console_tail()}", flush=True)
            raise unittest.SkipTest(f"cannot boot a systemd container here: {exc}") from exc
        print(f"  container booted ({state}) in {took:.1f} s; systemd {cls.inside('systemctl', '--version').stdout.split()[1]}",
              flush=True)

    @classmethod
    def console_tail(cls):
        try:
            with open(os.path.join(cls.work, "console.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    @classmethod
    def inside(cls, *args, check=True, timeout=60):
        """Runs ARGS in the container (all of its namespaces)."""
        return run(["nsenter", "-t", str(cls.leader), "-a", "--", *map(str, args)], check=check, timeout=timeout)

    @classmethod
    def tearDownClass(cls):
        if cls.nspawn is not None and cls.nspawn.poll() is None:
            # SIGTERM: nspawn asks the container's systemd to power off; SIGKILL if that hangs.
            cls.nspawn.send_signal(signal.SIGTERM)
            try:
                cls.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cls.nspawn.pid, signal.SIGKILL)
                cls.nspawn.wait(timeout=10)
        if cls.console:
            cls.console.close()
        for ns in (NETNS, PEER_NETNS):
            run(["ip", "netns", "del", ns], check=False)
        for m in reversed(cls.mounts):
            if run(["umount", m], check=False).returncode != 0:
                run(["umount", "-l", m], check=False)
        shutil.rmtree(cls.work, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------------------------
    def systemctl(self, *args, check=False):
        return self.inside("systemctl", *args, check=check)

    def prop(self, name):
        return self.systemctl("show", "-p", name, "--value", "veerd").stdout.strip()

    def write_config(self, blue, canary):
        """The config the package installed, on the container's veth and with these weights."""
        text = self.shipped_config
        for old, new in ((SHIPPED_INTERFACES, "interfaces: [sd0]"),
                         (SHIPPED_WEIGHTS, f"weights: {{ blue: {blue}, canary: {canary} }}")):
            self.assertEqual(text.count(old), 1, f"the shipped config no longer has {old!r}")
            text = text.replace(old, new)
        with open(os.path.join(self.root, "etc/veer/veer.yaml"), "w") as f:
            f.write(text)

    def applied(self):
        proc = self.inside("veerctl", "--json", "status", "ranker")
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        self.assertTrue(answer["ok"], answer)
        return {v["name"]: v["weight_applied"] for v in answer["result"]["services"][0]["variants"]}

    def links(self):
        d = os.path.join(self.work, "bpf", "veer", "links")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    # --- the test ---------------------------------------------------------------------------------------------
    def test_unit_under_systemd(self):
        self.inside("dpkg", "-i", "/root/veer.deb", timeout=120)
        self.inside("ip", "link", "set", "sd0", "up")
        with open(os.path.join(self.root, "etc/veer/veer.yaml")) as f:
            self.shipped_config = f.read()
        self.write_config(95, 5)

        # 1. start: returns once READY=1 came, i.e. attached and listening
        t0 = time.monotonic()
        start = self.systemctl("start", "veerd")
        took = time.monotonic() - t0
        if start.returncode != 0:
            self.fail(f"systemctl start: {start.stderr}\n" + self.inside("journalctl", "-u", "veerd", "--no-pager",
                                                                          check=False).stdout[-3000:])
        self.assertEqual(self.inside("veerctl", "ping", check=False).returncode, 0, "socket not answering after start")
        status = self.prop("StatusText")
        print(f"  systemctl start: {took:.2f} s; StatusText {status!r}; links {self.links()}", flush=True)
        self.assertEqual(self.prop("ActiveState"), "active")
        self.assertIn("sd0 (tcx)", status)
        self.assertEqual(self.links(), ["sd0:tcx"])
        self.assertEqual(self.applied(), {"blue": "95.00", "canary": "5.00"})
        pid = self.prop("MainPID")

        # 2. the watchdog is fed: alive and the same process after 2.5 x WatchdogSec
        time.sleep(2.5 * WATCHDOG_S)
        self.assertEqual((self.prop("ActiveState"), self.prop("MainPID"), self.prop("NRestarts")), ("active", pid, "0"))

        # 3. reload: a changed config applies; a refused one fails the reload and changes nothing
        self.write_config(80, 20)
        reload = self.systemctl("reload", "veerd")
        self.assertEqual(reload.returncode, 0, reload.stderr)
        self.assertEqual(self.applied(), {"blue": "80.00", "canary": "20.00"})
        self.write_config(80, 21)
        bad = self.systemctl("reload", "veerd")
        print(f"  refused reload: exit {bad.returncode}", flush=True)
        self.assertNotEqual(bad.returncode, 0)
        self.assertEqual((self.prop("ActiveState"), self.prop("MainPID")), ("active", pid))
        self.assertEqual(self.applied(), {"blue": "80.00", "canary": "20.00"})
        self.write_config(80, 20)

        # 4. a hung veerd: the watchdog kills it, Restart=on-failure starts a new one on the same pins
        self.inside("kill", "-STOP", pid)
        hung_at = time.monotonic()

        def restarted():
            return self.prop("NRestarts") == "1" and self.prop("ActiveState") == "active" and \
                self.prop("MainPID") not in (pid, "0")
        e2e.wait_for("watchdog restart", restarted, e2e.scaled(30), 0.2)
        print(f"  hung veerd restarted by the watchdog after {time.monotonic() - hung_at:.1f} s", flush=True)
        journal = self.inside("journalctl", "-u", "veerd", "--no-pager").stdout
        self.assertIn("Watchdog timeout", journal)
        self.assertEqual(self.applied(), {"blue": "80.00", "canary": "20.00"})
        self.assertEqual(self.links(), ["sd0:tcx"])

        # 5. stop: the data plane stays (pinned links), the socket goes
        stop = self.systemctl("stop", "veerd")
        self.assertEqual(stop.returncode, 0, stop.stderr)
        self.assertEqual(self.prop("ActiveState"), "inactive")
        self.assertFalse(os.path.exists(os.path.join(self.root, "run/veer/veer.sock")))
        self.assertEqual(self.links(), ["sd0:tcx"])

        # 6. start adopts; shutdown --unload ends the unit cleanly and removes every pin
        self.assertEqual(self.systemctl("start", "veerd").returncode, 0)
        self.assertEqual(self.applied(), {"blue": "80.00", "canary": "20.00"})
        restarts = self.prop("NRestarts")
        self.inside("veerctl", "shutdown", "--unload")
        e2e.wait_for("veerd exited", lambda: self.prop("ActiveState") in ("inactive", "failed"), e2e.scaled(15), 0.2)
        self.assertEqual((self.prop("ActiveState"), self.prop("Result"), self.prop("NRestarts")),
                         ("inactive", "success", restarts))
        self.assertEqual(sorted(os.listdir(os.path.join(self.work, "bpf"))), self.bpffs_before)


if __name__ == "__main__":
    e2e.main()
