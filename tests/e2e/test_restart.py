#!/usr/bin/env python3
"""(d) `kill -9` of veerd while long-lived traffic flows loses no flow; the data plane keeps splitting new
connections while veerd is down; a restarted veerd adopts the pinned state: flows keep their backends
(`veerctl which`), weights are kept, `status --json` counters continue (>= before, and include what flowed
while veerd was down)."""
import time

import veer_e2e as e2e

# Scaled by VEER_E2E_FLOWS_FACTOR, with floors.
LONG_LIVED = e2e.flows(40, 20)
WHILE_DOWN = e2e.flows(300, 60)


class TestRestart(e2e.VeerCase):
    prefix = "ve2e-restart"

    def which_all(self, conns):
        out = {}
        for c in conns:
            rc, answer = self.veerd.ctl_json("which", "ranker-echo", c["local"])
            self.assertTrue(answer.get("ok"), answer)
            out[c["index"]] = answer["result"]
        return out

    def test_kill9_and_adopt(self):
        src_long, src_down = "10.0.1.41", "10.0.1.42"
        long = self.tb.long_client("--dst", e2e.VIP4, "--port", 7000, "--src", src_long, "--connections",
                                   LONG_LIVED, "--interval", 0.1, "--duration", e2e.scaled(60),
                                   "--time-limit", e2e.scaled(120))
        try:
            ready = long.ready()
            conns = ready["connections"]
            self.assertTrue(all(c["error"] is None and c["variant"] for c in conns), ready)
            for c in conns:
                w = self.which_all([c])[c["index"]]
                self.assertTrue(w["established"], w)
                self.assertEqual(w["variant"], c["variant"], w)
            status_before = self.veerd.status()
            weights_before = {s["name"]: self.veerd.weights(s["name"], status_before)
                              for s in status_before["services"]}

            self.veerd.kill9()
            time.sleep(0.5)
            # veerd is gone; the data plane keeps splitting new connections
            r = self.tb.client("http", "--dst", e2e.VIP4, "--port", 80, "--src", src_down, "--count", WHILE_DOWN)
            print(f"  while veerd is down: {r['variants']} errors {r['errors']}", flush=True)
            self.assertEqual(r["completed"], WHILE_DOWN, r)
            self.assertGreater(r["variants"].get("blue", 0), 0)
            time.sleep(0.5)

            self.veerd.start()
            status_after = self.veerd.status()
            self.assertTrue(status_after["node"]["adopted"], status_after["node"])
            for svc in status_before["services"]:
                name = svc["name"]
                self.assertEqual(self.veerd.weights(name, status_after), weights_before[name])
                before, after = self.veerd.counters(name, status_before), self.veerd.counters(name, status_after)
                for v in before:
                    for k in before[v]:
                        self.assertGreaterEqual(after[v][k], before[v][k], f"{name}/{v}/{k} went backwards")
            before, after = self.veerd.counters("ranker", status_before), self.veerd.counters("ranker", status_after)
            self.assertGreaterEqual(sum(after[v]["flows"] - before[v]["flows"] for v in after), WHILE_DOWN,
                                    "flows made while veerd was down are missing from the adopted counters")
            # adopted flow table: every long-lived connection still maps to the variant that answers it
            for c in conns:
                w = self.which_all([c])[c["index"]]
                self.assertTrue(w["established"], w)
                self.assertEqual(w["variant"], c["variant"], w)
            time.sleep(1.0)
        finally:
            done = long.finish()
        s = done["summary"]
        print(f"  long-lived across kill -9 and restart: {s}", flush=True)
        self.assertEqual(s["errors"], 0, [c for c in done["connections"] if c["error"]])
        self.assertEqual(s["changed_variant"], 0)
        first = {c["index"]: c["variant"] for c in ready["connections"]}
        for c in done["connections"]:
            self.assertEqual(c["variants"], {first[c["index"]]: c["sent"]}, c)


if __name__ == "__main__":
    e2e.main()
