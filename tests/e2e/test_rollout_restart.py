#!/usr/bin/env python3
"""(h) veerd killed (-9) in the middle of a canary rollout, with steady traffic through the VIP, and started
again: it resumes at the same step (phase, step, desired and applied weights) with the pause time already
spent (neither restarted from the full pause nor charged with the downtime), then finishes the rollout.
The data plane keeps the canary's weight while veerd is down; the client sees no failure."""
import json
import os
import time

import veer_e2e as e2e

PAUSE_S = 12.0
DOWN_S = 3.0
ROLLOUT = """      strategy: canary
      canary: canary
      interval: 1s
      steps: [ {set_weight: 5}, {pause: 2s}, {set_weight: 20}, {pause: 12s}, {set_weight: 50}, {pause: 2s},
               {set_weight: 100} ]
      gates:
        - { metric: latency_p95_ms, source: kernel, max: 200 }
      failure_limit: 1
"""


class TestRolloutRestart(e2e.RolloutCase):
    prefix = "ve2e-rrs"

    @classmethod
    def config_text(cls, tb):
        return e2e.for_prefix(e2e.ranker_config(ROLLOUT), tb.prefix)

    def test_kill9_resumes_at_same_step(self):
        traffic = self.start_traffic("10.0.1.11-10.0.1.60", 200, 120, "--progress", 1)
        traffic.next_progress()
        self.veerd.rollout("ranker", "start")
        svc, _ = self.wait_status("the 12 s pause after 20 %", lambda s: s["rollout"]["step"] == 3 and
                                  s["rollout"]["phase"] == "Paused" and
                                  s["rollout"]["pause_remaining_ms"] <= (PAUSE_S - 3) * 1000, 30, period=0.2)
        before = svc["rollout"]
        print(f"  before kill -9: {e2e.format_rollout(svc)}; pause_remaining_ms {before['pause_remaining_ms']}",
              flush=True)
        with open(os.path.join(self.tb.run_dir, "state", "state.json")) as f:
            persisted = json.load(f)
        print(f"  state.json: {json.dumps(persisted)[:400]}", flush=True)

        self.veerd.kill9()
        killed_at = time.monotonic()
        # while veerd is down the data plane keeps the canary at 20 %: a client window entirely in the downtime
        window = traffic.window_after_now()
        self.assertIn("canary", window, window)
        self.assertEqual(window["canary"]["ok"] + window["blue"]["ok"], window["canary"]["count"] +
                         window["blue"]["count"], window)
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - killed_at)))
        self.veerd.start()
        restarted_at = time.monotonic()
        down = restarted_at - killed_at
        svc = self.status()
        after = svc["rollout"]
        print(f"  right after restart ({down:.1f} s down): {e2e.format_rollout(svc)}; pause_remaining_ms "
              f"{after['pause_remaining_ms']}", flush=True)
        self.assertTrue(self.veerd.status()["node"]["adopted"])
        self.assertEqual((after["phase"], after["step"]), (before["phase"], before["step"]))
        self.assertEqual(e2e.desired(svc), {"blue": 80.0, "canary": 20.0})
        self.assertEqual(e2e.applied(svc), {"blue": 80.0, "canary": 20.0})
        self.assertLessEqual(after["pause_remaining_ms"], before["pause_remaining_ms"] + 1500, after)
        # after the first interval the status shows the pause left as the engine counts it: what was left at
        # the kill minus the time since the restart (the downtime does not count: no gate watched it)
        time.sleep(1.5)
        svc = self.status()
        left = svc["rollout"]["pause_remaining_ms"]
        expected_left = before["pause_remaining_ms"] - 1000 * (time.monotonic() - restarted_at)
        print(f"  1.5 s after the restart: pause_remaining_ms {left} (expected about {expected_left:.0f})", flush=True)
        self.assertEqual((svc["rollout"]["phase"], svc["rollout"]["step"]), (before["phase"], before["step"]))
        self.assertLessEqual(abs(left - expected_left), 1500, svc["rollout"])

        # the next step comes when the pause left at the kill has passed since the restart
        svc, _ = self.wait_status("the step after the pause", lambda s: s["rollout"]["step"] > before["step"],
                                  PAUSE_S + 10, period=0.1)
        to_next = time.monotonic() - restarted_at
        print(f"  next step {to_next:.1f} s after the restart (pause left at the kill "
              f"{before['pause_remaining_ms'] / 1000:.1f} s; downtime {down:.1f} s)", flush=True)
        # not sooner: the downtime did not count (it would come ~DOWN_S early)
        self.assertGreaterEqual(to_next, before["pause_remaining_ms"] / 1000.0 - 1.0)
        # not the whole pause again (that would take >= PAUSE_S); the pause left at the kill (<= 9 s) plus the
        # engine's own slack stays below it
        self.assertLess(to_next, PAUSE_S)

        svc, took = self.wait_status("rollout Completed", lambda s: s["rollout"]["phase"] == "Completed", 15,
                                     period=0.2)
        print(f"  completed: {e2e.format_rollout(svc)}", flush=True)
        self.print_events()
        self.assertEqual(svc["stable"], "canary")
        kinds = [e["kind"] for e in self.veerd.events("ranker")]
        self.assertNotIn("abort", kinds)
        # events before the kill may or may not be reloaded from events.jsonl; a second start is wrong either way
        self.assertLessEqual(kinds.count("started"), 1, "the restart must not start the rollout again")
        done = traffic.stop()
        t = done["totals"]
        self.assertEqual((t["resets"], t["refused"], t["http_5xx"], t["errors"]), (0, 0, 0, {}), t)
        self.assertEqual(t["timeouts"], {"connect": 0, "response": 0}, t)


if __name__ == "__main__":
    e2e.main()
