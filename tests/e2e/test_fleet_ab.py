#!/usr/bin/env python3
"""Fleet A/B and push gates e2e (issue 11 (h); docs/fleet.md "A/B and push gates across the fleet"): three
veerd's on the fleet testbed and a real three-member etcd.
(h) an A/B rollout (50/50, client-ip affinity) started from node 3: real traffic from every node's clients at
    different rates, conversions pushed to different nodes; `veerctl ab` on every node gives the same report,
    whose flows per arm are the sum of all nodes' clients' connections and whose n are all nodes' pushes; the
    sample-ratio-mismatch check reads the fleet's flows: a skew from node 3's clients alone (more requests
    from clients of one arm) makes the report on node 1, which saw balanced traffic, hold on SRM;
(p) a canary whose push gate (`conversion` min 0.05) gets its values on nodes 2 and 3, never on the leader
    (node 1): the leader judges the gate on the sum of the pushes (its value is the fleet's mean) and aborts
    the rollout when node 3's pushes drag the mean below the bound; every node applies canary weight 0."""
import time

import veer_e2e as e2e
import veer_fleet

AB = "ranker"
PUSHED = "scorer"
INTERVAL_S = 1.0
PER_ARM = 8  # clients per arm on each node
AB_ROLLOUT = ("      strategy: ab\n"
              "      interval: 1s\n"
              "      metric: { name: conversion, kind: proportion }\n"
              "      alpha: 0.05\n"
              "      power: 0.8\n"
              "      min_detectable_effect: 0.03\n")
# The second service: the backends' echo port behind port 81 (a backend belongs to one service), a canary
# judged only by a push gate (it needs no traffic).
SCORER = """  - name: scorer
    vip: 10.0.0.100
    port: 81
    protocol: tcp
    affinity: connection
    stable: blue
    variants:
      blue: { backends: ["10.1.1.2:7000"] }
      canary: { backends: ["10.1.3.2:7000"] }
    weights: { blue: 100 }
    rollout:
      strategy: canary
      canary: canary
      interval: 1s
      steps: [ {set_weight: 20}, {pause: 60s}, {set_weight: 100} ]
      gates:
        - { name: conversion, metric: conversion, source: push, min: 0.05 }
      failure_limit: 0
"""


def node_config(fleet, n):
    text = e2e.ranker_config(AB_ROLLOUT, weights="{ blue: 50, canary: 50 }", affinity="client-ip",
                             metrics_url=False) + SCORER
    return veer_fleet.fleet_config(text, fleet.prefix, n)


class TestFleetAb(veer_fleet.FleetCase):
    prefix = "ve2e-flab"

    def start_fleet(self):
        self.start_leading_fleet(lambda n: node_config(self.fleet, n))

    def ok(self, n, request):
        answer = self.veer_nodes[n].request(request)
        self.assertTrue(answer.get("ok"), f"node {n}: {request}: {answer}")
        return answer["result"]

    def push(self, n, service, variant, values):
        result = self.ok(n, {"cmd": "push", "service": service, "variant": variant, "values": values})
        self.assertTrue(result["in_etcd"], result)
        return result

    def report(self, n):
        return self.ok(n, {"cmd": "ab", "service": AB})

    def arms(self, n):
        return {v["variant"]: v for v in self.report(n)["variants"]}

    def which(self, n, client):
        return self.ok(n, {"cmd": "which", "service": AB, "client": client})["variant"]

    def applied(self, n, service):
        return e2e.applied(self.veer_nodes[n].service_status(service))

    def clients_by_arm(self, n):
        """PER_ARM client addresses of node N per arm, as `which` on node N assigns them (client-ip)."""
        by_arm = {"blue": [], "canary": []}
        for host in range(11, 61):
            addr = self.fleet.node(n).client_addr(host)
            arm = self.which(n, addr)
            if len(by_arm[arm]) < PER_ARM:
                by_arm[arm].append(addr)
        self.assertEqual([len(a) for a in by_arm.values()], [PER_ARM, PER_ARM], by_arm)
        return by_arm

    def rate(self, n, sources, rate, duration):
        r = self.fleet.client(n, "rate", "--dst", e2e.VIP4, "--port", 80, "--src", ",".join(sources), "--rate", rate,
                              "--duration", duration, timeout=120)
        self.assertEqual(r["sent"], rate * duration, f"node {n}: {r}")
        self.assertEqual(r["done"], r["sent"], f"node {n}: {r}")
        self.assertNotIn("unattributed", r["variants"], f"node {n}")
        return {v: o["count"] for v, o in r["variants"].items()}

    def wait_reports_equal(self, what, check):
        """Waits until every node's A/B report satisfies CHECK and the three agree; returns node 1's."""
        last = {}

        def agree():
            for n in (1, 2, 3):
                last[n] = self.report(n)
            return all(check(last[n]) for n in (1, 2, 3)) and last[1] == last[2] == last[3]

        e2e.wait_for(what, agree, e2e.scaled(15), 0.3)
        return last[1]

    # ------------------------------------------------------------ (h)

    def test_1_h_ab_counts_flows_and_pushes_of_every_node(self):
        self.start_fleet()
        answer = self.ok(3, {"cmd": "rollout", "service": AB, "action": "start"})
        self.assertEqual(answer["phase"], "Progressing", answer)
        by_node = {n: self.clients_by_arm(n) for n in (1, 2, 3)}
        # The fleet's counts start at the leader's first interval after the start (its baselines of every
        # node's counters): traffic from two intervals on counts whole.
        time.sleep(2 * INTERVAL_S + 0.5)
        sent = {"blue": 0, "canary": 0}
        for n, rate in ((1, 40), (2, 80), (3, 20)):  # each node's clients at their own rate, both arms alike
            got = self.rate(n, by_node[n]["blue"] + by_node[n]["canary"], rate, 5)
            for v, c in got.items():
                sent[v] += c
        print(f"  (h) connections per arm from the three nodes' clients: {sent}", flush=True)
        # Conversions pushed to different nodes: 300/3000 for blue, 390/3000 for canary in all.
        self.push(1, AB, "blue", {"conversion": "1*270"})
        self.push(1, AB, "blue", {"conversion": "0*2430"})
        self.push(2, AB, "blue", {"conversion": "1*30"})
        self.push(2, AB, "blue", {"conversion": "0*270"})
        self.push(2, AB, "canary", {"conversion": "1*351"})
        self.push(2, AB, "canary", {"conversion": "0*2349"})
        self.push(3, AB, "canary", {"conversion": "1*39"})
        self.push(3, AB, "canary", {"conversion": "0*261"})

        def complete(rep):
            arms = {v["variant"]: v for v in rep["variants"]}
            return (arms["blue"]["n"], arms["canary"]["n"]) == (3000, 3000) and \
                arms["blue"]["flows"] + arms["canary"]["flows"] >= sent["blue"] + sent["canary"]

        rep = self.wait_reports_equal("the same complete A/B report on all three nodes", complete)
        arms = {v["variant"]: v for v in rep["variants"]}
        print(f"  (h) fleet report: flows { {v: a['flows'] for v, a in arms.items()} }, n "
              f"{ {v: a['n'] for v, a in arms.items()} }, srm p {rep['srm_p_value']:.3g}, verdict {rep['verdict']!r}",
              flush=True)
        self.assertEqual({v: a["flows"] for v, a in arms.items()}, sent, "flows are every node's connections")
        self.assertAlmostEqual(arms["blue"]["estimate"], 0.10, places=9)
        self.assertAlmostEqual(arms["canary"]["estimate"], 0.13, places=9)
        self.assertTrue(rep["significant"], rep)
        self.assertFalse(rep["srm_mismatch"], rep)

        # A skew only node 3's clients make: three times the requests from its blue clients. Node 1's own
        # traffic was balanced; its report reads the fleet's flows and holds on the mismatch.
        self.rate(3, by_node[3]["blue"], 120, 5)
        rep = self.wait_reports_equal("every node's report holds on the fleet's sample ratio mismatch",
                                      lambda r: r["srm_mismatch"])
        print(f"  (h) after node 3's skew: flows { {v['variant']: v['flows'] for v in rep['variants']} }, "
              f"srm p {rep['srm_p_value']:.3g}, verdict {rep['verdict']!r}", flush=True)
        self.assertIn("sample ratio mismatch", rep["verdict"])
        self.assertLess(rep["srm_p_value"], 0.001)

    # ------------------------------------------------------------ (p)

    def test_2_p_push_gate_on_the_sum_of_other_nodes_pushes(self):
        self.start_fleet()
        self.ok(2, {"cmd": "rollout", "service": PUSHED, "action": "start"})
        for n in (1, 2, 3):
            e2e.wait_for(f"node {n} at scorer canary 20 %", lambda n=n: self.applied(n, PUSHED)["canary"] == 20.0,
                         e2e.scaled(10), 0.1)

        def gate_on(n):
            rollout = self.veer_nodes[n].service_status(PUSHED)["rollout"]
            return rollout, next(g for g in rollout["gates"] if g["name"] == "conversion")

        # Healthy pushes, on nodes 2 and 3 only: 2 of 10 on node 2, 1 of 10 on node 3 every 0.25 s.
        deadline = time.time() + 4 * INTERVAL_S
        while time.time() < deadline:
            self.push(2, PUSHED, "canary", {"conversion": "1*2"})
            self.push(2, PUSHED, "canary", {"conversion": "0*8"})
            self.push(3, PUSHED, "canary", {"conversion": "1*1"})
            self.push(3, PUSHED, "canary", {"conversion": "0*9"})
            time.sleep(0.25)
        rollout, gate = gate_on(1)
        print(f"  (p) the leader's gate on the pushes of nodes 2 and 3: {gate}", flush=True)
        self.assertEqual(rollout["phase"], "Paused", rollout)
        self.assertEqual(gate["last_result"], "Successful", gate)
        self.assertAlmostEqual(gate["value"], 0.15, delta=0.035)  # (2 + 1) / 20 a round: the fleet's mean (node 2
        # alone is 0.2, node 3 alone 0.1; an interval may split one round)

        # Node 3's pushes turn bad (none converted) and outweigh node 2's: the fleet's mean falls below 0.05.
        t_bad = time.time()
        rolled_back = {}
        while len(rolled_back) < 3 and time.time() < t_bad + e2e.scaled(10):
            self.push(2, PUSHED, "canary", {"conversion": "1*1"})
            self.push(2, PUSHED, "canary", {"conversion": "0*9"})
            self.push(3, PUSHED, "canary", {"conversion": "0*90"})
            for n in (1, 2, 3):
                if n not in rolled_back and self.applied(n, PUSHED)["canary"] == 0.0:
                    rolled_back[n] = time.time() - t_bad
            time.sleep(0.25)
        print(f"  (p) canary weight 0 after the bad pushes began: "
              f"{ {n: round(t, 2) for n, t in rolled_back.items()} } s", flush=True)
        self.assertEqual(sorted(rolled_back), [1, 2, 3], "not every node rolled back")
        for n in (1, 2, 3):
            rollout, gate = gate_on(n)
            self.assertEqual(rollout["phase"], "Aborted", f"node {n}: {rollout}")
        abort = [e for e in self.veer_nodes[2].events(PUSHED) if e["kind"] == "abort"]
        self.assertEqual(len(abort), 1, abort)
        self.assertIn("node-1", abort[0]["message"])  # the leader wrote it, on pushes it never took


if __name__ == "__main__":
    e2e.main()
