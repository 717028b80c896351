#!/usr/bin/env python3
"""Lifecycle of veerd as a node service, on a fresh testbed (prefix ve2e-life):

1. SIGTERM: veerd exits 0, its socket is gone, the pins and the attached programs stay, new and established
   connections through the VIP keep flowing; a new veerd adopts the pins.
2. `veerctl shutdown` (no --unload): the same as SIGTERM, asked over the socket; the answer arrives first.
3. sd_notify (Type=notify) against a notify socket of our own: READY=1 only once ping answers and the
   programs are attached, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 then READY=1 around SIGHUP and
   around `veerctl reload`, STOPPING=1 on the way out.
4. `veerctl shutdown --unload` with attach xdp (native XDP): veerd exits 0, then none of its programs or maps exist
   (`bpftool prog/map show id`), `ip -d link` and `bpftool net` in the lb namespace show no program on any
   lb interface, the pin folder is gone, and the VIP no longer answers.
5. The same with attach tc (tcx on this kernel; cls_bpf under clsact where tcx is missing).
6. Only the unit's capabilities (CapabilityBoundingSet= of packaging/veerd.service.in, via setpriv):
   start, forward, SIGTERM, adopt, shutdown --unload all work.

The pin path is a folder inside the testbed's bpffs (like /sys/fs/bpf/veer under systemd), so an unload
removes veer's folder and leaves the mount. bpftool's global lists may hold programs of other test runs on the
same machine, so "gone" is checked by the ids this veerd used, recorded before the unload.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import veer_e2e as e2e
from veer_e2e import run

LB_INTERFACES = ("lbc", "lbblue", "lbgreen", "lbcanary")


def bpftool_json(*args, check=True):
    proc = run(["bpftool", "-j", *args], check=check)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout or "null")


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET; collects the messages."""

    def __init__(self):
        self.path = tempfile.mktemp(prefix="veer-e2e-notify-", suffix=".sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # (monotonic time, {key: value})

    def poll(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait_for(self, key, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fields = self.poll(max(0.01, deadline - time.monotonic()))
            if fields and key in fields:
                return fields
        raise AssertionError(f"no {key} from veerd within {timeout}s; got {[m for _, m in self.messages]}")

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class TestLifecycle(e2e.VeerCase):
    prefix = "ve2e-life"
    with_veerd = False  # each case starts the veerd it needs

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pin_path = os.path.join(cls.tb.run_dir, "bpffs", "veer")
        cls.veerd = None

    def tearDown(self):
        if self.veerd is not None:
            self.veerd.stop()
        self.veerd = None

    # ------------------------------------------------------------ helpers

    def config_text(self, attach="auto"):
        text = self.tb.render_config()
        bpffs = os.path.join(self.tb.run_dir, "bpffs")
        text, n = re.subn(r"(?m)^(\s*pin_path:\s*)\S+\s*$", rf"\g<1>{self.pin_path}", text)
        self.assertEqual(n, 1, "the testbed config has one pin_path")
        self.assertTrue(self.pin_path.startswith(bpffs))
        return e2e.set_attach(text, attach)

    def start_veerd(self, attach="auto", wrapper=(), env=None):
        self.tb.write_config(self.config_text(attach))
        veerd = e2e.Veerd(self.tb, self.tb.config)
        if wrapper or env:
            veerd.start = lambda timeout=20, v=veerd: self._start_wrapped(v, wrapper, env, timeout)
        self.veerd = veerd
        veerd.start()
        return veerd

    def _start_wrapped(self, veerd, wrapper, env, timeout):
        """Like Veerd.start, with a command wrapper inside the namespace (setpriv) and extra environment."""
        log = open(veerd.log_path, "a")
        full_env = dict(os.environ, **(env or {}))
        veerd.proc = subprocess.Popen(["ip", "netns", "exec", self.tb.ns("lb"), *wrapper, e2e.ARGS.veerd,
                                       "--config", veerd.config, "--foreground"],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=full_env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if veerd.proc.poll() is not None:
                raise AssertionError(f"veerd exited with {veerd.proc.returncode}:\n{veerd.log_tail()}")
            if os.path.exists(self.tb.socket):
                rc, answer = veerd.ctl_json("ping", check=False)
                if rc == 0 and answer.get("ok"):
                    return answer["result"]
            time.sleep(0.1)
        raise AssertionError(f"veerd did not answer ping within {timeout}s:\n{veerd.log_tail()}")

    def wait_exit(self, veerd, timeout=15):
        try:
            return veerd.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"veerd did not exit within {timeout}s:\n{veerd.log_tail()}")

    def lb_links(self):
        """ip -d -j link in the lb namespace: {ifname: link object}."""
        out = self.tb.exec("lb", ["ip", "-d", "-j", "link", "show"]).stdout
        return {l["ifname"]: l for l in json.loads(out)}

    def attached_prog_ids(self):
        """{ifname: [prog ids]} of every program on an lb interface (bpftool net: xdp, tcx, tc)."""
        out = self.tb.exec("lb", ["bpftool", "-j", "net", "show"]).stdout
        entries = json.loads(out)
        ids = {}
        for entry in entries:
            for kind in ("xdp", "tc", "tcx"):
                for item in entry.get(kind, []):
                    name = item.get("devname") or item.get("ifname")
                    if "id" in item:
                        ids.setdefault(name, []).append(item["id"])
        return ids

    def pinned_prog_ids(self):
        """{ifname: prog id} from veer's pinned links (XDP, tcx links) and pinned cls_bpf programs. bpftool 7.1
        and iproute2 predate tcx, so for tcx the link pins are the only view of what is attached."""
        out = {}
        links = os.path.join(self.pin_path, "links")
        for name in os.listdir(links):
            ifname, _, tag = name.rpartition(":")
            path = os.path.join(links, name)
            info = bpftool_json("link", "show", "pinned", path, check=False)
            if info and "prog_id" in info:
                out[ifname] = info["prog_id"]
            else:  # cls_bpf: the pin is the program itself
                out[ifname] = bpftool_json("prog", "show", "pinned", path)["id"]
        return out

    def veer_ids(self):
        """(prog ids, map ids) of veer's programs attached in the lb namespace and the maps they use."""
        attached = self.attached_prog_ids()
        pinned = self.pinned_prog_ids()
        self.assertEqual(sorted(pinned), sorted(LB_INTERFACES), pinned)
        for ifname, ids in attached.items():  # what netlink shows (XDP, cls_bpf) is what the pins say
            self.assertEqual(ids, [pinned[ifname]], (attached, pinned))
        prog_ids = sorted(set(pinned.values()))
        map_ids = set()
        for pid in prog_ids:
            info = bpftool_json("prog", "show", "id", str(pid))
            self.assertTrue(info["name"].startswith("veer_"), info)
            map_ids.update(info.get("map_ids", []))
        self.assertTrue(map_ids, "veer's programs use no map?")
        return prog_ids, sorted(map_ids)

    def assert_pins_present(self):
        self.assertTrue(os.path.isdir(self.pin_path), self.pin_path)
        links = os.listdir(os.path.join(self.pin_path, "links"))
        maps = os.listdir(os.path.join(self.pin_path, "maps"))
        self.assertEqual(len(links), len(LB_INTERFACES), links)
        self.assertIn("veer_flows", maps)

    def assert_forwarding(self, src, count=60):
        r = self.tb.client("http", "--dst", e2e.VIP4, "--port", 80, "--src", src, "--count", count)
        self.assertEqual(r["completed"], count, r)
        self.assertEqual(sum(r["variants"].values()), count, r)
        return r

    def assert_everything_gone(self, prog_ids, map_ids):
        # Programs go when their last link/fd goes; maps a little later (freed from a work queue).
        deadline = time.monotonic() + 10
        while True:
            progs_left = [i for i in prog_ids if bpftool_json("prog", "show", "id", str(i), check=False)]
            maps_left = [i for i in map_ids if bpftool_json("map", "show", "id", str(i), check=False)]
            if not progs_left and not maps_left:
                break
            if time.monotonic() > deadline:
                self.fail(f"still there after unload: programs {progs_left}, maps {maps_left}")
            time.sleep(0.2)
        # Nothing named veer_* attached anywhere in the lb namespace.
        self.assertEqual(self.attached_prog_ids(), {})
        for name, link in self.lb_links().items():
            self.assertNotIn("xdp", link, f"{name} still has an XDP program: {link.get('xdp')}")
            self.assertFalse(re.search(r"\bprog/(xdp|tcx)", json.dumps(link)), link)
        for ifname in LB_INTERFACES:
            out = self.tb.exec("lb", ["tc", "filter", "show", "dev", ifname, "ingress"]).stdout
            self.assertNotIn("veer", out, f"{ifname}: {out}")
        self.assertFalse(os.path.exists(self.pin_path) and os.listdir(self.pin_path),
                         f"pin folder not empty: {os.listdir(self.pin_path) if os.path.exists(self.pin_path) else ''}")
        self.assertFalse(os.path.exists(self.tb.socket), "socket left behind")

    def assert_vip_dead(self, src):
        r = self.tb.client("http", "--dst", e2e.VIP4, "--port", 80, "--src", src, "--count", 3,
                           "--timeout", 1, "--time-limit", 10)
        self.assertEqual(r["completed"], 0, f"the VIP still answers after unload: {r}")

    # ------------------------------------------------------------ cases

    def test_1_sigterm_keeps_forwarding_and_restart_adopts(self):
        veerd = self.start_veerd()
        prog_ids, map_ids = self.veer_ids()
        self.assert_forwarding("10.0.1.21")
        long = self.tb.long_client("--dst", e2e.VIP4, "--port", 7000, "--src", "10.0.1.22", "--connections", 20,
                                   "--interval", 0.1, "--duration", 60)
        try:
            ready = long.ready()
            self.assertTrue(all(c["error"] is None and c["variant"] for c in ready["connections"]), ready)
            os.kill(veerd.proc.pid, signal.SIGTERM)
            self.assertEqual(self.wait_exit(veerd), 0, veerd.log_tail())
            self.assertFalse(os.path.exists(self.tb.socket), "SIGTERM left the socket behind")
            self.assert_pins_present()
            # the very same programs, still attached, still forwarding new connections
            self.assertEqual(self.veer_ids(), (prog_ids, map_ids))
            r = self.assert_forwarding("10.0.1.23", count=200)
            print(f"  new connections while veerd is stopped: {r['variants']}", flush=True)
            time.sleep(1.0)  # the long-lived connections keep talking meanwhile

            self.veerd = None
            veerd = self.start_veerd()
            node = veerd.status()["node"]
            self.assertTrue(node["adopted"], node)
            self.assert_forwarding("10.0.1.24")
        finally:
            done = long.finish()
        s = done["summary"]
        print(f"  long-lived across SIGTERM and restart: {s}", flush=True)
        self.assertEqual(s["errors"], 0, [c for c in done["connections"] if c["error"]])
        self.assertEqual(s["changed_variant"], 0)

    def test_2_plain_shutdown_is_like_sigterm(self):
        veerd = self.start_veerd()
        ids = self.veer_ids()
        out = veerd.ctl("shutdown")
        self.assertIn("keeps forwarding", out.stdout)
        self.assertEqual(self.wait_exit(veerd), 0, veerd.log_tail())
        self.assertFalse(os.path.exists(self.tb.socket))
        self.assert_pins_present()
        self.assertEqual(self.veer_ids(), ids)
        self.assert_forwarding("10.0.1.25")
        # --unload belongs to shutdown only; a usage error changes nothing
        self.veerd = None
        veerd = self.start_veerd()
        self.assertEqual(veerd.ctl("status", "--unload", check=False).returncode, 2)
        # the offline unload refuses to pull the data plane from under a running veerd
        refused = self.tb.exec("lb", [e2e.ARGS.veerd, "--unload", "--config", self.tb.config], check=False)
        self.assertEqual(refused.returncode, 1, refused.stdout + refused.stderr)
        self.assertIn("shutdown --unload", refused.stderr)
        self.assert_pins_present()
        self.assertTrue(veerd.alive())
        rc, answer = veerd.ctl_json("ping")
        self.assertTrue(answer["ok"])

    def test_3_sd_notify(self):
        notify = NotifySocket()
        try:
            env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}
            self.tb.write_config(self.config_text())
            veerd = e2e.Veerd(self.tb, self.tb.config)
            self.veerd = veerd
            log = open(veerd.log_path, "a")
            started = time.monotonic()
            veerd.proc = subprocess.Popen(["ip", "netns", "exec", self.tb.ns("lb"), e2e.ARGS.veerd, "--config",
                                           veerd.config, "--foreground"], stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, env=dict(os.environ, **env))
            log.close()
            ready = notify.wait_for("READY", timeout=20)
            # READY means: the socket answers and the programs are attached, right now
            rc, answer = veerd.ctl_json("ping")
            self.assertEqual(answer["result"]["pid"], veerd.proc.pid)
            self.veer_ids()
            self.assertIn("4 services", ready.get("STATUS", ""), ready)
            self.assertIn("lbc (", ready["STATUS"])
            print(f"  READY after {time.monotonic() - started:.2f}s: STATUS={ready['STATUS']}", flush=True)

            # watchdog: WATCHDOG=1 about every 200 ms (half of 400 ms)
            first = notify.wait_for("WATCHDOG", timeout=2)
            # Drop what queued up while this process was busy (a slow guest delivers a backlog at once),
            # then count the beats of a window against its measured length.
            while notify.poll(0.001) is not None:
                pass
            t0 = time.monotonic()
            beats = 0
            while time.monotonic() - t0 < 1.5:
                fields = notify.poll(0.5)
                if fields and fields.get("WATCHDOG") == "1":
                    beats += 1
            window = time.monotonic() - t0
            self.assertEqual(first["WATCHDOG"], "1")
            expected = window / 0.2
            self.assertTrue(0.5 * expected <= beats <= expected + 2,
                            f"{beats} WATCHDOG=1 in {window:.2f} s with WATCHDOG_USEC=400000 (about {expected:.1f})")

            # reload by SIGHUP and by the socket: RELOADING=1, then READY=1
            for how in ("SIGHUP", "veerctl reload"):
                if how == "SIGHUP":
                    os.kill(veerd.proc.pid, signal.SIGHUP)
                else:
                    veerd.ctl("reload")
                reloading = notify.wait_for("RELOADING", timeout=5)
                self.assertIn("MONOTONIC_USEC", reloading)
                notify.wait_for("READY", timeout=5)

            # a refused reload (invalid config) still ends in READY=1, and veerd keeps serving
            with open(self.tb.config) as f:
                good = f.read()
            self.tb.write_config("node: [unclosed\n")
            self.assertEqual(veerd.ctl("reload", check=False).returncode, 1)
            notify.wait_for("RELOADING", timeout=5)
            notify.wait_for("READY", timeout=5)
            self.tb.write_config(good)
            self.assertTrue(veerd.ctl_json("ping")[1]["ok"])

            os.kill(veerd.proc.pid, signal.SIGTERM)
            stopping = notify.wait_for("STOPPING", timeout=5)
            self.assertIn("data plane stays attached", stopping.get("STATUS", ""))
            self.assertEqual(self.wait_exit(veerd), 0)
        finally:
            notify.close()

    def unload_case(self, attach, src):
        veerd = self.start_veerd(attach=attach)
        modes = {i["interface"]: i["mode"] for i in veerd.status()["node"]["interfaces"]}
        print(f"  attach {attach}: {modes}", flush=True)
        if attach == "tc":
            self.assertTrue(all(m in ("tcx", "tc") for m in modes.values()), modes)
        self.assertEqual(sorted(modes), sorted(LB_INTERFACES))
        self.assert_forwarding(src)
        prog_ids, map_ids = self.veer_ids()
        out = veerd.ctl("shutdown", "--unload")
        self.assertIn("data plane unloaded", out.stdout)
        self.assertEqual(self.wait_exit(veerd), 0, veerd.log_tail())
        self.assert_everything_gone(prog_ids, map_ids)
        self.assert_vip_dead(src)
        # and a new veerd starts from scratch
        self.veerd = None
        veerd = self.start_veerd(attach=attach)
        self.assertFalse(veerd.status()["node"]["adopted"])
        self.assert_forwarding(src)

    def test_4_shutdown_unload_xdp(self):
        self.unload_case("xdp", "10.0.1.26")

    def test_5_shutdown_unload_tc(self):
        self.unload_case("tc", "10.0.1.27")

    def test_6_only_the_units_capabilities(self):
        with open(os.path.join(e2e.ARGS.source_dir, "packaging", "veerd.service.in")) as f:
            unit = f.read()
        caps = re.search(r"(?m)^CapabilityBoundingSet=(.*)$", unit).group(1).split()
        self.assertTrue(caps and all(c.startswith("CAP_") for c in caps), caps)
        bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)
        wrapper = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", f"--bounding-set={bounding}"]
        print(f"  capabilities: {' '.join(caps)}", flush=True)
        # leftovers of the earlier cases go first, with full capabilities
        # (veerd --unload, offline: no veerd runs now; in the lb namespace, where cls_bpf filters are found
        # by interface name)
        if not os.path.isdir(self.pin_path):  # run alone: make pins to unload
            self.start_veerd().stop()
            self.veerd = None
        self.tb.write_config(self.config_text())
        self.assertTrue(os.path.isdir(self.pin_path))
        out = self.tb.exec("lb", [e2e.ARGS.veerd, "--unload", "--config", self.tb.config]).stdout
        self.assertIn("unloaded the data plane", out)
        self.assertFalse(os.path.exists(self.pin_path))
        self.assertEqual(self.attached_prog_ids(), {})

        veerd = self.start_veerd(wrapper=wrapper)
        with open(f"/proc/{veerd.proc.pid}/status") as f:
            status = f.read()
        cap_eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)
        self.assertNotEqual(cap_eff, 0)
        self.assertEqual(cap_eff & (1 << 21), 0, "CAP_SYS_ADMIN must not be in the effective set")
        self.assert_forwarding("10.0.1.28")
        os.kill(veerd.proc.pid, signal.SIGTERM)
        self.assertEqual(self.wait_exit(veerd), 0, veerd.log_tail())
        self.veerd = None
        veerd = self.start_veerd(wrapper=wrapper)
        self.assertTrue(veerd.status()["node"]["adopted"])
        self.assert_forwarding("10.0.1.29")
        prog_ids, map_ids = self.veer_ids()
        veerd.ctl("shutdown", "--unload")
        self.assertEqual(self.wait_exit(veerd), 0, veerd.log_tail())
        self.assert_everything_gone(prog_ids, map_ids)


if __name__ == "__main__":
    e2e.main()
