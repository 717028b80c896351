#!/usr/bin/env python3
"""The fleet testbed itself (scripts/testbed.sh up --fleet 3), without veer: three nodes each with its own
client, the shared backends behind the fabric router, a three-member etcd. Checks: the topology and the
per-node configs; the etcd cluster healthy and replicated, reachable from every node; plain routing from
client N through node N to the backends and the replies back through node N only (nft counters on every
node); quorum lost with two members stopped and back when they start; node 2 cut off from etcd while nodes 1
and 3 are not, and back after restore; a clean down (processes, namespaces, etcd data)."""
import json
import os
import subprocess
import time

import veer_e2e as e2e
import veer_fleet as fleet_mod

HTTP = e2e.flows(200, 40)
NODES = (1, 2, 3)

# Counts what node N forwards each way between its client link (lbc) and its fabric link (fab).
NFT_COUNTERS = """
table inet fleettest {
  chain forward_count {
    type filter hook forward priority 0; policy accept;
    iifname "lbc" oifname "fab" counter
    iifname "fab" oifname "lbc" counter
  }
}
"""


class TestFleetTestbed(fleet_mod.FleetCase):
    prefix = "ve2e-fleet"
    nodes = 3

    # ------------------------------------------------------------ helpers

    def counters(self, n):
        """(packets client->fabric, packets fabric->client) node N forwarded since add_counters()."""
        out = self.fleet.exec_node(n, ["nft", "-j", "list", "table", "inet", "fleettest"]).stdout
        packets = [item["rule"]["expr"][-1]["counter"]["packets"] for item in json.loads(out)["nftables"]
                   if "rule" in item]
        self.assertEqual(len(packets), 2, out)
        return tuple(packets)

    def add_counters(self):
        for n in NODES:
            self.fleet.exec_node(n, ["nft", "-f", "-"], input=NFT_COUNTERS)
            self.addCleanup(self.fleet.exec_node, n, ["nft", "delete", "table", "inet", "fleettest"], check=False)

    def all_counters(self):
        return {n: self.counters(n) for n in NODES}

    def answers(self, n, addr):
        """Whether ADDR answers a TCP connect to a closed port from client N (refused: it did; timeout: no)."""
        code = ("import socket,sys;s=socket.socket();s.settimeout(1)\n"
                "try:\n s.connect((sys.argv[1],9))\nexcept ConnectionRefusedError:\n print('refused')\n"
                "except OSError as e:\n print('no:',e)\nelse:\n print('open')")
        out = self.fleet.exec_client(n, ["python3", "-c", code, addr], timeout=10).stdout.strip()
        return out in ("refused", "open")

    def assert_put_visible(self, key, value, put_member, put_from, readers):
        """put through PUT_MEMBER (from namespace PUT_FROM) commits, and every (member, namespace) of READERS
        has it in its own store within 5 s."""
        put = self.fleet.etcd_put(key, value, member=put_member, where=put_from)
        self.assertEqual(put.returncode, 0, put.stderr)
        for member, where in readers:
            e2e.wait_for(f"{key} on member {member} (read from {where})",
                         lambda: self.fleet.etcd_get(key, member=member, where=where) == value, e2e.scaled(5))

    # ------------------------------------------------------------ cases

    def test_a_topology_and_configs(self):
        fleet = self.fleet
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        for ns in ("lb1", "lb2", "lb3", "client1", "client2", "client3", "fabric", "blue", "green", "canary",
                   "etcd1", "etcd2", "etcd3"):
            self.assertIn(fleet.ns(ns), names)
        for ns in ("lb1", "lb2", "lb3", "fabric"):
            got = fleet.exec(ns, ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
                                  "net.ipv4.conf.all.rp_filter"]).stdout.split()
            self.assertEqual(got, ["1", "1", "0"], ns)
        for n in NODES:
            for dev in ("lbc", "fab"):
                feats = fleet.exec_node(n, ["ethtool", "-k", dev]).stdout
                self.assertIn("generic-receive-offload: on", feats)
                self.assertIn("tx-checksumming: off", feats)
            addrs = fleet.exec_node(n, ["ip", "-br", "addr"]).stdout
            self.assertIn(f"10.0.{n}.1/24", addrs)
            self.assertIn(f"10.3.{n}.2/24", addrs)
            client = fleet.exec_client(n, ["ip", "-br", "addr", "show", "dev", "eth0"]).stdout
            for a in (f"10.0.{n}.10/24", f"10.0.{n}.60/24", f"fd00:{n}::10/64", f"fd00:{n}::60/64"):
                self.assertIn(a, client)
            # the fabric router sends client N's subnet to node N
            route = fleet.exec("fabric", ["ip", "route", "get", f"10.0.{n}.11"]).stdout
            self.assertIn(f"via 10.3.{n}.2 dev rlb{n}", route)
            route6 = fleet.exec("fabric", ["ip", "-6", "route", "get", f"fd00:{n}::11"]).stdout
            self.assertIn(f"via fd00:3{n}::2 dev rlb{n}", route6)
        for ns in names:
            if ns.startswith(fleet.prefix + "-"):
                addrs = subprocess.run(["ip", "-n", ns, "-br", "addr"], capture_output=True, text=True).stdout
                self.assertNotIn(e2e.VIP4 + "/", addrs, ns)
                self.assertNotIn(e2e.VIP6 + "/", addrs, ns)
        self.assertTrue(os.path.ismount(os.path.join(fleet.run_dir, "bpffs")))
        self.assertEqual(fleet.status().returncode, 0, fleet.status().stdout)

        # one config per node: its own interfaces, paths and node name, the same etcd and services
        seen = {k: set() for k in ("socket", "state_dir", "pin_path", "node_name")}
        for n in NODES:
            text = fleet.node(n).render_config()
            self.assertIn("  interfaces: [lbc, fab]\n", text)
            self.assertIn(f"  socket: /run/{fleet.prefix}-testbed/lb{n}/veer.sock\n", text)
            self.assertIn(f"  state_dir: /run/{fleet.prefix}-testbed/lb{n}/state\n", text)
            self.assertIn(f"  pin_path: /run/{fleet.prefix}-testbed/bpffs/lb{n}\n", text)
            self.assertIn("cluster:\n  endpoints: [http://10.2.1.2:2379, http://10.2.2.2:2379, "
                          "http://10.2.3.2:2379]\n", text)
            self.assertIn(f"  node_name: node-{n}\n  prefix: /veer\n  lease_ttl: 2s\n", text)
            self.assertIn("    vip: 10.0.0.100\n", text)
            for line in text.splitlines():
                key = line.strip().split(":", 1)[0]
                if key in seen:
                    seen[key].add(line)
            self.assertTrue(os.path.isdir(os.path.dirname(fleet.node(n).socket)))
            self.assertTrue(os.path.isdir(fleet.node(n).state_dir))
            # the same text from the python side
            with open(os.path.join(e2e.ARGS.source_dir, "examples", "testbed.yaml")) as f:
                self.assertEqual(fleet_mod.fleet_config(f.read(), fleet.prefix, n), text)
        for key, lines in seen.items():
            self.assertEqual(len(lines), 3, f"{key}: {lines}")

    def test_b_etcd_cluster_healthy_and_replicated(self):
        fleet = self.fleet
        for m in fleet.members:
            self.assertTrue(fleet.etcd_healthy(m), f"member {m}")
        listed = fleet.etcdctl("member", "list", member=1)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertEqual(listed.stdout.count(", started, "), 3, listed.stdout)
        for n in NODES:
            # from every node namespace: all three endpoints healthy in one call
            health = fleet.etcdctl("endpoint", "health", where=f"lb{n}")
            self.assertEqual(health.returncode, 0, health.stdout + health.stderr)
            self.assertEqual(health.stderr.count("is healthy"), 3, health.stderr)
        readers = [(2, "lb2"), (3, "lb3"), (1, "fabric")]
        self.assert_put_visible("/fleet-testbed/a", "from-member-1", 1, "lb1", readers)
        self.assert_put_visible("/fleet-testbed/b", "from-member-3", 3, "lb3", [(1, "lb1"), (2, "lb2")])

    def test_c_plain_routing_through_own_node(self):
        fleet = self.fleet
        self.add_counters()
        for n in NODES:
            node = fleet.node(n)
            start = self.all_counters()
            src4, src6 = node.client_addr(11), node.client_addr(12, v6=True)
            before4 = node.backend_stats("blue")["clients"].get(src4, {}).get("requests", 0)
            r4 = node.client("http", "--dst", e2e.BACKEND4["blue"], "--port", 8080, "--src", src4, "--count", HTTP)
            self.assertEqual(r4["variants"], {"blue": HTTP}, r4)
            r6 = node.client("http", "--dst", e2e.BACKEND6["green"], "--port", 8080, "--src", src6, "--count", HTTP)
            self.assertEqual(r6["variants"], {"green": HTTP}, r6)
            # the backends saw client N's own addresses
            self.assertEqual(node.backend_stats("blue")["clients"][src4]["requests"] - before4, HTTP)
            self.assertGreaterEqual(node.backend_stats("green")["clients"][src6]["requests"], HTTP)
            # requests and replies both crossed node N (3+ packets each way per connection), nothing crossed
            # the other nodes
            end = self.all_counters()
            for other in NODES:
                out, back = (end[other][0] - start[other][0], end[other][1] - start[other][1])
                print(f"  client {n}: node {other} forwarded {out} out, {back} back", flush=True)
                if other == n:
                    self.assertGreaterEqual(out, 3 * 2 * HTTP)
                    self.assertGreaterEqual(back, 3 * 2 * HTTP)
                else:
                    self.assertEqual((out, back), (0, 0), f"client {n}'s traffic crossed node {other}")

    def test_d_vip_unanswered_without_veer(self):
        for n in NODES:
            r = self.fleet.client(n, "http", "--dst", e2e.VIP4, "--port", 80, "--src", self.fleet.node(n).client_addr(40),
                                  "--count", 2, "--timeout", 2)
            self.assertEqual(r["completed"], 0, r)

    def test_e_quorum_lost_and_restored(self):
        fleet = self.fleet

        def all_back():
            for m in fleet.members:
                fleet.etcd_start(m)
            fleet.wait_etcd_healthy()
        self.addCleanup(all_back)

        fleet.etcd_stop(3)
        self.assertEqual(fleet.etcd_pids(3), [])
        self.assertEqual(fleet.etcd_put("/fleet-testbed/q", "two-of-three", member=1, where="lb1").returncode, 0)
        fleet.etcd_stop(2)
        self.assertEqual(fleet.etcd_pids(2), [])
        t0 = time.monotonic()
        put = fleet.etcd_put("/fleet-testbed/q", "one-of-three", member=1, where="lb1", command_timeout="2s")
        took = time.monotonic() - t0
        print(f"  put with one member of three: rc {put.returncode} after {took:.2f}s: {put.stderr.strip()[-120:]}",
              flush=True)
        self.assertNotEqual(put.returncode, 0)
        # Without quorum the put waits for a commit that cannot come: the client's deadline passes, or the
        # member gives up first ("etcdserver: request timed out", seen when the stop raced the put).
        self.assertTrue("deadline exceeded" in put.stderr or "request timed out" in put.stderr
                        or put.returncode == 124, put.stderr)
        self.assertGreaterEqual(took, 1.5)
        self.assertFalse(fleet.etcd_healthy(1))
        # the survivor still holds what was committed
        self.assertEqual(fleet.etcd_get("/fleet-testbed/q", member=1), "two-of-three")

        t0 = time.monotonic()
        fleet.etcd_start(2)
        fleet.wait_etcd_healthy([1, 2], timeout=30)
        print(f"  quorum back with members 1 and 2 after {time.monotonic() - t0:.2f}s", flush=True)
        self.assert_put_visible("/fleet-testbed/q", "quorum-back", 2, "lb2", [(1, "lb1")])
        fleet.etcd_start(3)
        fleet.wait_etcd_healthy(timeout=30)
        e2e.wait_for("member 3 caught up", lambda: fleet.etcd_get("/fleet-testbed/q", member=3, where="lb3")
                     == "quorum-back", e2e.scaled(10))

    def test_f_node_cut_off_and_restored(self):
        fleet = self.fleet
        self.addCleanup(fleet.restore, 2)
        fleet.cut(2)
        self.assertTrue(fleet.is_cut(2))
        for m in fleet.members:
            self.assertFalse(fleet.etcd_healthy(m, where="lb2"), f"node 2 still reaches member {m}")
            for n in (1, 3):
                self.assertTrue(fleet.etcd_healthy(m, where=f"lb{n}"), f"node {n} lost member {m}")
        # the cluster itself is whole: a put from node 1 commits
        self.assertEqual(fleet.etcd_put("/fleet-testbed/cut", "node-2-away", member=3, where="lb1").returncode, 0)
        # node 2's client reaches no backend, node 1's does
        r = fleet.client(2, "http", "--dst", e2e.BACKEND4["blue"], "--port", 8080, "--src", "10.0.2.20",
                         "--count", 2, "--timeout", 1)
        self.assertEqual(r["completed"], 0, r)
        r = fleet.client(1, "http", "--dst", e2e.BACKEND4["blue"], "--port", 8080, "--src", "10.0.1.20",
                         "--count", 10)
        self.assertEqual(r["variants"], {"blue": 10}, r)
        # node 2 itself still answers its client (only its fabric link is down)
        self.assertTrue(self.answers(2, "10.0.2.1"))

        t0 = time.monotonic()
        fleet.restore(2)
        self.assertFalse(fleet.is_cut(2))
        fleet.wait_etcd_healthy(where="lb2", timeout=15)
        print(f"  node 2 reaches etcd {time.monotonic() - t0:.2f}s after restore", flush=True)
        self.assertEqual(fleet.etcd_get("/fleet-testbed/cut", member=2, where="lb2"), "node-2-away")
        r = fleet.client(2, "http", "--dst", e2e.BACKEND4["blue"], "--port", 8080, "--src", "10.0.2.21",
                         "--count", 20)
        self.assertEqual(r["variants"], {"blue": 20}, r)
        r6 = fleet.client(2, "http", "--dst", e2e.BACKEND6["canary"], "--port", 8080, "--src", "fd00:2::21",
                          "--count", 20)
        self.assertEqual(r6["variants"], {"canary": 20}, r6)

        # --links all: the client link goes too; restore brings both back
        fleet.cut(2, links="all")
        self.assertFalse(self.answers(2, "10.0.2.1"))
        self.assertFalse(fleet.etcd_healthy(1, where="lb2"))
        fleet.restore(2)
        fleet.wait_etcd_healthy(where="lb2", timeout=15)
        self.assertTrue(self.answers(2, "10.0.2.1"))
        r = fleet.client(2, "http", "--dst", e2e.BACKEND4["green"], "--port", 8080, "--src", "10.0.2.22",
                         "--count", 20)
        self.assertEqual(r["variants"], {"green": 20}, r)


class TestFleetDownIsClean(e2e.unittest.TestCase):
    def test_down_leaves_nothing(self):
        fleet = fleet_mod.FleetTestbed("ve2e-fleetdown")
        try:
            fleet.up()
            data = fleet.etcd_data_dir()
            self.assertTrue(data.startswith("/tmp/ve2e-fleetdown-fleet-etcd."), data)
            self.assertTrue(os.path.isdir(data))
            pids = [p for m in fleet.members for p in fleet.etcd_pids(m)]
            self.assertEqual(len(pids), 3, pids)
            with open(os.path.join(fleet.run_dir, "pids", "backend-blue.pid")) as f:
                pids.append(int(f.read()))
        finally:
            fleet.down()
        second = subprocess.run([fleet.script, "down", "--prefix", fleet.prefix], capture_output=True, text=True)
        self.assertEqual(second.returncode, 0, second.stderr)
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        self.assertNotIn(fleet.prefix + "-", names)
        self.assertFalse(os.path.exists(fleet.run_dir))
        self.assertFalse(os.path.exists(data), data)
        for pid in pids:
            self.assertFalse(e2e.pid_alive(pid), f"pid {pid} still alive")
        status = subprocess.run([fleet.script, "status", "--prefix", fleet.prefix], capture_output=True, text=True)
        self.assertNotEqual(status.returncode, 0)


if __name__ == "__main__":
    e2e.main()
