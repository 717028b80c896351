#!/usr/bin/env python3
"""The testbed's model-server stand-in (scripts/testbed/backend.py, model.py, control.py) and the steady-rate
load client (client.py rate), without veer: the client reaches each backend address by plain routing through
the lb. Knobs are changed at run time through each backend's /control; the client's view is checked against
the knobs and, exactly, against the backend's own /metrics and /stats."""
import json
import math
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
import unittest

import veer_e2e as e2e

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')
METRIC_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
# Latency bounds are measured on a shared 2-core host: a run whose tail another process inflated is measured
# again, up to this many times (a knob that does not work fails every attempt; exact checks never retry).
TIMING_ATTEMPTS = 3


def parse_prometheus(text):
    """Prometheus text exposition 0.0.4 -> {family: {"type", "help", "samples": {(name, labels): value}}}.
    Raises ValueError on anything malformed: unknown line shapes, a sample before its family's TYPE, a TYPE
    given twice, bad label syntax, a non-number value, a histogram whose buckets are not cumulative or
    whose +Inf bucket differs from _count."""
    families, current = {}, None
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                fam = families.setdefault(parts[2], {"type": None, "help": None, "samples": {}})
                if parts[1] == "TYPE":
                    if fam["type"] is not None or fam["samples"]:
                        raise ValueError(f"line {n}: TYPE of {parts[2]} given twice or after its samples")
                    if len(parts) != 4 or parts[3] not in METRIC_TYPES:
                        raise ValueError(f"line {n}: bad TYPE line {line!r}")
                    fam["type"] = parts[3]
                    current = parts[2]
                else:
                    fam["help"] = parts[3] if len(parts) == 4 else ""
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"line {n}: not a sample: {line!r}")
        name, label_text, value_text = m.group(1), m.group(2) or "", m.group(3)
        labels, pos = [], 0
        while pos < len(label_text):
            lm = LABEL.match(label_text, pos)
            if not lm or lm.end() == pos:
                raise ValueError(f"line {n}: bad labels {label_text!r}")
            labels.append((lm.group(1), lm.group(2)))
            pos = lm.end()
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(f"line {n}: bad value {value_text!r}") from None
        family = name
        if current is not None and families[current]["type"] == "histogram" and \
                name in (current + "_bucket", current + "_sum", current + "_count"):
            family = current
        if family != current or families[family]["type"] is None:
            raise ValueError(f"line {n}: sample {name} outside its family's TYPE block")
        key = (name, tuple(sorted(labels)))
        if key in families[family]["samples"]:
            raise ValueError(f"line {n}: duplicate sample {name}{labels}")
        families[family]["samples"][key] = value
    for fname, fam in families.items():
        if fam["type"] != "histogram":
            continue
        buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in fam["samples"].items()
                          if name == fname + "_bucket"))
        if not buckets or buckets[-1][0] != math.inf:
            raise ValueError(f"histogram {fname}: no +Inf bucket")
        if any(b[1] > a[1] for b, a in zip(buckets, buckets[1:])):
            raise ValueError(f"histogram {fname}: buckets not cumulative: {buckets}")
        if buckets[-1][1] != fam["samples"].get((fname + "_count", ())):
            raise ValueError(f"histogram {fname}: +Inf bucket != _count")
    return families


def value(families, family, name=None, **labels):
    return families[family]["samples"].get((name or family, tuple(sorted(labels.items()))), 0.0)


def binomial_bounds(n, p, z=4.5):
    """Counts of a Binomial(n, p) outside these happen with probability < 1e-5."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - z * sd, n * p + z * sd


class RateClient:
    """client.py rate in the background: progress lines are queued as they come."""

    def __init__(self, tb, args):
        cmd = ["ip", "netns", "exec", tb.ns("client"), sys.executable, os.path.join(tb.tools, "client.py"), "rate",
               *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next_event(self, timeout=30):
        try:
            event = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError("rate client: no output in time")
        if event is None:
            self.proc.wait()
            raise AssertionError(f"rate client exited ({self.proc.returncode}): {self.proc.stderr.read()}")
        return event

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()


class TestOutcomeSequence(unittest.TestCase):
    """The backends' reset/500/200 choice (model.OutcomeSequence) spreads injected errors evenly: the canary
    e2e cases judge a failure_limit 0 gate on 1 s windows of ~150 requests at 2 %, and need a 500 in each."""

    def test_every_window_holds_its_share(self):
        sys.path.insert(0, os.path.join(e2e.ARGS.source_dir, "scripts", "testbed"))
        import model
        for seed in range(5):
            seq = model.OutcomeSequence(random.Random(seed))
            hits = [seq.next() < 0.02 for _ in range(20000)]
            prefix = [0]
            for h in hits:
                prefix.append(prefix[-1] + h)
            for n in (150, 1000):
                counts = [prefix[i + n] - prefix[i] for i in range(len(hits) - n + 1)]
                self.assertGreaterEqual(min(counts), 1, f"seed {seed}: a window of {n} without a 500")
                self.assertLessEqual(max(abs(c - 0.02 * n) for c in counts), 2.0, f"seed {seed}, windows of {n}")


class TestLatencyClientsMatch(unittest.TestCase):
    """model.Knobs' latency_clients: which peers get the added latency. The IPv4-mapped case is checked here, not
    on the testbed: the backends listen on 0.0.0.0 and on :: with IPV6_V6ONLY, so no mapped peer reaches them
    there, but a backend on a dual-stack socket sees its IPv4 clients so."""

    def test_prefixes_match_peers(self):
        sys.path.insert(0, os.path.join(e2e.ARGS.source_dir, "scripts", "testbed"))
        import model
        knobs = model.Knobs().updated({"latency": "fixed:300", "latency_clients": "10.0.3.0/24, fd00:3::/64"})
        self.assertEqual(knobs.as_json()["latency_clients"], "10.0.3.0/24,fd00:3::/64")
        for peer, inside in (("10.0.3.10", True), ("::ffff:10.0.3.10", True), ("fd00:3::11", True),
                             ("10.0.1.10", False), ("::ffff:10.0.1.10", False), ("fd00:1::11", False),
                             ("fd00:3::11%eth0", True), (None, False)):
            self.assertEqual(knobs.latency_applies_to(peer), inside, peer)
        for everyone in ("", "all", "ALL"):
            k = knobs.updated({"latency_clients": everyone})
            self.assertTrue(k.latency_applies_to("192.0.2.1"))
            self.assertEqual(k.as_json()["latency_clients"], "all")
        self.assertEqual(knobs.updated({"reset": True}).as_json()["latency_clients"], "all")
        for bad in ("10.0.3.0/33", "10.0.3.0/24,", "ten.0.3.0/24", "fd00:3::/129", 24, ["10.0.3.0/24", 3]):
            with self.assertRaises(ValueError, msg=repr(bad)):
                knobs.updated({"latency_clients": bad})


class TestModelServer(e2e.VeerCase):
    prefix = "ve2e-ms"
    with_veerd = False

    # ------------------------------------------------------------ helpers

    def control(self, variant, *changes, expect_ok=True):
        """control.py in the backend's namespace; returns the backend's answer."""
        proc = e2e.run([sys.executable, os.path.join(self.tb.tools, "control.py"), "--prefix", self.tb.prefix,
                        "--variant", variant, *changes], check=False, timeout=30)
        answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
        self.assertEqual(proc.returncode == 0, expect_ok, f"control {changes}: {proc.stdout} {proc.stderr}")
        self.assertEqual(answer.get("ok"), expect_ok, answer)
        return answer

    def metrics(self, variant):
        code = ("import urllib.request,sys;"
                "r=urllib.request.urlopen('http://127.0.0.1:8080/metrics',timeout=5);"
                "sys.stdout.write(r.headers['Content-Type']+'\\n'+r.read().decode())")
        out = self.tb.exec(variant, [sys.executable, "-c", code], timeout=20).stdout
        ctype, _, text = out.partition("\n")
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        return parse_prometheus(text)

    def rate(self, *args, timeout=120):
        return self.tb.client("rate", *args, timeout=timeout)

    def rate_with_baseline(self, base_variant, base_src, *args):
        """Runs client.py rate ARGS and, at the same time, the same rate to BASE_VARIANT (no knobs): the
        path's own overhead under the same host load (this 2-core machine is shared). Returns (result of
        ARGS, the baseline's ttfb p95 in ms)."""
        rate = args[list(args).index("--rate") + 1]
        duration = args[list(args).index("--duration") + 1]
        base_client = RateClient(self.tb, ["--dst", e2e.BACKEND4[base_variant], "--port", 8080, "--src", base_src,
                                           "--rate", rate, "--duration", duration])
        try:
            r = self.rate(*args)
            base = base_client.next_event()
        finally:
            base_client.kill()
        return r, base["variants"][base_variant]["latency_ms"]["ttfb"]["p95"]

    def setUp(self):
        for v in e2e.VARIANTS:
            self.control(v, "reset=true")

    # ------------------------------------------------------------ cases

    def test_fixed_latency_p95(self):
        answer = self.control("blue", "latency=fixed:50")
        self.assertEqual(answer["knobs"]["latency"], {"dist": "fixed", "ms": 50.0, "spec": "fixed:50"})
        for attempt in range(1, TIMING_ATTEMPTS + 1):
            before, stats_before = self.metrics("blue"), self.tb.backend_stats("blue")["clients"]
            r, base_p95 = self.rate_with_baseline("green", "10.0.1.11", "--dst", e2e.BACKEND4["blue"], "--port",
                                                  8080, "--src-range", "10.0.1.13-10.0.1.22", "--rate", 100,
                                                  "--duration", 4)
            after, stats_after = self.metrics("blue"), self.tb.backend_stats("blue")["clients"]
            blue = r["variants"]["blue"]
            ttfb = blue["latency_ms"]["ttfb"]
            print(f"  attempt {attempt}: overhead p95 {base_p95} ms; fixed 50 ms: ttfb {ttfb}, total p95 "
                  f"{blue['latency_ms']['total']['p95']} ms, offered {r['offered_rate']}/s", flush=True)
            # Exact whatever the host load:
            self.assertEqual(r["sent"], 400, r)
            self.assertEqual(list(r["variants"]), ["blue"], r)
            self.assertEqual((blue["ok"], blue["count"]), (400, 400), blue)
            self.assertGreaterEqual(ttfb["min"], 50.0, ttfb)  # never answered before the added latency
            delta = lambda le: (value(after, "model_request_duration_seconds", "model_request_duration_seconds_bucket",
                                      le=le) -
                                value(before, "model_request_duration_seconds", "model_request_duration_seconds_bucket",
                                      le=le))
            self.assertEqual(delta("+Inf"), 400)  # the backend's histogram counted every answer...
            self.assertEqual(delta("0.04"), 0)    # ...and none of them sooner than 40 ms
            # source addresses round robin, preserved up to the backend, a new connection per request
            self.assertEqual(r["per_source"], {f"10.0.1.{i}": {"blue": 40} for i in range(13, 23)})
            for i in range(13, 23):
                a = f"10.0.1.{i}"
                now, then = stats_after[a], stats_before.get(a, {"requests": 0, "connections": 0})
                self.assertEqual((now["requests"] - then["requests"], now["connections"] - then["connections"]),
                                 (40, 40))
            # Timing: p95 within 10 % of 50 ms plus the path's own overhead at the same time (its p95).
            if ttfb["p95"] <= 55.0 + max(base_p95, 2.0):
                break
            print(f"  attempt {attempt}: p95 {ttfb['p95']} ms over {55.0 + max(base_p95, 2.0):.1f} ms "
                  f"(host load {os.getloadavg()[0]:.1f})", flush=True)
        self.assertLessEqual(ttfb["p95"], 55.0 + max(base_p95, 2.0), ttfb)

    def test_uniform_latency_distribution(self):
        self.control("green", "latency=uniform:20:60")
        for attempt in range(1, TIMING_ATTEMPTS + 1):
            r, base_p95 = self.rate_with_baseline("canary", "10.0.1.12", "--dst", e2e.BACKEND4["green"], "--port",
                                                  8080, "--src", "10.0.1.23", "--rate", 150, "--duration", 2)
            ttfb = r["variants"]["green"]["latency_ms"]["ttfb"]
            print(f"  attempt {attempt}: uniform 20..60 ms: ttfb {ttfb}; overhead p95 {base_p95} ms", flush=True)
            self.assertEqual(ttfb["n"], 300, r["variants"])
            # Lower bounds hold whatever the overhead (it only adds): min >= 20, p50 >= 37 (the median of 300
            # draws has an sd of ~1.2 ms), p95 >= 55 (58 ms).
            self.assertGreaterEqual(ttfb["min"], 20.0, ttfb)
            self.assertGreaterEqual(ttfb["p50"], 37.0, ttfb)
            self.assertGreaterEqual(ttfb["p95"], 55.0, ttfb)
            # Upper: the median of draw + overhead stays below 46 ms (P(draw <= 46) = 0.65) plus the overhead's
            # p95 at the same time.
            if ttfb["p50"] <= 46.0 + base_p95:
                break
            print(f"  attempt {attempt}: p50 over {46.0 + base_p95:.1f} ms (host load {os.getloadavg()[0]:.1f})",
                  flush=True)
        self.assertLessEqual(ttfb["p50"], 46.0 + base_p95, ttfb)

    def test_error_share(self):
        self.control("green", "error_rate=0.2")
        before = self.metrics("green")
        r = self.rate("--dst", e2e.BACKEND4["green"], "--port", 8080, "--src-range", "10.0.1.24-10.0.1.27",
                      "--rate", 250, "--duration", 4)
        after = self.metrics("green")
        green = r["variants"]["green"]
        lo, hi = binomial_bounds(1000, 0.2)
        print(f"  error_rate 0.2: {green['http_5xx']} of {green['count']} answered 500 (bounds {lo:.0f}..{hi:.0f})",
              flush=True)
        self.assertEqual(list(r["variants"]), ["green"], r)
        self.assertEqual(green["count"], 1000)
        self.assertEqual(green["status"], {"200": green["ok"], "500": green["http_5xx"]})
        self.assertTrue(lo <= green["http_5xx"] <= hi, green)
        self.assertEqual((green["resets"], green["timeouts"], green["errors"]), (0, {"connect": 0, "response": 0}, {}))
        delta = lambda code: value(after, "model_requests_total", code=code) - \
            value(before, "model_requests_total", code=code)
        self.assertEqual(delta("500"), green["http_5xx"])
        self.assertEqual(delta("200"), green["ok"])

    def test_reset_share(self):
        self.control("canary", "reset_rate=0.1")
        before = self.metrics("canary")
        r = self.rate("--dst", e2e.BACKEND4["canary"], "--port", 8080, "--src-range", "10.0.1.28-10.0.1.31",
                      "--rate", 250, "--duration", 4)
        after = self.metrics("canary")
        lo, hi = binomial_bounds(1000, 0.1)
        totals = r["totals"]
        print(f"  reset_rate 0.1: {totals['resets']} of {totals['count']} reset (bounds {lo:.0f}..{hi:.0f})", flush=True)
        self.assertEqual(totals["count"], 1000)
        self.assertTrue(lo <= totals["resets"] <= hi, totals)
        # a reset new connection never got a response that named its variant
        self.assertEqual(r["variants"]["unattributed"]["resets"], totals["resets"])
        self.assertEqual(r["variants"]["canary"]["ok"], 1000 - totals["resets"])
        self.assertEqual((totals["http_5xx"], totals["timeouts"], totals["errors"], totals["refused"]),
                         (0, {"connect": 0, "response": 0}, {}, 0))
        self.assertEqual(value(after, "model_resets_total") - value(before, "model_resets_total"), totals["resets"])
        model = self.tb.backend_stats("canary")["model"]["clients"]
        self.assertEqual(sum(model[f"10.0.1.{i}"]["injected_resets"] for i in range(28, 32)), totals["resets"])

    def test_predictions_match_metrics_exactly(self):
        answer = self.control("blue", "predictions=cat:0.7,dog:0.3")
        self.assertEqual(answer["knobs"]["predictions"], {"cat": 0.7, "dog": 0.3})
        before = self.metrics("blue")
        # keep-alive pool (2 connections per source) and the JSON path, for a change
        r = self.rate("--dst", e2e.BACKEND4["blue"], "--port", 8080, "--src-range", "10.0.1.32-10.0.1.35",
                      "--rate", 250, "--duration", 4, "--keepalive", 2, "--path", "/predict")
        after = self.metrics("blue")
        blue = r["variants"]["blue"]
        seen = blue["predictions"]
        metric = {c: value(after, "model_predictions_total", **{"class": c}) -
                  value(before, "model_predictions_total", **{"class": c}) for c in ("cat", "dog")}
        stat, df, p = e2e.chi_square(seen, {"cat": 70, "dog": 30})
        print(f"  predictions: client {seen}, /metrics delta {metric}; chi2 {stat:.2f} p {p:.3f}", flush=True)
        self.assertEqual((blue["count"], blue["ok"]), (1000, 1000), blue)
        self.assertEqual(seen, {c: int(n) for c, n in metric.items()})
        self.assertGreater(p, e2e.P_MIN)
        clients = self.tb.backend_stats("blue")["clients"]
        self.assertLessEqual(sum(clients[f"10.0.1.{i}"]["connections"] for i in range(32, 36)), 8)

    def test_knobs_change_at_run_time(self):
        client = RateClient(self.tb, ["--dst", e2e.BACKEND4["green"], "--port", 8080, "--src", "10.0.1.36",
                                      "--rate", 100, "--duration", 6, "--progress", 0.5])
        try:
            events = [client.next_event(), client.next_event(), client.next_event()]
            self.control("green", "latency=fixed:100", "error_rate=0.5")
            changed_at = time.time()  # the backend answered: requests arriving from now on have the new knobs
            while events[-1]["event"] != "done":
                events.append(client.next_event())
            client.proc.wait(timeout=10)
        finally:
            client.kill()
        done = events[-1]
        progress = events[:-1]
        starts = [0.0] + [e["time"] for e in progress[:-1]]  # window i covers (starts[i], progress[i]["time"]]
        early = progress[:3]  # before the change was asked for
        # requests in flight at the change had no added latency and ended within milliseconds
        late = [e for e, start in zip(progress, starts) if start > changed_at + 0.2 and e["window"]]
        for e in early + late:
            w = e["window"]["green"]
            print(f"  t={e['elapsed']:5.2f}s {'after ' if e in late else 'before'}: {w['count']} answers, "
                  f"ttfb min {w['latency_ms']['ttfb']['min']} p95 {w['latency_ms']['ttfb']['p95']} ms, "
                  f"5xx {w['http_5xx']}", flush=True)
        self.assertGreaterEqual(len(early), 2)
        self.assertGreaterEqual(len(late), 4)
        for e in early:
            w = e["window"]["green"]
            self.assertEqual(w["http_5xx"], 0, e)
            self.assertLess(w["latency_ms"]["ttfb"]["p95"], 50.0, e)
        late_5xx = sum(e["window"]["green"]["http_5xx"] for e in late)
        late_n = sum(e["window"]["green"]["count"] for e in late)
        for e in late:
            self.assertGreaterEqual(e["window"]["green"]["latency_ms"]["ttfb"]["min"], 100.0, e)
        lo, hi = binomial_bounds(late_n, 0.5)
        self.assertTrue(lo <= late_5xx <= hi, (late_5xx, late_n))
        self.assertEqual((done["totals"]["count"], done["sent"]), (600, 600))
        # the progress windows add up to the run's totals at the last progress line
        self.assertEqual(sum(e["window"].get("green", {}).get("count", 0) for e in progress),
                         progress[-1]["totals"]["count"])

    def test_bad_knobs_change_nothing(self):
        good = self.control("canary", "latency=normal:30:5", "error_rate=0.1")["knobs"]
        for bad in (["error_rate=1.5"], ["latency=bogus:1"], ["latency=uniform:50:10"], ["predictions=cat:-1"],
                    ["predictions=c a t:1"], ["nope=1"], ["error_rate=0.6", "reset_rate=0.5"],
                    ["latency=fixed:10", "error_rate=x"]):
            answer = self.control("canary", *bad, expect_ok=False)
            self.assertIn("error", answer)
            self.assertEqual(answer["knobs"], good, bad)
        self.assertEqual(self.control("canary")["knobs"], good)
        # GET with a query string works the same (what a curl one-liner uses), bad JSON is refused
        code = ("import urllib.request,urllib.error,sys\n"
                "def q(url, data=None):\n"
                "    try: r = urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5)\n"
                "    except urllib.error.HTTPError as e: r = e\n"
                "    print(r.status, r.read().decode().strip())\n"
                "q('http://127.0.0.1:8080/control?reset_rate=0.05&latency=none')\n"
                "q('http://127.0.0.1:8080/control', b'{not json')\n")
        lines = self.tb.exec("canary", [sys.executable, "-c", code]).stdout.splitlines()
        status, _, body = lines[0].partition(" ")
        self.assertEqual(status, "200")
        knobs = json.loads(body)["knobs"]
        self.assertEqual((knobs["reset_rate"], knobs["error_rate"], knobs["latency"]["dist"]), (0.05, 0.1, "none"))
        self.assertEqual(knobs["version"], good["version"] + 1)
        self.assertTrue(lines[1].startswith("400 "), lines[1])

    def test_latency_clients_only_inside_the_prefixes(self):
        # Inside: 10.0.1.48/30 and fd00:1::48/126 (client addresses .48-.51, ::48-::4b); outside: .44 and ::44.
        prefixes = "10.0.1.48/30,fd00:1::48/126"
        answer = self.control("canary", "latency=fixed:300", f"latency_clients={prefixes}", "error_rate=0.2")
        self.assertEqual(answer["knobs"]["latency_clients"], prefixes)
        v4, v6 = e2e.BACKEND4["canary"], e2e.BACKEND6["canary"]
        runs = {("inside", 4): ("10.0.1.49", v4), ("outside", 4): ("10.0.1.44", v4),
                ("inside", 6): ("fd00:1::49", v6), ("outside", 6): ("fd00:1::44", v6)}
        for attempt in range(1, TIMING_ATTEMPTS + 1):
            # All four at once: the same knobs, the same moment, only the client address differs.
            clients = {key: RateClient(self.tb, ["--dst", dst, "--port", 8080, "--src", src, "--rate", 20,
                                                 "--duration", 2])
                       for key, (src, dst) in runs.items()}
            try:
                results = {key: c.next_event(timeout=60) for key, c in clients.items()}
            finally:
                for c in clients.values():
                    c.kill()
            canary = {key: r["variants"]["canary"] for key, r in results.items()}
            for key, v in canary.items():
                ttfb = v["latency_ms"]["ttfb"]
                print(f"  attempt {attempt}: {key[0]:7} IPv{key[1]} ({runs[key][0]}): {v['count']} answers, "
                      f"{v['http_5xx']} 500s, ttfb min {ttfb['min']} p95 {ttfb['p95']} ms", flush=True)
            # Exact whatever the host load:
            for key, v in canary.items():
                self.assertEqual(list(results[key]["variants"]), ["canary"], results[key])
                self.assertEqual(v["count"], 40, (key, v))
                if key[0] == "inside":  # no answer before the added latency
                    self.assertGreaterEqual(v["latency_ms"]["ttfb"]["min"], 280.0, (key, v))
            # Errors ignore latency_clients. One backend, one evenly spread outcome sequence for all 160
            # requests: 20 % of them within ~2; how the four interleave in it is up to timing (one client's
            # 40 held 4 to 12), so each side (80 requests) is asserted to get some, not each client.
            fives = {k: v["http_5xx"] for k, v in canary.items()}
            self.assertLessEqual(abs(sum(fives.values()) - 32), 3, fives)
            for side in ("inside", "outside"):
                self.assertGreater(sum(n for k, n in fives.items() if k[0] == side), 0, fives)
            # Timing: outside the prefixes no added latency, so a p95 far below 300 ms (150 ms leaves the
            # path's own overhead on a shared host plenty of room); retried on load like the other bounds.
            slow = {key: v["latency_ms"]["ttfb"]["p95"] for key, v in canary.items()
                    if key[0] == "outside" and v["latency_ms"]["ttfb"]["p95"] >= 150.0}
            if not slow:
                break
            print(f"  attempt {attempt}: outside p95 over 150 ms {slow} (host load {os.getloadavg()[0]:.1f})",
                  flush=True)
        self.assertEqual(slow, {}, "clients outside latency_clients got added latency")

        # A bad prefix, POSTed (control.py) or in a GET query, answers 400 and changes nothing.
        good = self.control("canary")["knobs"]
        for bad in (["latency_clients=10.0.1.0/33"], ["latency_clients=not-a-prefix"],
                    ["latency_clients=10.0.1.48/30,"], ["latency_clients=fd00:1::/129"],
                    ["latency=none", "latency_clients=10.0.1.300/32"]):
            answer = self.control("canary", *bad, expect_ok=False)
            self.assertIn("latency_clients", answer["error"], bad)
            self.assertEqual(answer["knobs"], good, bad)
        code = ("import urllib.request,urllib.error,sys\n"
                "def q(url):\n"
                "    try: r = urllib.request.urlopen(url, timeout=5)\n"
                "    except urllib.error.HTTPError as e: r = e\n"
                "    print(r.status, r.read().decode().strip())\n"
                "q('http://127.0.0.1:8080/control?latency_clients=10.0.1.48/30,fd00:1::48/129')\n"
                "q('http://127.0.0.1:8080/control')\n")
        lines = self.tb.exec("canary", [sys.executable, "-c", code]).stdout.splitlines()
        self.assertTrue(lines[0].startswith("400 "), lines[0])
        self.assertEqual(json.loads(lines[1].partition(" ")[2])["knobs"], good)
        # ... and the refused changes left the behaviour as it was: inside still gets the added latency.
        r = self.rate("--dst", e2e.BACKEND4["canary"], "--port", 8080, "--src", "10.0.1.50", "--rate", 10,
                      "--duration", 1)
        self.assertGreaterEqual(r["variants"]["canary"]["latency_ms"]["ttfb"]["min"], 280.0, r["variants"])

        # A GET sets it too (any order, shown canonical), and "all" is every client again.
        code = ("import urllib.request,sys\n"
                "for q in sys.argv[1:]:\n"
                "    r = urllib.request.urlopen('http://127.0.0.1:8080/control?' + q, timeout=5)\n"
                "    print(r.read().decode().strip())\n")
        lines = self.tb.exec("canary", [sys.executable, "-c", code, "latency_clients=fd00:1::4a/126,10.0.1.50/30",
                                        "latency_clients=all"]).stdout.splitlines()
        knobs = [json.loads(line)["knobs"] for line in lines]
        self.assertEqual(knobs[0]["latency_clients"], "fd00:1::48/126,10.0.1.48/30")
        self.assertEqual(knobs[1]["latency_clients"], "all")
        self.assertEqual(knobs[1]["version"], good["version"] + 2)

    def test_start_time_flags(self):
        # a second backend in the blue namespace on other ports, degraded from the start
        pid_file = f"/run/{self.tb.prefix}-testbed/pids/extra-backend.pid"
        cmd = ["ip", "netns", "exec", self.tb.ns("blue"), sys.executable, os.path.join(self.tb.tools, "backend.py"),
               "--variant", "blue2", "--http-port", 18080, "--udp-port", 19000, "--echo-port", 17000,
               "--latency", "fixed:20", "--latency-clients", "10.0.1.37/32,fd00:1::37/128", "--error-rate", "0.25",
               "--predictions", "x:1", "--pid-file", pid_file]
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(pid_file):
                self.assertIsNone(proc.poll(), "extra backend exited")
                self.assertLess(time.monotonic(), deadline, "extra backend did not start")
                time.sleep(0.05)
            r = self.rate("--dst", e2e.BACKEND4["blue"], "--port", 18080, "--src", "10.0.1.37", "--rate", 200,
                          "--duration", 2)
            v = r["variants"]["blue2"]
            lo, hi = binomial_bounds(400, 0.25)
            self.assertEqual(v["count"], 400)
            self.assertTrue(lo <= v["http_5xx"] <= hi, v)
            self.assertEqual(v["predictions"], {"x": v["ok"]})
            self.assertGreaterEqual(v["latency_ms"]["ttfb"]["min"], 20.0)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        # bad start flags: a clear error, nothing started
        bad = subprocess.run([sys.executable, os.path.join(self.tb.tools, "backend.py"), "--variant", "x",
                              "--error-rate", "2"], capture_output=True, text=True, timeout=20)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("error_rate", bad.stderr)
        bad = subprocess.run([sys.executable, os.path.join(self.tb.tools, "backend.py"), "--variant", "x",
                              "--latency-clients", "10.0.1.0/33"], capture_output=True, text=True, timeout=20)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("latency_clients", bad.stderr)

    def test_steady_rate_and_bounds(self):
        r = self.rate("--dst", e2e.BACKEND4["canary"], "--port", 8080, "--src-range", "10.0.1.38-10.0.1.40",
                      "--rate", 300, "--duration", 3)
        print(f"  300/s for 3 s: sent {r['sent']} offered {r['offered_rate']}/s elapsed {r['elapsed']} s", flush=True)
        self.assertEqual((r["sent"], r["done"], r["skipped"]), (900, 900, 0))
        self.assertTrue(270 <= r["offered_rate"] <= 330, r)
        self.assertTrue(2.9 <= r["elapsed"] <= 4.5, r)
        self.assertEqual(r["per_source"], {f"10.0.1.{i}": {"canary": 300} for i in (38, 39, 40)})
        # --count bounds the run before --duration
        r = self.rate("--dst", e2e.BACKEND4["canary"], "--port", 8080, "--src", "10.0.1.41", "--rate", 100,
                      "--duration", 30, "--count", 50)
        self.assertEqual(r["sent"], 50)
        self.assertLess(r["elapsed"], 2.0)
        # IPv6 sources from a range
        r = self.rate("--dst", e2e.BACKEND6["canary"], "--port", 8080, "--src-range", "fd00:1::42-fd00:1::43",
                      "--rate", 100, "--duration", 1)
        self.assertEqual(r["per_source"], {"fd00:1::42": {"canary": 50}, "fd00:1::43": {"canary": 50}})

    def test_metrics_exposition(self):
        for v in e2e.VARIANTS:
            fams = self.metrics(v)
            expected = {"model_requests_total": "counter", "model_resets_total": "counter",
                        "model_predictions_total": "counter", "model_request_duration_seconds": "histogram",
                        "model_info": "gauge"}
            for name, kind in expected.items():
                self.assertEqual(fams[name]["type"], kind, name)
                self.assertTrue(fams[name]["help"], name)
            les = {dict(labels)["le"] for (name, labels) in fams["model_request_duration_seconds"]["samples"]
                   if name.endswith("_bucket")}
            for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"):
                self.assertIn(le, les)  # Prometheus' default buckets are all there
            self.assertEqual(value(fams, "model_info", variant=v), 1.0)
        # the parser does reject what it should (so the checks above can fail)
        good = "# TYPE a counter\na 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4\nh_count 3\n"
        parse_prometheus(good)
        for broken in ("a 1\n", "# TYPE a counter\na{x=1} 1\n", "# TYPE a counter\na one\n",
                       good.replace('{le="1"} 2', '{le="1"} 5'), good.replace("h_count 3", "h_count 4"),
                       good + "# TYPE a counter\n"):
            with self.assertRaises(ValueError, msg=broken):
                parse_prometheus(broken)


if __name__ == "__main__":
    e2e.main()
