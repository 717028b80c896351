#!/usr/bin/env python3
"""(c) the UDP service and the IPv6 service split as configured (chi-square p > 0.001), and traffic that is
not for a service (plain routing to a backend address) passes untouched while veer is attached."""
import veer_e2e as e2e

# Scaled by VEER_E2E_FLOWS_FACTOR to no fewer than 400: the smallest weight (10 %) still expects 40.
FLOWS = e2e.flows(2000, 400)
# Plain-routed requests per backend (exact counts, no statistics).
PLAIN_HTTP = e2e.flows(300, 30)
PLAIN_UDP = e2e.flows(100, 20)


class TestUdpAndIpv6(e2e.VeerCase):
    prefix = "ve2e-udp6"
    # Native XDP (the testbed turns TX checksum offload off for it): the other files run `auto`, i.e. tc.
    attach = "xdp"

    def test_udp_split(self):
        weights = self.veerd.weights("ranker-udp")

        def sample(src):
            r = self.tb.client("udp", "--dst", e2e.VIP4, "--port", 53, "--src", src, "--count", FLOWS,
                               "--concurrency", 32, timeout=120)
            print(f"  udp: {r['completed']} flows from {src} in {r['elapsed']} s, retries {r['retries']}, "
                  f"errors {r['errors']}", flush=True)
            self.assertEqual(r["completed"], FLOWS, r)
            self.assertEqual(r["errors"], {}, r)
            # each flow sent one datagram (plus retries): counted at the backends, per variant, as the client saw
            at_backends = self.tb.counts_at_backends(src, kind="udp", field="datagrams")
            self.assertEqual(sum(at_backends.values()), FLOWS + r["retries"])
            if r["retries"] == 0:
                self.assertEqual({v: n for v, n in at_backends.items() if n}, r["variants"])
            return r["variants"]

        self.assertSampledSplit(sample, ["10.0.1.21", "10.0.1.31"], weights, "udp ranker-udp")

    def test_ipv6_split(self):
        weights = self.veerd.weights("ranker6")

        def sample(src):
            r = self.tb.client("http", "--dst", e2e.VIP6, "--port", 80, "--src", src, "--count", FLOWS,
                               "--concurrency", 16, timeout=120)
            print(f"  ipv6: {r['completed']} connections from {src} in {r['elapsed']} s ({r['rate']}/s)", flush=True)
            self.assertEqual(r["completed"], FLOWS, r)
            at_backends = self.tb.counts_at_backends(src)
            self.assertEqual({v: n for v, n in at_backends.items() if n}, r["variants"])
            return at_backends

        self.assertSampledSplit(sample, ["fd00:1::22", "fd00:1::32"], weights, "ipv6 ranker6")

    def test_non_service_traffic_passes(self):
        # Backend addresses are not services: plain routing through the lb, each reaching exactly its backend.
        for i, v in enumerate(e2e.VARIANTS):
            r = self.tb.client("http", "--dst", e2e.BACKEND4[v], "--port", 8080, "--src", f"10.0.1.{23 + i}",
                               "--count", PLAIN_HTTP)
            self.assertEqual(r["variants"], {v: PLAIN_HTTP}, r)
            r6 = self.tb.client("udp", "--dst", e2e.BACKEND6[v], "--port", 9000, "--src", f"fd00:1::{23 + i}",
                                "--count", PLAIN_UDP)
            self.assertEqual(r6["variants"], {v: PLAIN_UDP}, r6)


if __name__ == "__main__":
    e2e.main()
