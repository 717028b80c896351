#!/usr/bin/env python3
"""The testbed itself, without veer: topology, plain routing client -> lb -> backend (client addresses
preserved), the three servers of each backend over IPv4 and IPv6, counts at the backends, and a clean down."""
import os
import subprocess

import veer_e2e as e2e

# Plain-routed flows per backend (exact counts), scaled by VEER_E2E_FLOWS_FACTOR with floors.
HTTP4 = e2e.flows(2000, 200)
HTTP6 = e2e.flows(500, 50)
UDP4 = e2e.flows(500, 50)
UDP6 = e2e.flows(200, 20)


class TestTestbed(e2e.VeerCase):
    prefix = "ve2e-tb"
    with_veerd = False

    def test_topology(self):
        tb = self.tb
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for ns in ("client", "lb", "blue", "green", "canary"):
            self.assertIn(tb.ns(ns), names)
        lb = tb.exec("lb", ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
                            "net.ipv4.conf.all.rp_filter"]).stdout.split()
        self.assertEqual(lb, ["1", "1", "0"])
        for dev in ("lbc", "lbblue", "lbgreen", "lbcanary"):
            self.assertLessEqual(len(dev), 15)
            feats = tb.exec("lb", ["ethtool", "-k", dev]).stdout
            self.assertIn("generic-receive-offload: on", feats)
            self.assertIn("tx-checksumming: off", feats)
        for ns in ("client", "blue", "green", "canary"):
            feats = tb.exec(ns, ["ethtool", "-k", "eth0"]).stdout
            self.assertIn("generic-receive-offload: on", feats)
            self.assertIn("tx-checksumming: off", feats)
        # The VIPs are on no interface anywhere.
        for ns in ("client", "lb", "blue", "green", "canary"):
            addrs = tb.exec(ns, ["ip", "-br", "addr"]).stdout
            self.assertNotIn(e2e.VIP4 + "/", addrs)
            self.assertNotIn(e2e.VIP6 + "/", addrs)
        client = tb.exec("client", ["ip", "-br", "addr", "show", "dev", "eth0"]).stdout
        for a in ("10.0.1.10/24", "10.0.1.11/24", "10.0.1.60/24", "fd00:1::10/64", "fd00:1::60/64"):
            self.assertIn(a, client)
        self.assertTrue(os.path.ismount(os.path.join(tb.run_dir, "bpffs")))
        self.assertEqual(subprocess.run(["stat", "-f", "-c", "%T", os.path.join(tb.run_dir, "bpffs")],
                                        capture_output=True, text=True).stdout.strip(), "bpf_fs")
        status = subprocess.run([tb.script, "status", "--prefix", tb.prefix], capture_output=True, text=True)
        self.assertEqual(status.returncode, 0, status.stdout + status.stderr)

    def test_plain_routing_http(self):
        for i, v in enumerate(e2e.VARIANTS):
            src4, src6 = f"10.0.1.{11 + i}", f"fd00:1::{11 + i}"
            r4 = self.tb.client("http", "--dst", e2e.BACKEND4[v], "--port", 8080, "--src", src4, "--count", HTTP4)
            self.assertEqual(r4["variants"], {v: HTTP4}, r4)
            r6 = self.tb.client("http", "--dst", e2e.BACKEND6[v], "--port", 8080, "--src", src6, "--count", HTTP6)
            self.assertEqual(r6["variants"], {v: HTTP6}, r6)
            print(f"  {v}: http v4 {r4['rate']}/s, v6 {r6['rate']}/s", flush=True)
            # counted at the backend under the client's own (preserved) address
            stats = self.tb.backend_stats(v)
            self.assertEqual(stats["variant"], v)
            self.assertEqual(stats["clients"][src4], {"connections": HTTP4, "requests": HTTP4, "resets": 0})
            self.assertEqual(stats["clients"][src6]["requests"], HTTP6)

    def test_plain_routing_udp_and_echo(self):
        for i, v in enumerate(e2e.VARIANTS):
            src = f"10.0.1.{21 + i}"
            r = self.tb.client("udp", "--dst", e2e.BACKEND4[v], "--port", 9000, "--src", src, "--count", UDP4)
            self.assertEqual(r["variants"], {v: UDP4}, r)
            r6 = self.tb.client("udp", "--dst", e2e.BACKEND6[v], "--port", 9000, "--src", f"fd00:1::{21 + i}",
                                "--count", UDP6)
            self.assertEqual(r6["variants"], {v: UDP6}, r6)
            self.assertEqual(self.tb.backend_stats(v)["udp"]["clients"][src]["datagrams"], UDP4 + r["retries"])

        long = self.tb.long_client("--dst", e2e.BACKEND4["green"], "--port", 7000, "--src", "10.0.1.30",
                                   "--connections", 20, "--duration", 10)
        ready = long.ready()
        self.assertEqual([c["variant"] for c in ready["connections"]], ["green"] * 20)
        done = long.finish()
        self.assertEqual(done["summary"]["errors"], 0, done)
        self.assertEqual(done["summary"]["ok"], 20)
        for c in done["connections"]:
            self.assertEqual(c["variants"], {"green": c["sent"]})
        echo = self.tb.backend_stats("green")["echo"]["clients"]["10.0.1.30"]
        self.assertEqual(echo["connections"], 20)
        self.assertEqual(echo["lines"], done["summary"]["replies"])

    def test_vip_unanswered_without_veer(self):
        # Nothing owns the VIP: without veer a connection to it must fail (the lb has no route for it).
        r = self.tb.client("http", "--dst", e2e.VIP4, "--port", 80, "--src", "10.0.1.40", "--count", 3,
                           "--timeout", 2)
        self.assertEqual(r["completed"], 0, r)
        self.assertEqual(sum(r["errors"].values()), 3, r)


class TestDownIsClean(e2e.unittest.TestCase):
    def test_down_twice_leaves_nothing(self):
        tb = e2e.Testbed("ve2e-tbdown")
        try:
            tb.up()
            pids = []
            for v in e2e.VARIANTS:
                with open(os.path.join(tb.run_dir, "pids", f"backend-{v}.pid")) as f:
                    pids.append(f.read().strip())
        finally:
            tb.down()
        second = subprocess.run([tb.script, "down", "--prefix", tb.prefix], capture_output=True, text=True)
        self.assertEqual(second.returncode, 0, second.stderr)
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        self.assertNotIn(tb.prefix + "-", names)
        self.assertFalse(os.path.exists(tb.run_dir))
        for pid in pids:
            self.assertFalse(e2e.pid_alive(pid), f"backend pid {pid} still alive")
        status = subprocess.run([tb.script, "status", "--prefix", tb.prefix], capture_output=True, text=True)
        self.assertNotEqual(status.returncode, 0)


if __name__ == "__main__":
    e2e.main()
