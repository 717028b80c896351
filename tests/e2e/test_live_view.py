#!/usr/bin/env python3
"""The live view and `veerctl report` (issue 12, parts 4 and 5; docs/view.md), on the testbed with real traffic
and examples/rollout-canary.yaml (latency_p95_ms max 200, error_rate max 0.001, failure_limit 1):
veerd's read-only API on metrics_listen (documents, 404s, 405s, and no request changing anything), then
Debian's headless chromium in the lb namespace rendering the page: while the canary runs, the weights
chart has desired and applied lines with points and the gate rows are there; after the canary's latency is
raised to 300 ms and the rollout aborts, the page shows the Aborted phase and the abort marker. Then
`veerctl report` writes one HTML file that holds the steps, the abort and the gate bounds, and chromium
renders it from file:// in a network namespace of its own (no network at all). Screenshots go to
build/test-artifacts/live-view-*.png (or $VEER_TEST_ARTIFACTS); their paths are printed."""
import json
import os
import re
import sys
import time

import veer_browser as browser
import veer_e2e as e2e
from veer_browser import Dom

METRICS = "127.0.0.1:9469"  # examples/rollout-canary.yaml's metrics_listen, in the lb namespace


def artifacts_dir():
    path = os.environ.get("VEER_TEST_ARTIFACTS") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(e2e.ARGS.veerd)))), "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


class TestLiveView(e2e.RolloutCase):
    prefix = "ve2lv"

    @classmethod
    def config_text(cls, tb):
        return e2e.example_config("rollout-canary.yaml", tb.prefix)

    # ------------------------------------------------------------------ helpers

    def http(self, method, path):
        """METHOD http://metrics_listen/PATH from the lb namespace: (status, content type, body)."""
        code = ("import http.client,json,sys;c=http.client.HTTPConnection('%s',timeout=10);"
                "c.request(sys.argv[1],sys.argv[2],body=(b'{}' if sys.argv[1] not in ('GET','HEAD') else None));"
                "r=c.getresponse();b=r.read();"
                "print(json.dumps([r.status,r.getheader('Content-Type'),b.decode('utf-8','replace')]))" % METRICS)
        out = self.tb.exec("lb", [sys.executable, "-c", code, method, path], timeout=20)
        return json.loads(out.stdout)

    def get_json(self, path, status=200):
        code, ctype, body = self.http("GET", path)
        self.assertEqual(code, status, f"GET {path}: {body[:300]}")
        self.assertEqual(ctype, "application/json", path)
        return json.loads(body)

    def chromium(self, url, *, screenshot=None, netns=True, budget_ms=4000):
        """The rendered DOM of URL, or a screenshot to SCREENSHOT; in the lb namespace (NETNS, where veerd's
        metrics_listen is), or in a network namespace of its own with no network at all."""
        dom = browser.render(self, url, netns=self.tb.ns("lb") if netns else None, screenshot=screenshot,
                             budget_ms=budget_ms)
        if screenshot:
            print(f"  screenshot: {screenshot}", flush=True)
        return dom

    def service_section(self, dom, name="ranker"):
        sections = dom.find("section", cls="service", data_service=name)
        self.assertEqual(len(sections), 1, f"one section of {name}")
        return sections[0]

    def state_fingerprint(self):
        svc = self.status()
        ro = svc["rollout"] or {}
        return (e2e.desired(svc), e2e.applied(svc), svc["generation"], svc["active_table"], ro.get("phase"),
                ro.get("step"), ro.get("events_next"))

    # ------------------------------------------------------------------ the test

    def test_live_view_and_report_of_an_aborted_canary(self):
        arts = artifacts_dir()
        # 1. The API before a rollout, and nothing the HTTP side is sent changes anything.
        services = self.get_json("/api/v1/services")
        self.assertEqual([s["name"] for s in services["services"]], ["ranker"])
        self.assertEqual(services["services"][0]["phase"], "Idle")
        self.assertEqual(services["fleet"], False)
        self.assertIn("no service", self.get_json("/api/v1/services/nope", 404)["error"])
        self.assertIn("not in a fleet", self.get_json("/api/v1/nodes", 404)["error"])
        self.assertEqual(self.http("GET", "/api/v2/services")[0], 404)
        doc = self.get_json("/api/v1/services/ranker")
        self.assertEqual(doc["rollout"], None, "no rollout yet")
        self.assertGreaterEqual(len(doc["history"]["t"]), 1)
        code, ctype, page = self.http("GET", "/")
        self.assertEqual((code, ctype), (200, "text/html; charset=utf-8"))
        self.assertIn('src="/assets/veer-view.js"', page)
        for path, kind in (("/assets/veer-view.js", "text/javascript"), ("/assets/veer-view.css", "text/css")):
            code, ctype, body = self.http("GET", path)
            self.assertEqual(code, 200, path)
            self.assertTrue(ctype.startswith(kind), ctype)
            self.assertNotRegex(body, r"https?://(?!www\.w3\.org/2000/svg)", f"{path} refers to nothing outside")
        before = self.state_fingerprint()
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/", "/api/v1/services", "/api/v1/services/ranker", "/metrics"):
                code, _, _ = self.http(method, path)
                self.assertEqual(code, 405, f"{method} {path}")
        self.assertEqual(self.state_fingerprint(), before, "405s changed nothing")

        # veerctl report: usage and refusals, before there is anything to report.
        out = os.path.join(arts, "live-view-report.html")
        if os.path.exists(out):
            os.unlink(out)
        proc = self.veerd.ctl("report", "ranker", check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn("report needs -o FILE", proc.stderr)
        proc = self.veerd.ctl("report", "ranker", "-o", out, check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("no rollout yet", proc.stderr)
        self.assertFalse(os.path.exists(out))
        proc = self.veerd.ctl("report", "nope", "-o", out, check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn('no service "nope"', proc.stderr)

        # 2. A canary with real traffic: the page while it runs.
        traffic = self.start_traffic("10.0.1.11-10.0.1.60", 250, 120, "--progress", 1)
        traffic.next_progress()
        self.veerd.rollout("ranker", "start")
        self.wait_status("canary applied 20", lambda s: e2e.applied(s)["canary"] == 20.0, 30)
        time.sleep(2.0)  # a few samples at 20 % after the step
        dom = self.chromium(f"http://{METRICS}/")
        sec = self.service_section(dom)
        self.assertIn(sec["attrs"]["data-phase"], ("Progressing", "Paused"))
        in_ranker = lambda a: a["attrs"].get("data-service") == "ranker"
        for kind in ("desired", "applied"):
            paths = dom.find("path", cls=kind, within=lambda a: Dom.has_class(a, "weights-chart"), data_variant="canary")
            self.assertEqual(len(paths), 1, f"one {kind} line of the canary")
            points = int(paths[0]["attrs"]["data-points"])
            self.assertGreaterEqual(points, 5, f"{kind} line has the samples")
            self.assertRegex(paths[0]["attrs"]["d"], r"^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+$")
        gates = {g["attrs"]["data-gate"]: g for g in dom.find("tr", cls="gate-row", within=in_ranker)}
        self.assertEqual(set(gates), {"latency_p95_ms", "error_rate"})
        self.assertIn("≤ 200", "".join(dom.find("td", cls="bound", within=lambda a: a is gates["latency_p95_ms"])[0]["text"]))
        self.assertNotIn("Failed", [g["attrs"]["data-result"] for g in gates.values()])
        variants = {v["attrs"]["data-variant"]: v for v in dom.find("tr", cls="variant-row", within=in_ranker)}
        self.assertEqual(set(variants), {"blue", "canary"})
        rate = "".join(dom.find("td", cls="flows-per-s", within=lambda a: a is variants["blue"])[0]["text"])
        self.assertGreater(float(rate), 50.0, "blue's flows/s at 250 requests/s x 80 %")
        for field in ("flows_per_s", "latency_p95_ms", "error_rate"):
            lines = dom.find("path", cls=("traffic", field), within=lambda a: a["attrs"].get("data-field") == field)
            self.assertEqual(sorted(p["attrs"]["data-variant"] for p in lines), ["blue", "canary"], field)
            self.assertGreaterEqual(min(int(p["attrs"]["data-points"]) for p in lines), 2, field)
        self.assertEqual(dom.find(cls=("marker", "abort")), [], "no abort marker yet")
        self.assertTrue(dom.find("li", cls="event", data_kind="started"))
        self.chromium(f"http://{METRICS}/", screenshot=os.path.join(arts, "live-view-canary.png"))

        # 3. The abort: latency 300 ms on the canary trips latency_p95_ms.
        self.addCleanup(self.tb.knobs, "canary", "reset=true")
        t_change, _ = self.right_after_an_evaluation(self.tb.knob_change("canary", {'latency': 'fixed:300'}))
        self.wait_status("rollout Aborted", lambda s: s["rollout"]["phase"] == "Aborted", 15)
        time.sleep(1.5)
        dom = self.chromium(f"http://{METRICS}/")
        sec = self.service_section(dom)
        self.assertEqual(sec["attrs"]["data-phase"], "Aborted")
        self.assertEqual(len(dom.find("span", cls="phase", data_phase="Aborted", within=in_ranker)), 1)
        self.assertEqual(len(dom.find("g", cls=("marker", "abort"), within=lambda a: Dom.has_class(a, "weights-chart"))),
                         1, "the abort marked on the weights chart")
        self.assertEqual(len(dom.find("li", cls=("event", "abort"), data_kind="abort")), 1)
        outcome = dom.find("p", cls=("outcome", "abort"), within=in_ranker)
        self.assertEqual(len(outcome), 1)
        self.assertIn("latency_p95_ms", "".join(outcome[0]["text"]))
        gate = dom.find("tr", cls="gate-row", data_gate="latency_p95_ms")[0]
        self.assertEqual(gate["attrs"]["data-result"], "Failed")
        self.chromium(f"http://{METRICS}/", screenshot=os.path.join(arts, "live-view-aborted.png"))
        traffic.stop()

        # 4. veerctl report: one file, the steps, the abort and the bounds, rendered with no network.
        unwritable = "/proc/veer-no-such-dir/report.html"
        proc = self.veerd.ctl("report", "ranker", "-o", unwritable, check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn(f"cannot write {unwritable}", proc.stderr)
        proc = self.veerd.ctl("report", "ranker", "-o", out)
        print(f"  {proc.stdout.strip()}", flush=True)
        self.assertIn("abort", proc.stdout)
        with open(out, encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn("/assets/", text, "assets inlined")
        self.assertNotRegex(text, r"(src|href)=\"https?:", "nothing to fetch")
        embedded = json.loads(re.search(r"window\.VEER_REPORT = (.*?);</script>", text, re.S).group(1))
        steps = [s["weights"]["canary"] for s in embedded["rollout"]["steps"]]
        self.assertEqual(steps, [5.0, 20.0, 0.0], "the weight steps of the rollout, the abort's last")
        self.assertEqual(embedded["rollout"]["outcome"]["kind"], "abort")
        self.assertIn("latency_p95_ms", embedded["rollout"]["outcome"]["message"])
        self.assertEqual(embedded["rollout"]["gates"]["latency_p95_ms"]["max"], 200.0)
        self.assertEqual(embedded["rollout"]["gates"]["error_rate"]["max"], 0.001)
        failed = [p for p in embedded["rollout"]["gates"]["latency_p95_ms"]["points"] if p["result"] == "Failed"]
        self.assertGreaterEqual(len(failed), 2)
        self.assertTrue(all(p["value"] > 200 for p in failed), failed)
        print(f"  report: {out} ({len(text)} bytes)", flush=True)
        dom = self.chromium("file://" + out, netns=False, budget_ms=2000)
        body = dom.find("body")[0]
        self.assertEqual(body["attrs"].get("data-mode"), "report")
        self.assertEqual(body["attrs"].get("data-rendered"), "1")
        self.assertEqual(self.service_section(dom)["attrs"]["data-phase"], "Aborted")
        step = dom.find("path", cls="step", data_variant="canary")
        self.assertEqual(len(step), 1)
        self.assertEqual(step[0]["attrs"]["data-points"], "3")
        self.assertEqual(len(dom.find("g", cls=("marker", "abort"), within=lambda a: Dom.has_class(a, "weights-chart"))), 1)
        bounds = dom.find("line", cls="bound", within=lambda a: a["attrs"].get("data-gate") == "latency_p95_ms")
        self.assertEqual([b["attrs"]["data-bound"] for b in bounds], ["200"])
        self.assertEqual({g["attrs"]["data-gate"] for g in dom.find("tr", cls="gate-row")}, {"latency_p95_ms", "error_rate"})
        self.chromium("file://" + out, netns=False, budget_ms=2000,
                      screenshot=os.path.join(arts, "live-view-report.png"))


if __name__ == "__main__":
    e2e.main()
