#!/usr/bin/env python3
"""Fleet mode e2e (issue 11; docs/fleet.md): three veerd's on the fleet testbed (scripts/testbed.sh up --fleet 3),
each steering its own client namespace's connections to the shared backends, one table per service through a
real three-member etcd.
(a) `weights` on node 1: every node applies the same version; `which` gives the same variant and backend for
    1,000 keys on every node; each node's busy client (one address, reused source ports) sees the weights; a
    `switch` from node 3 reaches node 1's reused ports at once (0 connections to the old variants); the live
    view on node 2 lists the three nodes at that version (/api/v1/nodes and the page in headless chromium).
(e) the etcd majority stopped: traffic keeps flowing on the last tables with 0 errors, a table request is
    refused and changes nothing, status says etcd is unreachable; once etcd is back a change applies everywhere.
(f) node 2 cut off during two changes: it keeps its table and serves its clients' existing state, never applies
    an older version, and on return applies the current version (not the one in between).
(g) a node whose definition of a service differs (another backend order): it applies nothing for that service
    and says so (status, event, metric; the other nodes' `nodes` flag it), refuses table requests for it, and applies the other services; with the
    fleet's definition again it catches up."""
import json
import re
import time

import veer_browser as browser
import veer_e2e as e2e
import veer_fleet

SERVICE = "ranker"
WHICH_KEYS = 1000


class TestFleet(veer_fleet.FleetCase):
    prefix = "ve2e-flt"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.nodes = {n: cls.start_veerd(n) for n in (1, 2, 3)}
            for n in (1, 2, 3):
                cls.wait_connected(n)
        except BaseException:
            cls.tearDownClass()
            raise

    # ------------------------------------------------------------ helpers

    @classmethod
    def fleet_view(cls, n):
        answer = cls.nodes[n].request({"cmd": "status"})
        assert answer.get("ok"), answer
        return answer["result"]["fleet"]

    @classmethod
    def wait_connected(cls, n, connected=True, timeout=15):
        e2e.wait_for(f"node {n} {'connected to' if connected else 'cut off from'} etcd",
                     lambda: cls.fleet_view(n)["connected"] == connected, e2e.scaled(timeout), 0.1)

    def applied(self, n, service=SERVICE):
        return self.fleet_view(n)["services"][service]["applied_version"]

    def weights_of(self, n, service=SERVICE):
        s = self.nodes[n].service_status(service)
        return {v["name"]: float(v["weight_applied"]) for v in s["variants"]}

    def wait_all_applied(self, version, nodes=(1, 2, 3), timeout=5):
        started = time.monotonic()
        e2e.wait_for(f"nodes {nodes} at version {version}",
                     lambda: all(self.applied(n) == version for n in nodes), e2e.scaled(timeout), 0.02)
        return time.monotonic() - started

    def change(self, n, *args, expect_ok=True):
        """veerctl ARGS on node N; its JSON answer."""
        rc, answer = self.nodes[n].ctl_json(*args, check=False)
        if expect_ok:
            self.assertEqual(rc, 0, answer)
            self.assertTrue(answer["ok"], answer)
        return answer

    def which_all(self, n, keys):
        out = []
        for client in keys:
            answer = self.nodes[n].request({"cmd": "which", "service": SERVICE, "client": client})
            self.assertTrue(answer.get("ok"), answer)
            out.append((answer["result"]["new_flow"]["variant"], answer["result"]["new_flow"]["backend"]))
        return out

    def busy_client(self, n, ports, rounds=1):
        """Node N's client: one address reusing the source ports PORTS, one connection per port per round."""
        node = self.fleet.node(n)
        return node.client("ports", "--dst", e2e.VIP4, "--port", 80, "--src", node.client_addr(11),
                           "--ports", ports, "--rounds", rounds, "--concurrency", 20, "--time-limit", 60,
                           timeout=120)

    def fleet_events(self, n, since=0):
        return [e for e in self.nodes[n].events(since=since) if e["kind"] == "fleet"]

    def applied_versions_in_events(self, n, since=0, service=SERVICE):
        return [int(re.match(r"applied version (\d+)", e["message"]).group(1))
                for e in self.fleet_events(n, since) if e["service"] == service
                and e["message"].startswith("applied version")]

    # ------------------------------------------------------------ (a)

    def test_a_weights_on_one_node_apply_everywhere_and_reach_reused_ports(self):
        answer = self.change(1, "weights", SERVICE, "blue=60", "green=10", "canary=30")
        version = answer["result"]["fleet"]["version"]
        self.assertTrue(answer["result"]["fleet"]["applied"], "the writer answered before it applied")
        took = self.wait_all_applied(version)
        print(f"  (a) version {version} live on all three nodes {1000 * took:.0f} ms after node 1 answered",
              flush=True)
        for n in (1, 2, 3):
            self.assertEqual(self.weights_of(n), {"blue": 60.0, "green": 10.0, "canary": 30.0}, f"node {n}")
            self.assertEqual(self.fleet_view(n)["services"][SERVICE]["lag"], 0)
        keys = [f"10.0.{1 + i % 3}.{10 + i % 50}:{20000 + i}" for i in range(WHICH_KEYS)]
        choices = {n: self.which_all(n, keys) for n in (1, 2, 3)}
        self.assertEqual(choices[1], choices[2])
        self.assertEqual(choices[1], choices[3])
        share = sum(1 for v, _ in choices[1] if v == "canary") / WHICH_KEYS
        self.assertAlmostEqual(share, 0.30, delta=0.05)

        # Real traffic from each node's busy client (one address, 300 reused ports, 2 rounds).
        for n in (1, 2, 3):
            r = self.busy_client(n, "21000-21299", rounds=2)
            total = sum(r["variants"].values())
            self.assertEqual((total, r["errors"]), (600, {}), f"node {n}: {r['variants']} {r['errors']}")
            self.assertAlmostEqual(r["variants"].get("canary", 0) / total, 0.30, delta=0.07, msg=f"node {n}")
            print(f"  (a) node {n}'s client, 600 connections on 300 reused ports: {r['variants']}", flush=True)

        # Every node sees every node's report: the same applied version everywhere, no one behind.
        listing = self.nodes[2].request({"cmd": "nodes"})
        self.assertTrue(listing.get("ok"), listing)
        seen = {n["node"]: n for n in listing["result"]["nodes"]}
        self.assertEqual(sorted(seen), ["node-1", "node-2", "node-3"])
        for name, n in seen.items():
            self.assertEqual(n["services"][SERVICE]["applied_version"], version, name)
            self.assertTrue(n["services"][SERVICE]["same_definition"], name)
            self.assertLess(n["report_age_ms"], e2e.scaled(3000), name)
        text = self.nodes[2].ctl("nodes").stdout
        self.assertIn("node-2 (this)", text)
        self.assertIn(f"{SERVICE} v{version}", text)

        # the live view's fleet nodes (docs/view.md) on node 2: the API (etcd read at most once a second, the
        # first request starting the read) and the page's node rows, as headless chromium renders them
        node2, url = self.fleet.node(2), "http://127.0.0.1:9469"

        def three_nodes():
            doc = json.loads(node2.fetch("lb", url + "/api/v1/nodes"))
            return doc if len(doc.get("nodes") or []) == 3 else None
        view, _ = e2e.wait_for("node 2's /api/v1/nodes listing three nodes", three_nodes, e2e.scaled(5), 0.2)
        self.assertEqual(view["self"], "node-2")
        self.assertEqual({n["node"]: n["services"][SERVICE]["applied_version"] for n in view["nodes"]},
                         {f"node-{n}": version for n in (1, 2, 3)})
        dom = browser.render(self, url + "/", netns=node2.ns("lb"))
        rows = {r["attrs"]["data-node"]: r for r in dom.find("tr", cls="node-row")}
        self.assertEqual(sorted(rows), ["node-1", "node-2", "node-3"])
        for name, row in rows.items():
            cells = dom.find("td", cls="applied-version", data_service=SERVICE, within=lambda a, row=row: a is row)
            self.assertEqual(["".join(c["text"]) for c in cells], [str(version)], name)

        # A switch from node 3: node 1's client, on the same reused ports, reaches blue only, at once.
        answer = self.change(3, "switch", SERVICE, "blue")
        self.wait_all_applied(answer["result"]["fleet"]["version"])
        r = self.busy_client(1, "21000-21299", rounds=1)
        self.assertEqual(r["variants"], {"blue": 300}, r)

    # ------------------------------------------------------------ (e)

    def test_e_etcd_majority_away_traffic_flows_changes_are_refused_then_resume(self):
        answer = self.change(2, "weights", SERVICE, "blue=80", "canary=20")
        version = answer["result"]["fleet"]["version"]
        self.wait_all_applied(version)
        before = {n: self.weights_of(n) for n in (1, 2, 3)}
        self.fleet.etcd_stop(1)
        self.fleet.etcd_stop(2)
        try:
            for n in (1, 2, 3):
                self.wait_connected(n, connected=False, timeout=20)
            refused = self.change(2, "weights", SERVICE, "blue=50", "canary=50", expect_ok=False)
            self.assertFalse(refused["ok"], refused)
            self.assertIn("nothing changed", refused["error"]["message"])
            # Traffic on the last tables: every node's client, 0 errors, the weights as they were.
            for n in (1, 2, 3):
                self.assertEqual(self.weights_of(n), before[n])
                r = self.busy_client(n, "22000-22199")
                self.assertEqual((sum(r["variants"].values()), r["errors"]), (200, {}), f"node {n}: {r}")
                self.assertEqual(set(r["variants"]) - {"blue", "canary"}, set(), r)
            self.assertEqual([self.applied(n) for n in (1, 2, 3)], [version] * 3)
            # A push while etcd is away: accepted and kept by the node, and the answer says it is not in etcd.
            pushed = self.change(1, "push", SERVICE, "canary", "conversion=1*7")["result"]
            self.assertEqual((pushed["accepted"], pushed["in_etcd"]), (1, False), pushed)
            self.assertIn("next report", pushed["pending"])
        finally:
            self.fleet.etcd_start(1)
            self.fleet.etcd_start(2)
        self.fleet.wait_etcd_healthy()
        for n in (1, 2, 3):
            self.wait_connected(n, timeout=30)

        def kept_push():
            report = self.fleet.etcd_get("/veer/nodes/node-1", member=1)
            pushed = json.loads(report)["services"][SERVICE].get("pushed", {}) if report else {}
            return pushed.get("canary", {}).get("metrics", {}).get("conversion", {}).get("n") == 7

        e2e.wait_for("node 1's report carries the push it kept", kept_push, e2e.scaled(10), 0.2)
        answer = self.change(2, "weights", SERVICE, "blue=50", "canary=50")
        self.assertEqual(answer["result"]["fleet"]["version"], version + 1)
        self.wait_all_applied(version + 1)

    # ------------------------------------------------------------ (f)

    def test_f_a_node_cut_off_keeps_its_table_and_catches_up_to_the_current_version(self):
        answer = self.change(1, "weights", SERVICE, "blue=90", "canary=10")
        start = answer["result"]["fleet"]["version"]
        self.wait_all_applied(start)
        since = self.nodes[2].events()[-1]["seq"] + 1
        self.fleet.cut(2)
        try:
            self.wait_connected(2, connected=False, timeout=20)
            self.change(1, "weights", SERVICE, "blue=70", "canary=30")
            self.change(3, "weights", SERVICE, "blue=40", "canary=60")
            self.wait_all_applied(start + 2, nodes=(1, 3))
            self.assertEqual(self.applied(2), start)
            self.assertEqual(self.weights_of(2)["canary"], 10.0)
            # A node cut off cannot list the fleet: it says why.
            listing = self.nodes[2].request({"cmd": "nodes"}, timeout=15)
            self.assertFalse(listing.get("ok"), listing)
            self.assertIn("etcd unreachable", listing["error"]["message"])
            # The others see node 2 as silent: its report's lease lapses (2 s TTL).
            e2e.wait_for("node 2's report gone from etcd",
                         lambda: self.fleet.etcd_get("/veer/nodes/node-2", member=1) is None, e2e.scaled(10), 0.2)
        finally:
            self.fleet.restore(2)
        self.wait_connected(2, timeout=30)
        took = self.wait_all_applied(start + 2, timeout=10)
        print(f"  (f) node 2 at the current version {start + 2} {1000 * took:.0f} ms after it reconnected",
              flush=True)
        self.assertEqual(self.weights_of(2)["canary"], 60.0)
        applied = self.applied_versions_in_events(2, since)
        self.assertEqual(applied, [start + 2], "node 2 applied a version between, or an older one")
        e2e.wait_for("node 2's report back under a new lease",
                     lambda: self.fleet.etcd_get("/veer/nodes/node-2", member=1) is not None, e2e.scaled(10), 0.2)

    # ------------------------------------------------------------ (g)

    def test_g_a_node_with_another_definition_applies_nothing_for_that_service(self):
        node3 = self.nodes[3]
        text = self.fleet.node(3).render_config()
        # Another definition of ranker on node 3: its blue and green swap backends.
        diverged = text.replace('blue:   { backends: ["10.1.1.2:8080"] }', 'blue:   { backends: ["10.1.2.2:8080"] }', 1)
        diverged = diverged.replace('green:  { backends: ["10.1.2.2:8080"] }', 'green:  { backends: ["10.1.1.2:8080"] }', 1)
        self.assertNotEqual(diverged, text, "test bug: the config did not change")
        node3.stop()
        try:
            self.fleet.write_node_config(3, diverged)
            node3.start()
            self.wait_connected(3)
            before = self.applied(3)
            udp_before = self.applied(3, "ranker-udp")
            answer = self.change(1, "weights", SERVICE, "blue=75", "canary=25")
            version = answer["result"]["fleet"]["version"]
            self.wait_all_applied(version, nodes=(1, 2))
            e2e.wait_for("node 3 shows ranker diverged",
                         lambda: "diverged" in self.fleet_view(3)["services"][SERVICE], e2e.scaled(5), 0.05)
            self.assertEqual(self.applied(3), before)
            self.assertIn("definition", self.fleet_view(3)["services"][SERVICE]["diverged"])
            self.assertTrue(any("diverged" in e["message"] for e in self.fleet_events(3)))
            metrics = e2e.prom_samples(self.fleet.node(3).fetch("lb", "http://127.0.0.1:9469/metrics"))
            self.assertEqual(e2e.prom_value(metrics, "veer_fleet_diverged", service=SERVICE), 1.0)
            # The other nodes see it too: node 3's report carries its digest, node 1 flags it.
            listing = self.nodes[1].request({"cmd": "nodes"})
            self.assertTrue(listing.get("ok"), listing)
            seen = {n["node"]: n["services"][SERVICE] for n in listing["result"]["nodes"]}
            self.assertFalse(seen["node-3"]["same_definition"], seen)
            self.assertTrue(seen["node-2"]["same_definition"], seen)
            self.assertIn("DIVERGED", self.nodes[1].ctl("nodes").stdout)
            refused = self.change(3, "weights", SERVICE, "blue=100", expect_ok=False)
            self.assertFalse(refused["ok"])
            self.assertIn("differs from the fleet", refused["error"]["message"])
            # Its other services are the fleet's: a change of ranker-udp applies on node 3 too.
            answer = self.change(2, "weights", "ranker-udp", "blue=50", "green=50")
            udp_version = answer["result"]["fleet"]["version"]
            self.assertGreater(udp_version, udp_before)
            e2e.wait_for("node 3 applies ranker-udp", lambda: self.applied(3, "ranker-udp") == udp_version,
                         e2e.scaled(5), 0.05)
            self.assertEqual(self.applied(3), before)
        finally:
            node3.stop()
            self.fleet.write_node_config(3)
            node3.start()
        self.wait_connected(3)
        self.wait_all_applied(self.applied(1), timeout=10)
        self.assertNotIn("diverged", self.fleet_view(3)["services"][SERVICE])
        self.assertEqual(self.weights_of(3)["canary"], 25.0)

    # ------------------------------------------------------------ (i)

    def test_i_a_new_definition_on_every_node_is_adopted_by_one_weights_adopt(self):
        """The config of ranker changes on every node (affinity connection -> client-ip, part of the
        definition): each restarted node is diverged and applies nothing until `weights --adopt` on one of
        them makes its definition the fleet's; a node still on the old config is then the diverged one, and
        catches up once it has the new config. (The last case: it leaves the fleet on the new definition.)"""
        text = self.fleet.node(1).render_config()
        old = "  - name: ranker\n    vip: 10.0.0.100\n    port: 80\n    protocol: tcp\n    affinity: connection\n"
        self.assertIn(old, text, "test bug: examples/testbed.yaml's ranker changed")

        def new_config(n):
            return self.fleet.node(n).render_config().replace(old, old.replace("connection", "client-ip"), 1)

        before = self.applied(3)
        for n in (1, 2):  # a rolling config change: node 3 is not there yet
            self.nodes[n].stop()
            self.fleet.write_node_config(n, new_config(n))
            self.nodes[n].start()
            self.wait_connected(n)
            e2e.wait_for(f"node {n} shows ranker diverged",
                         lambda n=n: "diverged" in self.fleet_view(n)["services"][SERVICE], e2e.scaled(5), 0.05)
        refused = self.change(1, "weights", SERVICE, "blue=70", "green=10", "canary=20", expect_ok=False)
        self.assertFalse(refused["ok"])
        self.assertIn("--adopt", refused["error"]["message"])
        self.assertEqual(self.applied(1), before)

        answer = self.change(2, "weights", SERVICE, "blue=70", "green=10", "canary=20", "--adopt")
        version = answer["result"]["fleet"]["version"]
        self.assertEqual(version, before + 1)
        self.wait_all_applied(version, nodes=(1, 2))
        for n in (1, 2):
            self.assertNotIn("diverged", self.fleet_view(n)["services"][SERVICE])
            self.assertEqual(self.weights_of(n), {"blue": 70.0, "green": 10.0, "canary": 20.0})
        # Node 3, still on the old config, is now the one that differs: it applies nothing and says so.
        e2e.wait_for("node 3 shows ranker diverged",
                     lambda: "diverged" in self.fleet_view(3)["services"][SERVICE], e2e.scaled(5), 0.05)
        self.assertEqual(self.applied(3), before)
        print(f"  (i) version {version} adopted by node 2: nodes 1 and 2 apply it, node 3 (old config) diverged",
              flush=True)
        self.nodes[3].stop()
        self.fleet.write_node_config(3, new_config(3))
        self.nodes[3].start()
        self.wait_connected(3)
        self.wait_all_applied(version, timeout=10)
        self.assertNotIn("diverged", self.fleet_view(3)["services"][SERVICE])
        keys = [f"10.0.{n}.{h}" for n in (1, 2, 3) for h in range(11, 61)]  # client-ip: the port does not count
        first = self.which_all(1, keys)
        self.assertEqual(self.which_all(2, keys), first)
        self.assertEqual(self.which_all(3, keys), first)
        # Each node's clients reach the variant `which` names for their address, the port aside.
        r = self.busy_client(3, "24000-24099")
        self.assertEqual(r["errors"], {}, r)
        expect = dict(zip(keys, first))[self.fleet.node(3).client_addr(11)][0]
        self.assertEqual(r["variants"], {expect: 100}, r)
        print(f"  (i) node 3 restarted on the new config: version {version} on all three, which agrees for "
              f"{len(keys)} client addresses, node 3's busy client 100/100 on {expect}", flush=True)


if __name__ == "__main__":
    e2e.main()
