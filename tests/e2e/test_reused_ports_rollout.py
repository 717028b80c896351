#!/usr/bin/env python3
"""Rollbacks and promotions reach busy clients that reuse source ports (issue 10):
(d) a canary at 50 % whose backend starts answering HTTP 500 is aborted by its kernel `error_rate` gate; from
    the moment the abort is applied, 0 new connections reach the canary, also from the ports whose previous
    connection went to it (client.py ports: fixed source ports, a new connection each round);
(f) a blue-green rollout promoted under wrk `-H 'Connection: close'` from one client address (its ephemeral
    range narrowed to 2 s of wrk's rate with tcp_tw_reuse=1, so that it reuses ports within seconds): every new
    connection after the switch goes to green, counted at the backends.
(f) reloads the config of (d) with a blue-green section: one testbed and veerd for both."""
import os
import signal
import subprocess
import time

import veer_e2e as e2e

PORTS = e2e.flows(300, 150)
CANARY_ROLLOUT = """      strategy: canary
      canary: canary
      interval: 1s
      steps: [ {set_weight: 50}, {pause: {}}, {set_weight: 100} ]
      gates:
        - { metric: error_rate, source: kernel, max: 0.01 }
      failure_limit: 0
"""
# Bounds far from a healthy green's figures under TCG (this file also runs in the kernel-matrix guests): the
# point here is where connections go, not the gates.
BLUEGREEN_ROLLOUT = """      strategy: blue-green
      active: blue
      preview: green
      interval: 1s
      pre_promotion:
        requests: 20
        path: /
        timeout: 2s
        gates:
          - { metric: error_rate, max: 0 }
          - { metric: latency_p95_ms, max: 2000 }
      auto_promote: true
      post_promotion:
        duration: 5m
        gates:
          - { metric: error_rate, source: kernel, max: 0.5 }
      failure_limit: 3
"""


def config(rollout, variants):
    return e2e.for_prefix(e2e.ranker_config(rollout, variants=variants, metrics_url=False),
                          TestReusedPortsRollout.prefix)


class TestReusedPortsRollout(e2e.RolloutCase):
    prefix = "ve2e-reuser"

    @classmethod
    def config_text(cls, tb):
        return config(CANARY_ROLLOUT, ("blue", "canary"))

    def tearDown(self):
        for v in ("blue", "canary"):
            self.tb.knobs(v, "reset=true")

    def test_d_canary_abort_reaches_reused_ports(self):
        src, first = "10.0.1.20", 24000
        self.veerd.rollout("ranker", "start")
        self.wait_status("canary at 50 %", lambda s: e2e.applied(s)["canary"] == 50.0, e2e.scaled(10))
        traffic = self.tb.ports_background("--dst", e2e.VIP4, "--port", 80, "--src", src, "--ports",
                                           f"{first}-{first + PORTS - 1}", "--rate", 200, "--concurrency", 4,
                                           "--timeout", e2e.scaled(5), "--time-limit", e2e.scaled(120))
        self.addCleanup(traffic.kill)
        time.sleep(e2e.scaled(2.5))  # every port has had connections on both variants' side
        t_change, _ = self.tb.knobs_timed("canary", {"error_rate": 0.2})
        svc, _ = self.wait_status("abort", lambda s: e2e.applied(s)["canary"] == 0.0, e2e.scaled(15), period=0.05)
        t_applied = time.time()  # after the answer that read weight 0 back from the maps: the flip is older
        self.assertEqual(svc["rollout"]["phase"], "Aborted", e2e.format_rollout(svc))
        time.sleep(e2e.scaled(1.0))
        canary_at = self.tb.http_connections(src)["canary"]
        time.sleep(e2e.scaled(2.0))
        answer = traffic.stop()
        canary_end = self.tb.http_connections(src)["canary"]
        self.print_events()

        before = [c for c in answer["connections"] if c[2] < t_change]
        after = [c for c in answer["connections"] if c[2] > t_applied]
        canary_ports = {c[0] for c in before if c[3] == "canary"}
        reused = [c for c in after if c[0] in canary_ports]
        to_canary = [c for c in after if c[3] == "canary"]
        print(f"  abort applied {t_applied - t_change:.2f} s after the canary began failing; before: "
              f"{len(before)} connections, {len(canary_ports)} of {PORTS} ports on the canary; after: {len(after)} "
              f"connections, {len(reused)} of them from those ports, {len(to_canary)} to the canary; canary backend "
              f"accepted {canary_end - canary_at} in the last {e2e.scaled(2.0)} s", flush=True)
        self.assertEqual(answer["errors"], {}, answer["errors"])
        self.assertGreater(len(canary_ports), 0, "some ports had connections on the canary (the test's premise)")
        self.assertGreater(len(reused), 0, "those ports were reused after the abort (the test's premise)")
        self.assertEqual(to_canary, [], "new connections reached the canary after the abort")
        self.assertEqual(canary_end, canary_at, "the canary's backend accepted connections after the abort")

    def test_f_bluegreen_promoted_under_wrk(self):
        self.tb.write_config(config(BLUEGREEN_ROLLOUT, ("blue", "green")))
        answer = self.veerd.request({"cmd": "reload"})
        self.assertTrue(answer.get("ok"), answer)
        self.assertEqual(self.veerd.weights("ranker"), {"blue": 100.0, "green": 0.0})
        out = self.tb.exec("client", ["ip", "-4", "route", "get", e2e.VIP4]).stdout
        src = out.split(" src ", 1)[1].split()[0]
        ports = self.tb.busy_client(self)

        seconds = int(e2e.scaled(40))  # a bound: stopped once the checks are done
        wrk = subprocess.Popen(["ip", "netns", "exec", self.tb.ns("client"), "wrk", "-t1", "-c8", f"-d{seconds}s",
                                "--timeout", "2s", "-H", "Connection: close", f"http://{e2e.VIP4}/"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def stop_wrk():
            if wrk.poll() is None:
                os.killpg(wrk.pid, signal.SIGKILL)
            wrk.wait()
        self.addCleanup(stop_wrk)
        # wrk goes round its ports twice: every tuple has an entry on blue, and ports are being reused.
        base = self.tb.http_connections(src)["blue"]
        warm, _ = e2e.wait_for(f"wrk's first {2 * ports} connections on blue",
                               lambda: (lambda c: c if c["blue"] - base >= 2 * ports else None)(
                                   self.tb.http_connections(src)), e2e.scaled(30), period=0.5)
        self.veerd.rollout("ranker", "start")
        svc, took = self.wait_status("switch to green", lambda s: e2e.applied(s) == {"blue": 0.0, "green": 100.0},
                                     e2e.scaled(15), period=0.05)
        time.sleep(e2e.scaled(0.5))  # connections whose SYN came before the flip are accepted by now
        at_switch = self.tb.http_connections(src)
        time.sleep(e2e.scaled(3.0))
        later = self.tb.http_connections(src)
        svc = self.status()
        self.assertIsNone(wrk.poll(), "wrk ran throughout")
        stop_wrk()
        print(f"  blue-green under wrk: warm-up {warm}; switched {took:.2f} s after start; connections in the "
              f"{e2e.scaled(3.0)} s after it: {e2e.delta(later, at_switch)}; {e2e.format_rollout(svc)}", flush=True)
        self.assertEqual(svc["rollout"]["phase"], "PostPromotion", e2e.format_rollout(svc))
        after = e2e.delta(later, at_switch)
        self.assertEqual(after["blue"], 0, f"new connections reached blue after the switch: {after}")
        self.assertGreater(after["green"], 0, after)


if __name__ == "__main__":
    e2e.main()
