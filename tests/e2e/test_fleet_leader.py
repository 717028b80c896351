#!/usr/bin/env python3
"""Fleet rollouts e2e (issue 11 (b), (c); docs/fleet.md "Rollouts across the fleet"): three veerd's on the fleet
testbed, one canary rollout run by the fleet's leader through a real three-member etcd, real traffic from every
node's clients.
(b) the canary is slow only for node 3's clients (the backend's latency_clients knob); node 1 leads and never
    sees a slow response itself, yet it aborts the rollout on the fleet-wide P95 (the merged histograms), and
    every node's applied canary weight is 0 within interval x (failure_limit + 1) + 1 s of the knob change;
(c) kill -9 of the leader's veerd during a pause step: another node leads within lease_ttl + 1 s, continues at
    the same step with the pause time already spent, and the rollout completes; etcd's history of the table
    holds every step once, versions one apart;
(d) a deposed leader writes nothing: the leader's veerd stopped (SIGSTOP) and its lease revoked while the
    process lives; another node leads and takes the next step; the old leader, woken (SIGCONT), writes no table
    version or rollout record (etcd's history after the revocation), says it no longer leads, and keeps
    applying the fleet's versions.
The cases run in the order b, d, c (one fleet for the file; (c) ends with the rollout completed, which cannot
start again)."""
import json
import os
import signal
import time

import veer_e2e as e2e
import veer_fleet

SERVICE = "ranker"
INTERVAL_S = 1.0
FAILURE_LIMIT = 2
LEASE_TTL_S = 2.0
PAUSE_S = 6
BUSY_PORTS = 200
# One rollout section for both cases: the definition digest covers it, and nodes of another definition
# apply nothing of the fleet's (fleet (g)).
STEPS = f"{{set_weight: 10}}, {{pause: {PAUSE_S}s}}, {{set_weight: 30}}, {{pause: {PAUSE_S}s}}, {{set_weight: 100}}"


def rollout_yaml(steps):
    return ("      strategy: canary\n"
            "      canary: canary\n"
            "      interval: 1s\n"
            f"      steps: [ {steps} ]\n"
            "      gates:\n"
            "        - { metric: latency_p95_ms, source: kernel, max: 150 }\n"
            f"      failure_limit: {FAILURE_LIMIT}\n")


def node_config(fleet, n):
    text = e2e.ranker_config(rollout_yaml(STEPS), metrics_url=False)
    return veer_fleet.fleet_config(text, fleet.prefix, n, lease_ttl=f"{LEASE_TTL_S:g}s")


class TestFleetLeader(veer_fleet.FleetCase):
    prefix = "ve2e-fll"

    def start_fleet(self):
        self.start_leading_fleet(lambda n: node_config(self.fleet, n))

    def canary_applied(self, n):
        s = self.veer_nodes[n].service_status(SERVICE)
        return {v["name"]: float(v["weight_applied"]) for v in s["variants"]}["canary"]

    def rollout_of(self, n):
        return self.veer_nodes[n].service_status(SERVICE)["rollout"]

    def traffic(self):
        """A steady rate from each node's client (50 addresses each), so the canary has responses every
        interval on every node."""
        return [self.fleet.rate_client(n, "--dst", e2e.VIP4, "--port", 80, "--src-range",
                                       f"10.0.{n}.11-10.0.{n}.60", "--rate", 100, "--duration", 60)
                for n in (1, 2, 3)]

    def busy_client(self, n):
        """Node N's client as a busy one: one address outside the rate clients' range, the source ports 23000.. (BUSY_PORTS of them), a new
        connection on each port every round, as in test_fleet.py."""
        node = self.fleet.node(n)
        return node.client("ports", "--dst", e2e.VIP4, "--port", 80, "--src", node.client_addr(10),
                           "--ports", f"23000-{23000 + BUSY_PORTS - 1}", "--rounds", 1, "--concurrency", 20,
                           "--time-limit", 60, timeout=120)

    def history(self, key, rev=1, prefix=False):
        """Every value etcd's history holds for KEY (oldest first), from a watch from revision REV."""
        # A watch never ends by itself: `timeout` ends it once the history is out.
        proc = self.fleet.exec("fabric", ["timeout", "3", "etcdctl", "--endpoints", ",".join(self.fleet.endpoints),
                                          "watch", f"--rev={rev}", *(["--prefix"] if prefix else []), key],
                               timeout=10, check=False)
        lines = [l for l in proc.stdout.splitlines() if l.strip()]
        values = []
        for i, line in enumerate(lines):
            if line == "PUT" and i + 2 < len(lines):
                values.append(json.loads(lines[i + 2]))
        return values

    # ------------------------------------------------------------ (b)

    def test_1_b_leader_aborts_on_the_fleet_wide_p95_of_one_nodes_slow_clients(self):
        self.start_fleet()
        clients = self.traffic()
        try:
            answer = self.veer_nodes[2].request({"cmd": "rollout", "service": SERVICE, "action": "start"})
            self.assertTrue(answer.get("ok"), answer)  # from a node that does not lead
            for n in (1, 2, 3):
                e2e.wait_for(f"node {n} at canary 10 %", lambda n=n: self.canary_applied(n) == 10.0,
                             e2e.scaled(10), 0.1)
            # Each node's busy client (one address, the same 200 source ports every round) at 10 %: some of its
            # connections reach the canary. The same ports after the abort must reach blue only.
            for n in (1, 2, 3):
                r = self.busy_client(n)
                self.assertEqual(r["errors"], {}, f"node {n}: {r}")
                self.assertGreater(r["variants"].get("canary", 0), 0, f"node {n}: {r['variants']}")
            time.sleep(INTERVAL_S)  # a healthy interval more: the gate passes on the sum
            self.assertEqual(self.rollout_of(1)["phase"], "Paused")
            t_change = self.fleet.node(1).knobs_timed(
                "canary", {"latency": "fixed:300", "latency_clients": "10.0.3.0/24,fd00:3::/64"})[0]
            budget = INTERVAL_S * (FAILURE_LIMIT + 1) + e2e.scaled(1.0)
            deadline = t_change + budget + e2e.scaled(5)
            rolled_back = {}
            while len(rolled_back) < 3 and time.time() < deadline:
                for n in (1, 2, 3):
                    if n not in rolled_back and self.canary_applied(n) == 0.0:
                        rolled_back[n] = time.time() - t_change
                time.sleep(0.05)
            print(f"  (b) canary weight 0 after the knob change: "
                  f"{ {n: round(t, 2) for n, t in rolled_back.items()} } s (budget {budget:.1f} s)", flush=True)
            self.assertEqual(sorted(rolled_back), [1, 2, 3], "not every node rolled back")
            for n, took in rolled_back.items():
                self.assertLessEqual(took, budget, f"node {n}")
        finally:
            for c in clients:
                c.stop()
            self.fleet.node(1).knobs("canary", "reset=true")
        for n in (1, 2, 3):
            self.assertEqual(self.rollout_of(n)["phase"], "Aborted", f"node {n}")
            r = self.busy_client(n)
            self.assertEqual((r["variants"], r["errors"]), ({"blue": BUSY_PORTS}, {}),
                             f"node {n}: reused ports after the abort")
        print(f"  (b) after the abort, each node's busy client: {BUSY_PORTS}/{BUSY_PORTS} reused ports on blue",
              flush=True)
        tables = self.history(f"/veer/services/{SERVICE}/table")
        aborts = [t for t in tables if t["cause"].startswith("rollout: abort")]
        self.assertEqual(len(aborts), 1, [t["cause"] for t in tables])
        self.assertEqual(aborts[0]["writer"], "node-1")  # the leader, on the sum: node 1 saw no slow response
        abort_events = [e for e in self.veer_nodes[3].events(SERVICE) if e["kind"] == "abort"]
        self.assertEqual(len(abort_events), 1, abort_events)
        self.assertIn("node-1", abort_events[0]["message"])

    # ------------------------------------------------------------ (c)

    def test_3_c_kill9_of_the_leader_mid_pause_another_node_continues_at_the_same_step(self):
        self.start_fleet()
        old = next(n for n in (1, 2, 3) if self.fleet_view(n)["is_leader"])  # node 1 unless (d) ran first
        others = [n for n in (1, 2, 3) if n != old]
        clients = self.traffic()
        try:
            phase = self.rollout_of(others[0])["phase"]
            action = "retry" if phase == "Aborted" else "start"  # after (b), or on its own
            answer = self.veer_nodes[others[0]].request({"cmd": "rollout", "service": SERVICE, "action": action})
            self.assertTrue(answer.get("ok"), answer)
            e2e.wait_for("step 3 (set_weight 30)", lambda: self.canary_applied(others[0]) == 30.0, e2e.scaled(20), 0.1)
            entered = time.time()  # the second pause began about now
            time.sleep(2.5)
            self.veer_nodes[old].kill9()
            killed = time.time()
            new_leader, took = e2e.wait_for(
                "another node leads",
                lambda: next((n for n in others if self.fleet_view(n)["is_leader"]), None),
                e2e.scaled(LEASE_TTL_S + 5), 0.05)
            print(f"  (c) node {new_leader} leads {took:.2f} s after the kill", flush=True)
            self.assertLessEqual(took, LEASE_TTL_S + e2e.scaled(1.0))
            self.assertEqual(self.rollout_of(new_leader)["step"], 3)  # the same pause step
            _, _ = e2e.wait_for("canary at 100 %", lambda: self.canary_applied(new_leader) == 100.0,
                                e2e.scaled(PAUSE_S + 10), 0.05)
            pause_lasted = time.time() - entered
            print(f"  (c) the pause of {PAUSE_S} s lasted {pause_lasted:.1f} s across the kill", flush=True)
            self.assertGreaterEqual(pause_lasted, PAUSE_S - 0.5)
            records = [(r["seq"], r["writer"], r["state"]["phase"], r["state"]["step"],
                        r["state"].get("pause_spent_ms")) for r in self.history(f"/veer/services/{SERVICE}/rollout")]
            # From the set_weight 30 seen to the canary at 100 %: the set_weight step's tick, the pause, and what no
            # leader watched: the kill to the lease's end, the new leader's first interval (it takes every node's
            # baseline, nothing can be judged) and its first tick (the restored engine counts no time up to it):
            # interval + pause + lease_ttl + 2 intervals, plus slack.
            self.assertLessEqual(pause_lasted, PAUSE_S + 3 * INTERVAL_S + LEASE_TTL_S + e2e.scaled(1.5), records[-15:])
            last_old = max(i for i, r in enumerate(records) if r[1] == f"node-{old}")
            spent = [r[4] for r in records[last_old + 1:] if r[2] == "Paused"]  # the new leader's, in this pause
            self.assertGreater(spent[0], 0, f"the new leader began the pause anew: {records[-15:]}")
            e2e.wait_for("completed", lambda: self.rollout_of(new_leader)["phase"] == "Completed",
                         e2e.scaled(10), 0.1)
        finally:
            for c in clients:
                c.stop()
        tables = self.history(f"/veer/services/{SERVICE}/table")
        versions = [t["version"] for t in tables]
        self.assertEqual(versions, list(range(versions[0], versions[0] + len(versions))), versions)
        # This rollout's versions: after (b)'s abort, if (b) ran first (the retry walks the steps again).
        aborts = [i for i, t in enumerate(tables) if t["cause"].startswith("rollout: abort")]
        tables = tables[aborts[-1] + 1:] if aborts else tables
        causes = [t["cause"] for t in tables if t["cause"].startswith("rollout")]
        self.assertEqual(len(causes), len(set(causes)), f"a step ran twice: {causes}")
        weights = [t["weights_bp"] for t in tables]
        canary = [w[-1] for w in weights]
        self.assertEqual([c for i, c in enumerate(canary) if i == 0 or canary[i - 1] != c], [1000, 3000, 10000])
        rollouts = self.history(f"/veer/services/{SERVICE}/rollout")
        seqs = [r["seq"] for r in rollouts]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "rollout records out of order or repeated")
        self.assertIn(f"node-{new_leader}", {r["writer"] for r in rollouts})
        sizes = sorted(len(json.dumps(r, separators=(",", ":"))) for r in rollouts)
        print(f"  (c) {len(rollouts)} rollout records written (one txn each, with the table version when the "
              f"weights changed): {sizes[0]}..{sizes[-1]} bytes, median {sizes[len(sizes) // 2]}", flush=True)
        # The killed node comes back, catches up, and follows the new leader.
        self.veer_nodes[old] = self.start_veerd(old, node_config(self.fleet, old))
        current = self.fleet_view(new_leader)["services"][SERVICE]["current_version"]
        e2e.wait_for("the killed node caught up", lambda: self.fleet_view(old)["services"][SERVICE]["applied_version"] == current,
                     e2e.scaled(10), 0.1)
        self.assertEqual(self.rollout_of(old)["phase"], "Completed")


    # ------------------------------------------------------------ (d)

    def leader_key(self):
        proc = self.fleet.etcdctl("get", "/veer/leader", "-w", "json", check=True)
        answer = json.loads(proc.stdout)
        kvs = answer.get("kvs") or []
        return answer["header"]["revision"], (kvs[0] if kvs else None)

    def test_2_d_a_deposed_leader_that_still_runs_writes_nothing(self):
        self.start_fleet()
        old = next(n for n in (1, 2, 3) if self.fleet_view(n)["is_leader"])
        old_term = self.fleet_view(old)["term"]
        clients = self.traffic()  # the gates need responses: without them the pause ends Inconclusive (held)
        try:
            self.deposed_leader_case(old, old_term)
        finally:
            for c in clients:
                c.stop()

    def deposed_leader_case(self, old, old_term):
        phase = self.rollout_of(old)["phase"]
        answer = self.veer_nodes[old].request({"cmd": "rollout", "service": SERVICE,
                                               "action": "retry" if phase == "Aborted" else "start"})
        self.assertTrue(answer.get("ok"), answer)
        others = [n for n in (1, 2, 3) if n != old]
        e2e.wait_for("the pause after 10 %", lambda: self.rollout_of(others[0])["phase"] == "Paused", e2e.scaled(10),
                     0.1)
        pid = self.veer_nodes[old].proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            revision, kv = self.leader_key()
            self.assertIsNotNone(kv)
            lease = int(kv["lease"])
            revoke = self.fleet.etcdctl("lease", "revoke", format(lease, "x"))
            self.assertEqual(revoke.returncode, 0, revoke.stderr)
            new, took = e2e.wait_for("another node leads",
                                     lambda: next((n for n in others if self.fleet_view(n)["is_leader"]), None),
                                     e2e.scaled(5), 0.05)
            print(f"  (d) node {old} stopped, its lease revoked: node {new} leads {took:.2f} s later", flush=True)
            # The new leader goes on: the pause ends, the canary moves to 30 %.
            e2e.wait_for("the next step", lambda: self.canary_applied(new) == 30.0, e2e.scaled(PAUSE_S + 5), 0.1)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(3)  # the old leader's timers fire: its tick, its leader poll
        view = self.fleet_view(old)
        self.assertFalse(view["is_leader"])
        self.assertEqual(view["leader"], f"node-{new}")
        written = self.history(f"/veer/services/{SERVICE}/", rev=revision + 1, prefix=True)
        self.assertTrue(written, "the new leader wrote nothing after the revocation")
        from_old = [w for w in written if w.get("writer") == f"node-{old}"]
        self.assertEqual(from_old, [], f"the deposed leader wrote after its lease was revoked")
        self.assertEqual({w["term"] for w in written if "term" in w} - {0}, {self.fleet_view(new)["term"]})
        self.assertNotIn(old_term, {w.get("term") for w in written})
        said = [e["message"] for e in self.veer_nodes[old].events() if e["kind"] == "leader"]
        self.assertTrue(any("no longer the fleet's leader" in m for m in said), said)
        current = self.fleet_view(new)["services"][SERVICE]["current_version"]
        e2e.wait_for(f"node {old} applies the fleet's versions",
                     lambda: self.fleet_view(old)["services"][SERVICE]["applied_version"] >= current, e2e.scaled(5),
                     0.1)
        self.veer_nodes[new].request({"cmd": "rollout", "service": SERVICE, "action": "abort"})


if __name__ == "__main__":
    e2e.main()
