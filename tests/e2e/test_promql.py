#!/usr/bin/env python3
"""PromQL gates against a real Prometheus (Debian's 2.42) on the testbed (issue 12, e2e (a)-(d)). Prometheus
runs in the lb namespace beside veerd, scrapes the three model servers (one job per variant, as
examples/prometheus-testbed.yml) and veerd every second; traffic at a steady rate through the VIP:
(a) examples/rollout-promql.yaml as written: at the 20 % step the relative p95 gate reads its baseline from
    blue, then the canary's model server answering 5 % errors raises its own error counter and the
    `model_errors` query aborts the rollout (abort event with the value Prometheus gave);
(b) a prediction drift over model_predictions_total (prediction_kl from `sum by (class) (increase(...))`);
(c) an unreachable Prometheus, a query Prometheus refuses, a redirect, a 2 MiB answer and an answer slower than
    the deadline: Error five times in a row, each with its reason (connection refused; Prometheus's own parse
    error; ...), then the abort;
(d) a query with an empty answer: Inconclusive, and the rollout holds after its pause (no_data default);
    the same with no_data: fail aborts.
Each case is its own class: a fresh testbed, veerd and Prometheus."""
import os
import subprocess
import sys
import time

import yaml

import veer_e2e as e2e
from veer_prometheus import Prometheus

# The jobs and targets of examples/prometheus-testbed.yml (checked against the file in (a)).
TARGETS = {"blue": ["10.1.1.2:8080"], "green": ["10.1.2.2:8080"], "canary": ["10.1.3.2:8080"],
           "veer": ["127.0.0.1:9469"]}
ADDRESS = "http://127.0.0.1:9090"


class PromqlCase(e2e.RolloutCase):
    """The testbed, veerd and a Prometheus in the lb namespace (started after veerd, stopped first). A case's
    config: the testbed's ranker with a canary rollout of the case's GATES, STEPS and FAILURE_LIMIT."""
    GATES = ""
    STEPS = "[ {set_weight: 50}, {pause: {}}, {set_weight: 100} ]"
    FAILURE_LIMIT = 1

    @classmethod
    def config_text(cls, tb):
        return e2e.for_prefix(e2e.ranker_config(rollout(cls.GATES, cls.STEPS, cls.FAILURE_LIMIT)), tb.prefix)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.prom = Prometheus(cls.tb.ns("lb"), TARGETS, scrape_interval="1s")

        def start_prometheus():
            cls.prom.start()
            cls.prom.wait_targets_up(30)
        cls.set_up_or_tear_down(start_prometheus)

    @classmethod
    def tearDownClass(cls):
        try:
            if getattr(cls, "prom", None) is not None:
                cls.prom.stop()
        finally:
            super().tearDownClass()

    def tearDown(self):
        for v in ("blue", "canary"):
            self.tb.knobs(v, "reset=true")

    def start_rollout(self, rate, duration):
        """Steady traffic from 50 clients (stopped at cleanup at the latest), then `rollout start`."""
        traffic = self.start_traffic("10.0.1.11-10.0.1.60", rate, duration, "--progress", 1)
        traffic.next_progress()
        self.veerd.rollout("ranker", "start")
        return traffic

    def gate(self, svc, name):
        return {g["name"]: g for g in svc["rollout"]["gates"]}[name]

    def gate_events(self, since=0):
        return [e for e in self.veerd.events("ranker", since) if e["kind"] in ("gate", "abort")]

    def wait_aborted(self, timeout):
        svc, took = self.wait_status("rollout Aborted", lambda s: s["rollout"]["phase"] == "Aborted", timeout)
        self.assertEqual(e2e.applied(svc), {"blue": 100.0, "canary": 0.0})
        self.assertEqual(svc["stable"], "blue")
        return svc, took

    def abort_event(self, since):
        aborts = [e for e in self.veerd.events("ranker", since) if e["kind"] == "abort"]
        self.assertEqual(len(aborts), 1, f"expected one abort event: {self.veerd.events('ranker', since)}")
        return aborts[0]


def promql_gate(name, metric, query, extra=""):
    return (f"        - {{ name: {name}, metric: {metric}, source: promql, address: \"{ADDRESS}\",\n"
            f"            query: '{query}'{extra} }}\n")


def rollout(gates, steps, failure_limit):
    return ("      strategy: canary\n      canary: canary\n      interval: 1s\n"
            f"      steps: {steps}\n      gates:\n{gates}      failure_limit: {failure_limit}\n")


class TestPromqlErrorsAbort(PromqlCase):
    """(a) examples/rollout-promql.yaml as written."""
    prefix = "ve2e-pqa"

    @classmethod
    def config_text(cls, tb):
        return e2e.example_config("rollout-promql.yaml", tb.prefix)

    def test_example_prometheus_config_is_the_tests(self):
        with open(os.path.join(e2e.ARGS.source_dir, "examples", "prometheus-testbed.yml")) as f:
            conf = yaml.safe_load(f)
        jobs = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]] for j in conf["scrape_configs"]}
        self.assertEqual(jobs, TARGETS)
        self.assertEqual(conf["global"]["scrape_interval"], "1s")

    def test_model_error_counter_aborts(self):
        traffic = self.start_rollout(200, 120)
        # Healthy at 20 %: both gates Successful, the relative one with blue's p95 as its baseline.
        svc, _ = self.wait_status("both promql gates Successful at 20 %",
                                  lambda s: e2e.applied(s)["canary"] == 20.0 and
                                  all(g["last_result"] == "Successful" for g in s["rollout"]["gates"]), 15)
        errors, p95 = self.gate(svc, "model_errors"), self.gate(svc, "p95_vs_stable")
        print(f"  healthy at 20 %: {e2e.format_rollout(svc)}; p95 gate {p95}", flush=True)
        self.assertEqual(errors["value"], 0.0, errors)
        self.assertIsNotNone(p95.get("baseline"), p95)
        self.assertGreater(p95["baseline"], 0.0, p95)
        self.assertEqual(errors["failures"], 0, errors)
        since = svc["rollout"].get("events_next", 0)
        # What Prometheus itself holds for the canary: the model server's own counter, no errors yet.
        before = self.prom.query('sum(model_requests_total{job="canary"})')["result"]
        self.assertTrue(before and float(before[0]["value"][1]) > 0, before)

        t_change, _ = self.tb.knobs_timed("canary", {"error_rate": 0.05})
        svc, _ = self.wait_aborted(15)
        reaction = time.time() - t_change
        event = self.abort_event(since)
        print(f"  5 % errors at the canary's model server -> aborted {reaction:.2f} s later; abort event: "
              f"{event['message']} {event['values']}", flush=True)
        self.print_events(since=since)
        self.assertIn("model_errors", event["message"])
        self.assertGreater(event["values"]["value"], 0.01, event)
        self.assertEqual(event["values"]["max"], 0.01, event)
        gate = self.gate(svc, "model_errors")
        self.assertEqual(gate["last_result"], "Failed", gate)
        self.assertEqual(gate["failures"], 2, gate)  # failure_limit 1: the second Failed aborts
        # The canary's 5xx as Prometheus saw them: the counter the gate read.
        five = self.prom.query('sum(model_requests_total{job="canary",code=~"5.."})')["result"]
        self.assertTrue(five and float(five[0]["value"][1]) > 0, five)
        # Abort within the breach's own delay: a scrape (1 s), enough 5xx in the 5 s range to pass 1 %,
        # two evaluations; far below the 15 s bound.
        self.assertLess(reaction, e2e.scaled(8.0))
        traffic.stop()


class TestPromqlPredictionDrift(PromqlCase):
    """(b) prediction_kl and (issue 13 (h)) prediction_psi from a PromQL vector by class: the same distribution
    passes both, a drift aborts (PSI > 0.25, "major", usually first: it is about twice the KL)."""
    prefix = "ve2e-pqb"
    CLASSES = 'sum by (class) (increase(model_predictions_total{job="{{variant}}"}[10s]))'
    GATES = (promql_gate("drift", "prediction_kl", CLASSES, ", label: class, min_samples: 50, max: 0.2")
             + promql_gate("psi", "prediction_psi", CLASSES, ", label: class, min_samples: 50, max: 0.25"))

    def test_prediction_drift_aborts(self):
        for v in ("blue", "canary"):
            self.tb.knobs(v, "predictions=cat:0.7,dog:0.3")
        traffic = self.start_rollout(250, 120)
        svc, _ = self.wait_status("drift gates Successful",
                                  lambda s: all(g["last_result"] == "Successful" for g in s["rollout"]["gates"]), 20)
        time.sleep(3)  # more evaluations of one distribution: no false alarm
        svc = self.status()
        print(f"  same distribution: {e2e.format_rollout(svc)}", flush=True)
        self.assertEqual(svc["rollout"]["phase"], "WaitingForPromotion")
        for name, bound in (("drift", 0.2), ("psi", 0.25)):
            gate = self.gate(svc, name)
            self.assertEqual(gate["failures"], 0, gate)
            self.assertLess(gate["value"], bound, gate)
        since = svc["rollout"].get("events_next", 0)

        t_change, _ = self.tb.knobs_timed("canary", {"predictions": "cat:0.2,dog:0.8"})  # KL = 0.53 once settled
        svc, _ = self.wait_aborted(25)
        event = self.abort_event(since)
        print(f"  drift -> aborted {time.time() - t_change:.2f} s later: {event['message']} {event['values']}",
              flush=True)
        self.assertRegex(event["message"], r"gate (drift|psi) failed")
        self.assertGreater(event["values"]["value"], event["values"]["max"], event)
        psi = self.gate(svc, "psi")
        self.assertGreater(psi["value"], 0.25, psi)
        print(f"  at the abort: psi {psi['value']:.3f}, kl {self.gate(svc, 'drift')['value']:.3f}", flush=True)
        # Prometheus holds both classes for the canary: what the gate's vector was made of.
        classes = {r["metric"]["class"] for r in
                   self.prom.query('sum by (class) (model_predictions_total{job="canary"})')["result"]}
        self.assertEqual(classes, {"cat", "dog"})
        traffic.stop()


# A server in front of the real one that misbehaves by path prefix (bounded: it exits after 120 s):
# /redirect answers 302 to the real Prometheus, /huge a 2 MiB body, /slow answers after 3 s.
HOSTILE_PORT = 9092
HOSTILE = r"""
import http.server, socketserver, sys, threading, time
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path.startswith("/redirect/"):
            self.send_response(302); self.send_header("Location", "http://127.0.0.1:9090" + self.path[9:])
            self.send_header("Content-Length", "0"); self.end_headers(); return
        if self.path.startswith("/slow/"):
            time.sleep(3)
        body = b'{"status":"success","data":{"resultType":"scalar","result":[1,"0"]},"pad":"' + \
               (b"x" * (2 << 20) if self.path.startswith("/huge/") else b"") + b'"}'
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # veerd hung up at its body bound, as it should
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
server = S(("127.0.0.1", int(sys.argv[1])), H)
threading.Timer(120, server.shutdown).start()
print("ready", flush=True)
server.serve_forever()
"""


class TestPromqlErrorsAbortAfterFive(PromqlCase):
    """(c) nothing listens at one gate's address; another's query is refused by Prometheus (a parse error); a
    server in front of Prometheus redirects, sends 2 MiB or answers after 3 s (the deadline is half the 1 s
    interval) for three more: each is Error with its reason, and five in a row abort."""
    prefix = "ve2e-pqc"
    GATES = (promql_gate("unreachable", "error_ratio", "up", ", max: 1").replace(ADDRESS, "http://127.0.0.1:9")
             + promql_gate("refused", "error_ratio", 'sum(rate(model_requests_total{job="{{variant}}"}[5s]', ", max: 1")
             + "".join(promql_gate(name, "error_ratio", "up", ", max: 1").replace(ADDRESS, f"http://127.0.0.1:{HOSTILE_PORT}/{name}")
                       for name in ("redirect", "huge", "slow")))
    REASONS = {"unreachable": "Connection refused", "refused": "400 (bad_data)",
               "redirect": "302 (redirects are not followed", "huge": "body larger than 1048576 bytes",
               "slow": "no complete answer within 500"}
    FAILURE_LIMIT = 3

    @classmethod
    def setUpClass(cls):
        super().setUpClass()

        def start_hostile():
            cls.hostile_proc = subprocess.Popen(["ip", "netns", "exec", cls.tb.ns("lb"), sys.executable, "-c", HOSTILE,
                                                 str(HOSTILE_PORT)], stdout=subprocess.PIPE, text=True)
            assert cls.hostile_proc.stdout.readline().strip() == "ready"
        cls.set_up_or_tear_down(start_hostile)

    @classmethod
    def tearDownClass(cls):
        try:
            if getattr(cls, "hostile_proc", None) is not None:
                cls.hostile_proc.kill()
                cls.hostile_proc.wait()
        finally:
            super().tearDownClass()

    def test_five_errors_abort(self):
        traffic = self.start_rollout(100, 60)
        started = time.monotonic()
        svc, took = self.wait_aborted(20)
        events = self.veerd.events("ranker")
        self.print_events()
        gates = [e for e in events if e["kind"] == "gate"]
        for name, reason in self.REASONS.items():
            mine = [e for e in gates if e["message"].startswith(f"gate {name}: Error")]
            self.assertEqual(len(mine), 5, f"{name}: five Errors before the abort: {gates}")
            for e in mine:
                self.assertIn(reason, e["message"], e)
        self.assertIn("parse error", [e for e in gates if e["message"].startswith("gate refused:")][0]["message"])
        self.assertTrue(self.veerd.alive())
        event = [e for e in events if e["kind"] == "abort"]
        self.assertEqual(len(event), 1, events)
        self.assertIn("5 errors in a row", event[0]["message"])
        status = self.gate(svc, "unreachable")
        self.assertEqual((status["last_result"], status["consecutive_errors"]), ("Error", 5), status)
        # Five intervals of 1 s: the first Error at the first tick, the fifth four intervals later.
        self.assertGreaterEqual(time.monotonic() - started, 4.0)
        print(f"  aborted {took:.1f} s after start: {event[0]['message']}", flush=True)
        traffic.stop()


class TestPromqlEmptyHolds(PromqlCase):
    """(d) a series no one exports: the gate is Inconclusive and the rollout holds once its pause is over."""
    prefix = "ve2e-pqd"
    EMPTY = 'sum(rate(model_requests_total{job="{{variant}}",code="599"}[5s]))'
    GATES = promql_gate("no_such_series", "error_ratio", EMPTY, ", max: 0.01")
    STEPS = "[ {set_weight: 20}, {pause: 3s}, {set_weight: 100} ]"

    def test_empty_answer_holds(self):
        # Prometheus itself answers an empty vector for it.
        self.assertEqual(self.prom.query(self.EMPTY.replace("{{variant}}", "canary"))["result"], [])
        traffic = self.start_rollout(100, 90)
        svc, took = self.wait_status("rollout Holding", lambda s: s["rollout"]["phase"] == "Holding", 15)
        gate = self.gate(svc, "no_such_series")
        print(f"  held {took:.1f} s after start: {e2e.format_rollout(svc)}; {gate}", flush=True)
        self.assertEqual(gate["last_result"], "Inconclusive", gate)
        self.assertIn("no data", gate.get("reason", ""), gate)
        self.assertEqual(e2e.applied(svc)["canary"], 20.0, "held at the step, not rolled back")
        self.assertEqual(gate["failures"], 0, gate)

        traffic.stop()


class TestPromqlEmptyFails(PromqlCase):
    """(d') the same empty answer with no_data: fail is a breach: two Failed (failure_limit 1) abort."""
    prefix = "ve2e-pqe"

    GATES = promql_gate("no_such_series", "error_ratio", TestPromqlEmptyHolds.EMPTY, ", max: 0.01, no_data: fail")

    def test_empty_answer_fails(self):
        traffic = self.start_rollout(100, 60)
        svc, took = self.wait_aborted(15)
        gate = self.gate(svc, "no_such_series")
        event = self.abort_event(0)
        print(f"  no_data: fail -> aborted {took:.1f} s after start: {event['message']}; {gate}", flush=True)
        self.assertEqual((gate["last_result"], gate["failures"]), ("Failed", 2), gate)
        self.assertIn("no_data: fail", gate.get("reason", ""), gate)
        traffic.stop()


if __name__ == "__main__":
    e2e.main()
