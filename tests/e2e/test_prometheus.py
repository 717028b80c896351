#!/usr/bin/env python3
"""veer as an operator's Prometheus sees it (issue 12): a real Prometheus 2.42 in the lb namespace
(veer_prometheus.Prometheus) scrapes veerd (job "veer") and the three model servers (job "model") every
second and evaluates the shipped rules (packaging/prometheus/veer.rules.yml), while real traffic runs through
a canary rollout with kernel gates (service ranker, IPv4) and an A/B test (service ranker6, IPv6; it is what
makes veer_srm_p_value exist):

  (a) `promtool check metrics` passes on veerd's live /metrics, which holds every SPEC §7 family;
  (b) the rules load with health ok and each recording rule has data (flows/s, error ratio, P95);
  (c) every query of the Grafana dashboard (packaging/grafana/veer-dashboard.json) and of its variables,
      substituted as Grafana does, returns data as a range query over the run and as an instant query;
  (d) no alert fires while all is well; the canary made to answer 50 % HTTP 500 is aborted by its
      error_rate gate, and VeerRolloutAborted fires for ranker within a few scrapes.
"""
import os
import re
import subprocess
import time

import veer_dashboard
import veer_e2e as e2e
from veer_prometheus import Prometheus

METRICS_URL = "http://127.0.0.1:9469/metrics"
SCRAPE_INTERVAL = 1  # seconds, the Prometheus's scrape and rule evaluation interval
SPEC_FAMILIES = ("veer_packets_total", "veer_bytes_total", "veer_flows_total", "veer_flow_errors_total",
                 "veer_http_responses_total", "veer_response_latency_seconds", "veer_weight", "veer_rollout_phase",
                 "veer_rollout_step", "veer_gate_value", "veer_gate_result_total", "veer_srm_p_value",
                 "veer_drops_total")
RECORDING_RULES = ("service_variant:veer_flows:rate1m", "service_variant:veer_errors:ratio_rate1m",
                   "service_variant:veer_response_latency_seconds:p95_rate1m")

CANARY = """      strategy: canary
      canary: canary
      interval: 1s
      steps: [ {set_weight: 20}, {pause: {}} ]
      gates:
        - { metric: latency_p95_ms, source: kernel, max: 500 }
        - { metric: error_rate, source: kernel, max: 0.05 }
      failure_limit: 1
"""

AB_SERVICE = """  - name: ranker6
    vip: fd00::100
    port: 80
    protocol: tcp
    affinity: client-ip
    stable: blue
    variants:
      blue:   { backends: ["[fd00:11::2]:8080"] }
      canary: { backends: ["[fd00:13::2]:8080"] }
    weights: { blue: 50, canary: 50 }
    rollout:
      strategy: ab
      metric: { name: conversion, kind: proportion }
      alpha: 0.05
      power: 0.8
      min_detectable_effect: 0.03
"""


def source_path(*parts):
    return os.path.join(e2e.ARGS.source_dir, *parts)


def has_finite_value(data):
    """Some sample of an instant (vector) or range (matrix) result is a number, not NaN or Inf."""
    values = []
    for series in data["result"]:
        values += [v for _, v in series.get("values", [])] + ([series["value"][1]] if "value" in series else [])
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values)


class TestPrometheus(e2e.RolloutCase):
    prefix = "ve2pm"

    @classmethod
    def config_text(cls, tb):
        text = e2e.ranker_config(CANARY, metrics_url=False) + AB_SERVICE
        return e2e.for_prefix(text, tb.prefix)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.prom, cls.traffic = None, []
        try:
            cls.prom = Prometheus(cls.tb.ns("lb"), {"veer": ["127.0.0.1:9469"],
                                                    "model": [f"{e2e.BACKEND4[v]}:8080" for v in e2e.VARIANTS]},
                                  scrape_interval=f"{SCRAPE_INTERVAL}s",
                                  rule_files=[source_path("packaging", "prometheus", "veer.rules.yml")])
            cls.prom.start()
            for dst, src in ((e2e.VIP4, "10.0.1.11-10.0.1.40"), (e2e.VIP6, "fd00:1::11-fd00:1::40")):
                cls.traffic.append(cls.tb.rate_client("--dst", dst, "--port", 80, "--src-range", src, "--rate", 60,
                                                      "--duration", 600, "--timeout", 5))
            for service in ("ranker", "ranker6"):
                answer = cls.veerd.rollout(service, "start")
                print(f"  rollout start {service}: {answer['result']}", flush=True)
            cls.prom.wait_targets_up()
            cls.scraped_since = time.time()  # the dashboard's range starts here: before it, no samples
            # the canary at its 20 % step with gates evaluated; the A/B with flows in both arms (its SRM p)
            e2e.wait_for("ranker's canary at 20 % with a gate evaluated", lambda: cls._canary_evaluated(),
                         e2e.scaled(20), 0.2)
            cls.prom.wait_for('veer_srm_p_value{service="ranker6"}')
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _canary_evaluated(cls):
        svc = cls.veerd.service_status("ranker")
        gates = svc["rollout"]["gates"]
        return e2e.applied(svc)["canary"] == 20.0 and gates and all(g.get("last_result") for g in gates)

    @classmethod
    def tearDownClass(cls):
        try:
            for client in getattr(cls, "traffic", []):
                client.kill()
            if getattr(cls, "prom", None) is not None:
                cls.prom.stop()
        finally:
            super().tearDownClass()

    def test_a_promtool_check_metrics(self):
        text = self.tb.fetch("lb", METRICS_URL)
        families = set(re.findall(r"(?m)^# TYPE (\S+) ", text))
        self.assertEqual(set(SPEC_FAMILIES) - families, set(), "SPEC §7 families missing from /metrics")
        proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=e2e.scaled(30))
        print(f"  /metrics: {len(text)} bytes, {len(families)} families; promtool check metrics -> "
              f"{proc.returncode} {proc.stdout}{proc.stderr}".rstrip(), flush=True)
        self.assertEqual((proc.returncode, proc.stdout + proc.stderr), (0, ""))
        # the testbed's model servers, which the PromQL and prometheus-source gates read, pass as well
        for v in e2e.VARIANTS:
            text = self.tb.fetch("lb", f"http://{e2e.BACKEND4[v]}:8080/metrics")
            proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                                  timeout=e2e.scaled(30))
            self.assertEqual((proc.returncode, proc.stdout + proc.stderr), (0, ""), f"model server {v}")

    def test_b_rules_loaded_and_recorded(self):
        groups = {g["name"]: g for g in self.prom.rules()}
        self.assertEqual(set(groups), {"veer.recording", "veer.alerts"})
        for g in groups.values():
            for rule in g["rules"]:
                self.assertEqual(rule["health"], "ok", rule)
        for record in RECORDING_RULES:
            data = self.prom.wait_for(f'{record}{{service="ranker",variant="canary"}}', has_finite_value,
                                      timeout=30)
            print(f"  {record}: {[(r['metric'], r['value'][1]) for r in data['result']]}", flush=True)
        flows = float(self.prom.query('service_variant:veer_flows:rate1m{service="ranker",variant="canary"}')
                      ["result"][0]["value"][1])
        # 60 requests/s, a new connection each, 20 % of them to the canary: 12/s (the window began at 0 %)
        self.assertGreater(flows, 0)
        self.assertLess(flows, 60)

    def test_c_dashboard_queries_return_data(self):
        dashboard = veer_dashboard.load(source_path("packaging", "grafana", "veer-dashboard.json"))
        self.assertEqual(veer_dashboard.shape_problems(dashboard), [])
        # A range of three rate windows at least ($__rate_interval: 4 scrapes), so that a rate() has points in
        # it also when this test runs alone right after setUpClass.
        start = self.scraped_since
        time.sleep(max(0.0, start + 3 * 4 * SCRAPE_INTERVAL - time.time()))
        end = time.time()
        intervals = veer_dashboard.builtins(end - start, SCRAPE_INTERVAL)
        # the variables, in order, as Grafana resolves them (All selected): label values over the range
        selected = {}
        for variable, query in veer_dashboard.query_variables(dashboard):
            selector, label = veer_dashboard.parse_label_values(query)
            params = {"start": str(start), "end": str(end)}
            if selector:
                params["match[]"] = veer_dashboard.interpolate(selector, dashboard, selected, intervals)
            values = self.prom.api(f"label/{label}/values", params)
            print(f"  variable {variable['name']}: {query} -> {values}", flush=True)
            self.assertTrue(values, f"variable {variable['name']}: {query} has no values")
            selected[variable["name"]] = values
        self.assertEqual(set(selected["service"]), {"ranker", "ranker6"})
        failures = []
        for title, ref, expr in veer_dashboard.queries(dashboard):
            q = veer_dashboard.interpolate(expr, dashboard, selected, intervals)
            ranged = self.prom.query_range(q, start, end, intervals["step"])
            instant = self.prom.query(q, end)
            n_range, n_instant = len(ranged["result"]), len(instant["result"])
            print(f"  panel {title!r} {ref}: {n_range} series over the run, {n_instant} now: {q}", flush=True)
            if not (has_finite_value(ranged) and has_finite_value(instant)):
                failures.append((title, ref, q, n_range, n_instant))
        self.assertEqual(failures, [], "dashboard queries without data (title, ref, query, series range/now)")

    def test_d_abort_fires_alert(self):
        for name in ("VeerRolloutAborted", "VeerAppliedTableBehind", "VeerMetricsDown", "VeerSampleRatioMismatch"):
            self.assertEqual(self.prom.firing(name), [], f"{name} fires while all is well")
        self.addCleanup(self.tb.knobs, "canary", "reset=true")
        self.tb.knobs("canary", "error_rate=0.5")
        svc, took = self.wait_status("ranker aborted", lambda s: s["rollout"]["phase"] == "Aborted", 20)
        aborted_at = time.monotonic()
        print(f"  aborted {took:.1f} s after 50 % HTTP 500: {e2e.format_rollout(svc)}", flush=True)
        firing, waited = e2e.wait_for("VeerRolloutAborted firing for ranker",
                                      lambda: [a for a in self.prom.firing("VeerRolloutAborted")
                                               if a["labels"].get("service") == "ranker"],
                                      e2e.scaled(15), 0.2)
        since_abort = time.monotonic() - aborted_at
        print(f"  VeerRolloutAborted firing {since_abort:.1f} s after the abort was seen in status: "
              f"{firing[0]['labels']} {firing[0]['annotations']['summary']}", flush=True)
        self.assertEqual(firing[0]["labels"]["severity"], "warning")
        self.assertEqual(firing[0]["labels"]["job"], "veer")
        # a scrape (1 s) and an evaluation (1 s) after the abort, with room for a loaded machine
        self.assertLess(since_abort, e2e.scaled(10))
        self.assertEqual([a for a in self.prom.firing("VeerRolloutAborted") if a["labels"]["service"] != "ranker"],
                         [], "the A/B service was not aborted")


if __name__ == "__main__":
    e2e.main()
