#!/usr/bin/env python3
"""(g) Kernel telemetry against the load client's ground truth, through the VIP at a steady rate:
- P95 of the kernel's response-latency histogram (veer's /metrics, veer_response_latency_seconds, the delta
  over the run) within 10 % of the client's TTFB P95 for a backend with 50 ms of added latency (the status
  windows' latency_p95_ms, one per interval, are printed next to it); in an emulated guest, between the added
  latency and the client's TTFB P95 (the client's own delay is large there);
- 5xx responses and backend resets counted by the kernel equal to what the backend injected (its
  model_requests_total{code="500"} and /stats injected_resets), and to what the client saw.
Config: examples/rollout-canary.yaml, rollout not started (blue 100 %)."""
import os
import statistics
import time

import veer_e2e as e2e

METRICS_URL = "http://127.0.0.1:9469/metrics"
TIMING_ATTEMPTS = 2  # the client's TTFB includes its own event-loop delay: a loaded host may inflate one run
# In an emulated kernel guest (VEER_E2E_SCALE > 1) the client's own delay is not small: in the 6.1 guest of
# 2026-12-07 its TTFB p95 was 75-78 ms where the kernel saw 66 ms and the backend added 50 (error 10.8 and
# 15.6 %, host load 1.4). There the ground truth is an interval: the kernel sees a response no earlier than the
# backend's added latency and no later than the client does (a histogram's interpolation allowed for).
GUEST = e2e.SCALE > 1
INTERPOLATION_SLACK = 1.05


class TestTelemetry(e2e.RolloutCase):
    prefix = "ve2e-tel"

    @classmethod
    def config_text(cls, tb):
        return e2e.example_config("rollout-canary.yaml", tb.prefix)

    def tearDown(self):
        self.tb.knobs("blue", "reset=true")

    def veer_metrics(self):
        return e2e.prom_samples(self.tb.fetch("lb", METRICS_URL))

    def backend_metrics(self, variant):
        return e2e.prom_samples(self.tb.fetch(variant, "http://127.0.0.1:8080/metrics"))

    def settled_veer_metrics(self, predicate, timeout=5):
        """veer's /metrics once PREDICATE(samples) holds (the daemon refreshes its counters periodically)."""
        samples, _ = e2e.wait_for("veer /metrics to catch up", lambda: (lambda s: s if predicate(s) else None)(
            self.veer_metrics()), timeout, period=0.25)
        return samples

    def test_latency_p95_matches_client(self):
        self.tb.knobs("blue", "latency=fixed:50")
        for attempt in range(1, TIMING_ATTEMPTS + 1):
            before = self.veer_metrics()
            hist_before = e2e.prom_histogram(before, "veer_response_latency_seconds", service="ranker", variant="blue")
            recorder = e2e.StatusRecorder(self.veerd, "ranker", 0.5)
            try:
                r = self.tb.client("rate", "--dst", e2e.VIP4, "--port", 80, "--src-range", "10.0.1.11-10.0.1.30",
                                   "--rate", 200, "--duration", 8, timeout=60)
            finally:
                samples = recorder.stop()
            blue = r["variants"]["blue"]
            answered = blue["answered"]
            self.assertEqual((answered, list(r["variants"])), (1600, ["blue"]), r["variants"])
            after = self.settled_veer_metrics(lambda s: (e2e.prom_histogram(
                s, "veer_response_latency_seconds", service="ranker", variant="blue") or [(0, 0)])[-1][1] -
                ((hist_before or [(0, 0)])[-1][1]) >= answered)
            hist = e2e.histogram_delta(e2e.prom_histogram(after, "veer_response_latency_seconds", service="ranker",
                                                          variant="blue"), hist_before)
            kernel_p95 = e2e.histogram_quantile(hist, 0.95) * 1000.0
            client_p95 = blue["latency_ms"]["ttfb"]["p95"]
            windows = [v["window"]["latency_p95_ms"] for _, s in samples for v in s["variants"]
                       if v["name"] == "blue" and v.get("window") and v["window"].get("latency_p95_ms")
                       and v["window"].get("responses", 0) >= 100]
            window_p95 = statistics.median(windows) if windows else None
            rel = abs(kernel_p95 - client_p95) / client_p95
            print(f"  ACCURACY (g) attempt {attempt}: client TTFB p95 {client_p95:.2f} ms, kernel histogram p95 "
                  f"{kernel_p95:.2f} ms (error {100 * rel:.1f} %), responses counted {hist[-1][1]:.0f} of {answered}; "
                  f"status window p95s {[round(w, 1) for w in windows]} median {window_p95}", flush=True)
            self.assertEqual(hist[-1][1], answered, "kernel histogram count != responses the client got")
            self.assertGreaterEqual(kernel_p95, 50.0 * 0.97, "kernel p95 below the added latency")
            # The status windows (1 s each, ~200 responses) are shown, not compared: the median of per-second
            # P95s is another statistic than the run's P95. They must exist and see the added latency.
            self.assertIsNotNone(window_p95, "no status window with latency_p95_ms")
            self.assertGreaterEqual(window_p95, 50.0 * 0.97)
            self.assertLessEqual(kernel_p95, client_p95 * INTERPOLATION_SLACK,
                                 "the kernel saw responses later than the client did")
            if rel <= 0.10 or GUEST:
                break
            print(f"  attempt {attempt}: outside 10 %; host load {os.getloadavg()[0]:.1f}", flush=True)
        if not GUEST:
            self.assertLessEqual(rel, 0.10)

    def test_5xx_and_resets_equal_injected(self):
        self.tb.knobs("blue", "error_rate=0.05", "reset_rate=0.03")
        before = self.veer_metrics()
        backend_before = self.backend_metrics("blue")
        stats_before = self.tb.backend_stats("blue")["model"]
        r = self.tb.client("rate", "--dst", e2e.VIP4, "--port", 80, "--src-range", "10.0.1.31-10.0.1.50",
                           "--rate", 200, "--duration", 6, timeout=60)
        backend_after = self.backend_metrics("blue")
        stats_after = self.tb.backend_stats("blue")["model"]
        injected_500 = (e2e.prom_value(backend_after, "model_requests_total", code="500") -
                        e2e.prom_value(backend_before, "model_requests_total", code="500"))
        answered_200 = (e2e.prom_value(backend_after, "model_requests_total", code="200") -
                        e2e.prom_value(backend_before, "model_requests_total", code="200"))
        injected_resets = stats_after["injected_resets"] - stats_before["injected_resets"]

        def kernel(samples):
            return {
                "5xx": e2e.prom_value(samples, "veer_http_responses_total", service="ranker", variant="blue",
                                      **{"class": "5xx"}),
                "2xx": e2e.prom_value(samples, "veer_http_responses_total", service="ranker", variant="blue",
                                      **{"class": "2xx"}),
                "backend_resets": e2e.prom_value(samples, "veer_flow_errors_total", service="ranker", variant="blue",
                                                 kind="backend_reset"),
            }

        k0 = kernel(before)
        expected = {"5xx": injected_500, "2xx": answered_200, "backend_resets": injected_resets}
        try:
            after = self.settled_veer_metrics(lambda s: {k: v - k0[k] for k, v in kernel(s).items()} == expected)
        except AssertionError:
            after = self.veer_metrics()
        seen = {k: v - k0[k] for k, v in kernel(after).items()}
        blue = r["variants"].get("blue", {})
        unattributed = r["variants"].get("unattributed", {})
        print(f"  COUNTS (g): injected by the backend {expected}; kernel {seen}; client 5xx {blue.get('http_5xx')}, "
              f"resets {blue.get('resets', 0) + unattributed.get('resets', 0)}", flush=True)
        self.assertGreater(injected_500, 0)
        self.assertGreater(injected_resets, 0)
        self.assertEqual(seen, expected)
        self.assertEqual(blue["http_5xx"], injected_500)
        self.assertEqual(blue.get("resets", 0) + unattributed.get("resets", 0), injected_resets)


class TestTelemetryNicOffloads(TestTelemetry):
    """The counts again on veths with a NIC's offloads (TX checksum, scatter-gather, TSO on) and the TC hook:
    every TCP segment leaves its sender with the checksum left to offload (CHECKSUM_PARTIAL), which the TC
    program's NAT must keep valid both ways (BPF_PROG_TEST_RUN only makes CHECKSUM_NONE skbs, and native XDP
    cannot carry such TCP at all). Checked by hand: the responses' first payload bytes are in the skb's
    linear part here too, so this does not reach the bpf_skb_load_bytes fallback of veer_http_class."""
    prefix = "ve2e-teln"
    offloads = "nic"
    test_latency_p95_matches_client = None  # measured above; the counts are what this hook path changes

    @classmethod
    def config_text(cls, tb):
        return e2e.set_attach(super().config_text(tb), "tc")


if __name__ == "__main__":
    e2e.main()
