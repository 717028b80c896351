#!/usr/bin/env python3
"""(a) 10,000 new TCP connections through the VIP split 90/5/5, then 99.5/0.5 after `veerctl weights`,
counted at the backends (each case from its own client address), chi-square p > 0.001."""
import veer_e2e as e2e

# VEER_E2E_FLOWS_FACTOR scales it down to no fewer than 2000: then the 0.5 % canary still expects 10 flows
# (chi-square needs >= 5 per cell) and the chance it gets none is e^-10.
FLOWS = e2e.flows(10000, 2000)


class TestSplit(e2e.VeerCase):
    prefix = "ve2e-split"
    # Native XDP (the testbed turns TX checksum offload off for it): the other files run `auto`, i.e. tc.
    attach = "xdp"

    def run_case(self, sources, what):
        weights = self.veerd.weights("ranker")

        def sample(src):
            before = self.veerd.counters("ranker")
            r = self.tb.client("http", "--dst", e2e.VIP4, "--port", 80, "--src", src, "--count", FLOWS,
                               "--concurrency", 16, "--time-limit", e2e.scaled(150), timeout=200)
            print(f"  {what}: {r['completed']} connections from {src} in {r['elapsed']} s ({r['rate']}/s), "
                  f"errors {r['errors']}", flush=True)
            self.assertEqual(r["completed"], FLOWS, f"{what}: not every connection completed: {r}")
            at_backends = self.tb.counts_at_backends(src)
            # what the client saw and what the backends counted must agree
            self.assertEqual({v: n for v, n in at_backends.items() if n}, r["variants"])
            self.assertEqual(sum(at_backends.values()), FLOWS)
            # the kernel's per-variant new-flow counters saw these flows too
            after = self.veerd.counters("ranker")
            for v, n in at_backends.items():
                self.assertGreaterEqual(after[v]["flows"] - before[v]["flows"], n, f"{what}: flows counter of {v}")
            return at_backends

        return self.assertSampledSplit(sample, sources, weights, what)

    def test_1_configured_90_5_5(self):
        self.assertEqual(self.veerd.weights("ranker"), {"blue": 90.0, "green": 5.0, "canary": 5.0})
        self.run_case(["10.0.1.11", "10.0.1.13"], "90/5/5")

    def test_2_weights_99_5_canary_0_5(self):
        self.veerd.ctl("weights", "ranker", "blue=99.5", "canary=0.5")
        self.assertEqual(self.veerd.weights("ranker"), {"blue": 99.5, "green": 0.0, "canary": 0.5})
        counts = self.run_case(["10.0.1.12", "10.0.1.14"], "99.5/0.5")
        self.assertGreater(counts["canary"], 0)


if __name__ == "__main__":
    e2e.main()
