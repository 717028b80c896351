#!/usr/bin/env python3
"""Canary rollouts on the testbed with real traffic at a steady rate through the VIP (issue 4, e2e (a)-(d)):
(a) a healthy canary walks 5 -> 20 -> 50 -> 100 and becomes stable (examples/rollout-canary.yaml as written);
(b) the canary's latency raised to 300 ms at the 20 % step trips the kernel `latency_p95_ms max 200` gate:
    applied weight 0 within interval x (failure_limit + 1) + 1 s of the knob change, and the event log holds
    the P95 that tripped it (same example config);
(c) the canary answering HTTP 500 on 2 % of requests trips `error_rate max 0.001` likewise;
(d) the canary's prediction labels drift, seen through the prometheus source (each variant's metrics_url):
    abort on prediction_kl.
Each case is its own class, so each gets a fresh testbed and veerd (fresh pins and state.json)."""
import os
import time

import veer_e2e as e2e

# Budget of (b) and (c): interval x (failure_limit + 1) + 1 s, from the issue.
INTERVAL_S = 1.0


def reaction_budget(failure_limit):
    """The evaluations run on wall time, so the intervals stay; the second of slack covers what emulation
    slows down (the responses that show the breach reaching the kernel's telemetry, the read, the flip, the
    status poll), so it scales with VEER_E2E_SCALE (1 on a real machine: the issue's budget exactly; in a
    TCG guest a breach is sometimes first seen one evaluation later)."""
    return INTERVAL_S * (failure_limit + 1) + e2e.scaled(1.0)


def dedup(values):
    out = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


class CanaryMixin:
    def wait_canary_applied(self, weight, timeout):
        svc, took = self.wait_status(f"canary applied weight {weight}",
                                     lambda s: e2e.applied(s)["canary"] == weight, timeout)
        return svc

    def measure_rollback(self, t_change, timeout):
        """Polls status every 100 ms until the canary's applied weight is 0; returns (seconds since T_CHANGE,
        the status then, the Unix time it was seen: the table had flipped by then)."""
        deadline = t_change + timeout
        while True:
            svc = self.status()
            now = time.time()  # T_CHANGE is a Unix time (taken in the backend's namespace)
            if e2e.applied(svc)["canary"] == 0.0:
                return now - t_change, svc, now
            if now > deadline:
                self.print_events()
                self.fail(f"canary not rolled back within {timeout}s: {e2e.format_rollout(svc)}")
            time.sleep(0.1)

    def abort_event(self, since):
        events = self.veerd.events("ranker", since)
        aborts = [e for e in events if e["kind"] == "abort"]
        self.assertEqual(len(aborts), 1, f"expected one abort event: {events}")
        return aborts[0]

    def stop_and_check_no_canary_after(self, traffic, rolled_back_at, what):
        """Two more seconds of traffic, then: every connection the client opened after the rollback was seen
        reached blue (connections opened before it may rightly finish on the canary, however late)."""
        time.sleep(2.0)
        done = traffic.stop()
        seen = e2e.assert_connections_opened_reach(self, done, "blue", rolled_back_at, what=what)
        print(f"  {what}: connections opened after the rollback: {seen}", flush=True)
        return done


class TestCanaryHealthy(CanaryMixin, e2e.RolloutCase):
    """(a) with examples/rollout-canary.yaml as written."""
    prefix = "ve2e-rca"

    @classmethod
    def config_text(cls, tb):
        return e2e.example_config("rollout-canary.yaml", tb.prefix)

    def test_examples_pass_check_config(self):
        for name in ("rollout-canary.yaml", "rollout-bluegreen.yaml", "rollout-ab.yaml"):
            path = os.path.join(e2e.ARGS.source_dir, "examples", name)
            proc = e2e.run([e2e.ARGS.veerd, "--check-config", path], check=False)
            self.assertEqual(proc.returncode, 0, f"{name}: {proc.stdout}{proc.stderr}")

    def test_healthy_canary_walks_to_stable(self):
        traffic = self.start_traffic("10.0.1.11-10.0.1.60", 200, 120, "--progress", 1)
        traffic.next_progress()
        svc = self.status()
        self.assertEqual(e2e.applied(svc), {"blue": 100.0, "canary": 0.0})
        self.assertIn((svc.get("rollout") or {}).get("phase"), ("Idle", None), svc.get("rollout"))
        recorder = e2e.StatusRecorder(self.veerd, "ranker", 0.1)
        try:
            started = self.veerd.rollout("ranker", "start")
            print(f"  rollout start: {started['result']}", flush=True)
            svc, took = self.wait_status("rollout Completed", lambda s: s["rollout"]["phase"] == "Completed", 60,
                                         period=0.2)
        finally:
            samples = recorder.stop()
        self.print_events()
        print(f"  completed after {took:.1f} s: {e2e.format_rollout(svc)}", flush=True)
        walk = dedup([e2e.applied(s)["canary"] for _, s in samples])
        while walk and walk[0] == 0.0:
            walk.pop(0)
        self.assertEqual(walk, [5.0, 20.0, 50.0, 100.0], "applied canary weights over time")
        # desired and applied agree at every sample once the table flipped: never more than desired
        for _, s in samples:
            self.assertAlmostEqual(sum(e2e.applied(s).values()), 100.0, places=2)
        # each pause lasted its 5 s: first time each weight was applied
        first_seen = {}
        for t, s in samples:
            first_seen.setdefault(e2e.applied(s)["canary"], t)
        for a, b in ((5.0, 20.0), (20.0, 50.0), (50.0, 100.0)):
            self.assertGreaterEqual(first_seen[b] - first_seen[a], 5.0 - 0.3, f"pause between {a} and {b}")
        self.assertEqual(svc["stable"], "canary", "after the last step the canary is the new stable")
        self.assertEqual(e2e.applied(svc), {"blue": 0.0, "canary": 100.0})
        self.assertEqual(e2e.desired(svc), {"blue": 0.0, "canary": 100.0})
        kinds = [e["kind"] for e in self.veerd.events("ranker")]
        self.assertIn("completed", kinds)
        self.assertNotIn("abort", kinds)
        # new connections now all reach the canary
        completed_at = time.time()
        time.sleep(2.0)
        done = traffic.stop()
        e2e.assert_connections_opened_reach(self, done, "canary", completed_at, what="after the last step")
        totals = done["totals"]
        print(f"  traffic: {done['done']} requests, per variant "
              f"{ {v: o['count'] for v, o in done['variants'].items()} }", flush=True)
        self.assertEqual((totals["http_5xx"], totals["resets"], totals["refused"], totals["errors"]), (0, 0, 0, {}))
        self.assertEqual(totals["timeouts"], {"connect": 0, "response": 0})
        self.assertGreater(done["variants"]["canary"]["ok"], 0)


class TestCanaryLatencyAbort(CanaryMixin, e2e.RolloutCase):
    """(b) with examples/rollout-canary.yaml (latency_p95_ms max 200, interval 1s, failure_limit 1)."""
    prefix = "ve2e-rcb"
    failure_limit = 1

    @classmethod
    def config_text(cls, tb):
        return e2e.example_config("rollout-canary.yaml", tb.prefix)

    def tearDown(self):
        self.tb.knobs("canary", "reset=true")

    def test_latency_breach_rolls_back(self):
        traffic = self.start_traffic("10.0.1.11-10.0.1.60", 250, 120, "--progress", 1)
        traffic.next_progress()
        self.veerd.rollout("ranker", "start")
        svc = self.wait_canary_applied(20.0, 20)
        self.assertIn(svc["rollout"]["phase"], ("Progressing", "Paused"), e2e.format_rollout(svc))
        self.assertNotIn("Failed", [g["last_result"] for g in svc["rollout"]["gates"]], e2e.format_rollout(svc))
        since = svc["rollout"].get("events_next", 0)
        print(f"  at the 20 % step: {e2e.format_rollout(svc)}", flush=True)

        t_change, _ = self.right_after_an_evaluation(self.tb.knob_change("canary", {'latency': 'fixed:300'}))
        reaction, svc, rolled_back_at = self.measure_rollback(t_change, 15)
        budget = reaction_budget(self.failure_limit)
        event = self.abort_event(since)
        print(f"  REACTION (b): latency 300 ms -> canary applied weight 0 in {reaction:.2f} s "
              f"(budget {budget:.1f} s); abort event: {event['message']} {event['values']}", flush=True)
        self.print_events(since=since)
        self.assertLessEqual(reaction, budget)
        self.assertEqual(svc["rollout"]["phase"], "Aborted")
        self.assertEqual(e2e.desired(svc), {"blue": 100.0, "canary": 0.0})
        self.assertEqual(e2e.applied(svc), {"blue": 100.0, "canary": 0.0})
        self.assertEqual(svc["stable"], "blue")
        # the event log holds the P95 that tripped it
        self.assertIn("latency_p95_ms", event["message"])
        self.assertGreater(event["values"]["value"], 200.0, event)
        self.assertEqual(event["values"]["max"], 200.0, event)
        gate = {g["name"]: g for g in svc["rollout"]["gates"]}["latency_p95_ms"]
        self.assertEqual(gate["last_result"], "Failed", gate)
        self.assertEqual(gate["failures"], self.failure_limit + 1, gate)
        done = self.stop_and_check_no_canary_after(traffic, rolled_back_at, "after the abort")
        # the slow canary answered (slowly), nothing failed
        self.assertEqual(done["totals"]["resets"] + done["totals"]["refused"] + done["totals"]["http_5xx"], 0,
                         done["totals"])


class TestCanaryErrorAbort(CanaryMixin, e2e.RolloutCase):
    """(c) error_rate max 0.001 (kernel), canary at 50 %, failure_limit 0: 2 % HTTP 500 aborts."""
    prefix = "ve2e-rcc"
    failure_limit = 0
    ROLLOUT = """      strategy: canary
      canary: canary
      interval: 1s
      steps: [ {set_weight: 50}, {pause: {}}, {set_weight: 100} ]
      gates:
        - { metric: error_rate, source: kernel, max: 0.001, min_samples: 50 }
      failure_limit: 0
"""

    @classmethod
    def config_text(cls, tb):
        return e2e.for_prefix(e2e.ranker_config(cls.ROLLOUT), tb.prefix)

    def tearDown(self):
        self.tb.knobs("canary", "reset=true")

    def test_error_breach_rolls_back(self):
        traffic = self.start_traffic("10.0.1.11-10.0.1.60", 300, 120, "--progress", 1)
        traffic.next_progress()
        self.veerd.rollout("ranker", "start")
        self.wait_canary_applied(50.0, 10)
        svc, _ = self.wait_status("error_rate gate Successful twice",
                                  lambda s: s["rollout"]["phase"] == "WaitingForPromotion" and
                                  s["rollout"]["gates"][0]["last_result"] == "Successful", 10)
        time.sleep(1.2)
        svc = self.status()
        self.assertEqual(svc["rollout"]["gates"][0]["last_result"], "Successful", e2e.format_rollout(svc))
        canary_window = {v["name"]: v.get("window") for v in svc["variants"]}["canary"]
        print(f"  healthy at 50 %: {e2e.format_rollout(svc)}; canary window {canary_window}", flush=True)
        since = svc["rollout"].get("events_next", 0)

        t_change, _ = self.right_after_an_evaluation(self.tb.knob_change("canary", {'error_rate': 0.02}))
        reaction, svc, rolled_back_at = self.measure_rollback(t_change, 15)
        budget = reaction_budget(self.failure_limit)
        event = self.abort_event(since)
        print(f"  REACTION (c): 2 % HTTP 500 -> canary applied weight 0 in {reaction:.2f} s "
              f"(budget {budget:.1f} s); abort event: {event['message']} {event['values']}", flush=True)
        self.print_events(since=since)
        self.assertLessEqual(reaction, budget)
        self.assertEqual(svc["rollout"]["phase"], "Aborted")
        self.assertEqual(e2e.applied(svc), {"blue": 100.0, "canary": 0.0})
        self.assertIn("error_rate", event["message"])
        self.assertGreater(event["values"]["value"], 0.001, event)
        done = self.stop_and_check_no_canary_after(traffic, rolled_back_at, "after the abort")
        # the client saw the injected 500s only from the canary
        self.assertEqual(done["variants"]["blue"]["http_5xx"], 0)
        self.assertGreater(done["variants"]["canary"]["http_5xx"], 0)


class TestCanaryPredictionDrift(CanaryMixin, e2e.RolloutCase):
    """(d) prediction_kl through the prometheus source: each variant's metrics_url on its testbed backend.
    max 0.2, not 0.1: the KL of two samples of one distribution with ~50 labels each (min_samples) exceeds
    0.1 with a few percent chance per evaluation (2 n_eff KL ~ chi-square(1), n_eff ~ 25), and this test
    judges several evaluations "no false alarm" (one host run failed so); 0.2 is p ~ 0.002 there, and the
    injected drift (KL 0.53) still trips it."""
    prefix = "ve2e-rcd"
    ROLLOUT = """      strategy: canary
      canary: canary
      interval: 1s
      steps: [ {set_weight: 50}, {pause: {}}, {set_weight: 100} ]
      gates:
        - { metric: prediction_kl, source: prometheus, series: model_predictions_total, label: class, max: 0.2,
            min_samples: 50 }
      failure_limit: 1
"""

    @classmethod
    def config_text(cls, tb):
        return e2e.for_prefix(e2e.ranker_config(cls.ROLLOUT), tb.prefix)

    def tearDown(self):
        for v in ("blue", "canary"):
            self.tb.knobs(v, "reset=true")

    def test_prediction_drift_aborts(self):
        for v in ("blue", "canary"):
            self.tb.knobs(v, "predictions=cat:0.7,dog:0.3")
        traffic = self.start_traffic("10.0.1.11-10.0.1.60", 250, 120, "--progress", 1)
        traffic.next_progress()
        self.veerd.rollout("ranker", "start")
        self.wait_canary_applied(50.0, 10)
        svc, _ = self.wait_status("prediction_kl gate Successful",
                                  lambda s: s["rollout"]["gates"][0]["last_result"] == "Successful", 15)
        time.sleep(3)  # a few more intervals with the same distribution: no false alarm
        svc = self.status()
        gate = svc["rollout"]["gates"][0]
        print(f"  same distribution: {e2e.format_rollout(svc)}", flush=True)
        self.assertEqual(svc["rollout"]["phase"], "WaitingForPromotion", e2e.format_rollout(svc))
        self.assertEqual(gate["last_result"], "Successful", gate)
        self.assertEqual(gate["failures"], 0, gate)
        self.assertLess(gate["value"], 0.2, gate)
        since = svc["rollout"].get("events_next", 0)

        t_change, _ = self.tb.knobs_timed("canary", {'predictions': 'cat:0.2,dog:0.8'})  # KL(canary || blue) = 0.53
        reaction, svc, _ = self.measure_rollback(t_change, 20)
        event = self.abort_event(since)
        print(f"  prediction drift -> canary applied weight 0 in {reaction:.2f} s; abort event: "
              f"{event['message']} {event['values']}", flush=True)
        self.print_events(since=since)
        self.assertEqual(svc["rollout"]["phase"], "Aborted")
        self.assertIn("prediction_kl", event["message"])
        self.assertGreater(event["values"]["value"], 0.2, event)
        self.assertEqual(e2e.applied(svc), {"blue": 100.0, "canary": 0.0})
        done = traffic.stop()
        preds = done["variants"]["canary"]["predictions"]
        self.assertEqual(set(preds), {"cat", "dog"}, preds)


if __name__ == "__main__":
    e2e.main()
