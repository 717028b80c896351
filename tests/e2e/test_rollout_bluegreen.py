#!/usr/bin/env python3
"""(e) Blue-green on the testbed with examples/rollout-bluegreen.yaml as written and steady traffic through
the VIP: a preview (green) that fails its pre-promotion probes is never switched to (no client flow reaches
it, its applied weight stays 0); after `rollout retry` a healthy green is switched to (auto_promote); a
latency breach in the post-promotion watch switches back to blue; long-lived keep-alive connections opened
before the first switch (on blue) and between the switches (on green) survive both switches on their
variant, none reset."""
import time

import veer_e2e as e2e

LONG_LIVED = 15


class TestBlueGreen(e2e.RolloutCase):
    prefix = "ve2e-rbg"

    @classmethod
    def config_text(cls, tb):
        # Native XDP, as this file ran in every guest before `auto` meant tc on veths; the rollout logic does
        # not depend on the hook (canary, A/B, rollout-restart and telemetry run `auto`, i.e. tc). The example's
        # post-promotion latency gate was max 100 ms until two CI runs in the 6.1 guest (TCG, ~10x slower)
        # failed here: a healthy green's kernel p95 measured 94-134 ms under this load and a chance breach
        # switched back before the check (the failure message showed Aborted, latency_p95_ms=Failed(120)). It
        # is 200 ms now, as in the canary example, and the breach below injects 300 ms.
        return e2e.set_attach(e2e.example_config("rollout-bluegreen.yaml", tb.prefix), "xdp")

    def tearDown(self):
        self.tb.knobs("green", "reset=true")

    def green_client_requests(self):
        """Requests green's backend counted from client addresses (10.0.1.x), and from the lb (probes)."""
        clients = self.tb.backend_stats("green")["http"]["clients"]
        from_clients = sum(c["requests"] for a, c in clients.items() if a.startswith("10.0.1."))
        from_lb = sum(c["requests"] for a, c in clients.items() if not a.startswith("10.0.1."))
        return from_clients, from_lb

    @staticmethod
    def gate_results(svc):
        """Gate name -> stage -> last result, from `status` (both lists have error_rate and latency_p95_ms)."""
        out = {}
        for g in svc["rollout"]["gates"]:
            out.setdefault(g["name"], {})[g["stage"]] = g["last_result"]
        return out

    def long_lived(self, src):
        client = self.tb.long_client("--proto", "http", "--dst", e2e.VIP4, "--port", 80, "--src", src,
                                     "--connections", LONG_LIVED, "--interval", 0.2, "--duration", 120)
        self.addCleanup(client.kill)
        ready = client.ready()
        self.assertTrue(all(c["error"] is None for c in ready["connections"]), ready)
        return client, ready

    def test_probes_switch_watch_and_switch_back(self):
        traffic = self.start_traffic("10.0.1.11-10.0.1.40", 200, 150, "--progress", 1)
        traffic.next_progress()
        long_blue, ready = self.long_lived("10.0.1.41")
        self.assertEqual({c["variant"] for c in ready["connections"]}, {"blue"})

        # 1. green fails its probes: the switch is refused, no client traffic ever moves
        self.tb.knobs("green", "error_rate=0.5")
        recorder = e2e.StatusRecorder(self.veerd, "ranker", 0.1)
        try:
            self.veerd.rollout("ranker", "start")
            svc, took = self.wait_status("pre-promotion abort", lambda s: s["rollout"]["phase"] == "Aborted", 15)
            time.sleep(1.5)  # and nothing moves afterwards either
        finally:
            samples = recorder.stop()
        self.print_events()
        print(f"  failing preview: aborted after {took:.1f} s; {e2e.format_rollout(svc)}", flush=True)
        self.assertEqual(max(e2e.applied(s)["green"] for _, s in samples), 0.0, "green got weight")
        self.assertEqual(max(e2e.desired(s)["green"] for _, s in samples), 0.0, "green was desired")
        from_clients, from_lb = self.green_client_requests()
        self.assertEqual(from_clients, 0, "client traffic reached the failing preview")
        self.assertGreater(from_lb, 0, "no probe requests reached the preview")
        print(f"  probe requests green answered: {from_lb}", flush=True)
        kinds = [e["kind"] for e in self.veerd.events("ranker")]
        self.assertNotIn("switch", kinds)
        # the probes' error_rate failed; the watch's same-named gate never ran
        self.assertEqual(self.gate_results(svc)["error_rate"], {"pre_promotion": "Failed", "post_promotion": "none"})
        # The probes' latency gate (max 150 ms) passes here; in a TCG guest the failing preview's probes have
        # measured 148-152 ms, so its failures are read from the status rather than assumed to be none.
        probe_latency = {g["name"]: g for g in svc["rollout"]["gates"]
                         if g["stage"] == "pre_promotion"}["latency_p95_ms"]

        # 2. a healthy green: retry -> probes pass -> auto_promote switches
        self.tb.knobs("green", "reset=true")
        since = self.status()["rollout"].get("events_next", 0)
        self.veerd.rollout("ranker", "retry")
        svc, took = self.wait_status("switch to green", lambda s: e2e.applied(s) == {"blue": 0.0, "green": 100.0}, 15)
        print(f"  healthy preview: switched after {took:.1f} s; {e2e.format_rollout(svc)}", flush=True)
        switched_at = time.time()
        self.assertEqual(svc["rollout"]["phase"], "PostPromotion", e2e.format_rollout(svc))
        long_green, ready = self.long_lived("10.0.1.42")
        self.assertEqual({c["variant"] for c in ready["connections"]}, {"green"},
                         f"connections opened after the switch; now: {e2e.format_rollout(self.status())}")
        time.sleep(2)
        svc = self.status()
        self.assertEqual(svc["rollout"]["phase"], "PostPromotion", e2e.format_rollout(svc))

        # 3. breach in the post-promotion watch: switch back to blue
        t_change, _ = self.tb.knobs_timed("green", {"latency": "fixed:300"})
        svc, _ = self.wait_status("switch back to blue", lambda s: e2e.applied(s) == {"blue": 100.0, "green": 0.0},
                                  15)
        switched_back_at = time.time()
        reaction = switched_back_at - t_change
        self.print_events(since=since)
        print(f"  post-promotion breach (green latency 300 ms, gate max 200): switched back in {reaction:.2f} s; "
              f"{e2e.format_rollout(svc)}", flush=True)
        self.assertEqual(svc["rollout"]["phase"], "Aborted")
        self.assertEqual(svc["stable"], "blue")
        aborts = [e for e in self.veerd.events("ranker", since) if e["kind"] == "abort"]
        self.assertEqual(len(aborts), 1, aborts)
        self.assertIn("latency_p95_ms", aborts[0]["message"])
        self.assertGreater(aborts[0]["values"]["value"], 200.0, aborts[0])
        self.assertEqual(self.gate_results(svc)["latency_p95_ms"], {"pre_promotion": "none", "post_promotion": "Failed"})
        # /metrics keeps the two lists apart too: failure_limit 1, so each abort came on its list's 2nd failure
        samples = e2e.prom_samples(self.tb.fetch("lb", "http://127.0.0.1:9469/metrics"))
        failed = {(ls["stage"], ls["gate"]): v for n, ls, v in samples
                  if n == "veer_gate_result_total" and ls.get("result") == "Failed"}
        print(f"  veer_gate_result_total Failed: {failed}", flush=True)
        # The failing preview ran two evaluations (the second error_rate failure aborted it), so its latency
        # gate failed at most twice, and at least once if its last result was Failed.
        probe_latency_failed = failed.pop(("pre_promotion", "latency_p95_ms"), 0)
        self.assertLessEqual(probe_latency_failed, 2, probe_latency)
        if probe_latency["last_result"] == "Failed":
            print(f"  the failing preview's probe latency failed too here: {probe_latency}", flush=True)
            self.assertGreaterEqual(probe_latency_failed, 1, probe_latency)
        self.assertEqual(failed, {("pre_promotion", "error_rate"): 2, ("post_promotion", "latency_p95_ms"): 2})
        time.sleep(2)  # the long-lived connections keep talking after both switches, new ones reach blue

        for name, client, variant in (("opened on blue", long_blue, "blue"), ("opened on green", long_green, "green")):
            done = client.finish()
            s = done["summary"]
            print(f"  long-lived {name}: {s}", flush=True)
            self.assertEqual(s["errors"], 0, [c for c in done["connections"] if c["error"]])
            self.assertEqual(s["changed_variant"], 0)
            for c in done["connections"]:
                self.assertEqual(c["variants"], {variant: c["sent"]}, c)
                self.assertGreaterEqual(c["sent"], 10, c)
        done = traffic.stop()
        t = done["totals"]
        self.assertEqual((t["resets"], t["refused"], t["http_5xx"]), (0, 0, 0), t)
        # Judged by when each connection began: one opened before a flip may rightly finish on the old side
        # (its SYN went before, or was retransmitted after it), however late it is answered.
        seen = e2e.assert_connections_opened_reach(self, done, "green", switched_at, t_change,
                                                   what="after the switch, before the breach")
        print(f"  connections opened between the switch and the breach: {seen}", flush=True)
        seen = e2e.assert_connections_opened_reach(self, done, "blue", switched_back_at,
                                                   what="after the switch back")
        print(f"  connections opened after the switch back: {seen}", flush=True)


if __name__ == "__main__":
    e2e.main()
