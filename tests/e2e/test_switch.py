#!/usr/bin/env python3
"""(b) 50 long-lived TCP connections exchanging a line every 100 ms survive `veerctl switch ranker-echo
green`: none reset, every reply from the variant that answered first; every new connection after the switch
goes to green."""
import time

import veer_e2e as e2e

# Scaled by VEER_E2E_FLOWS_FACTOR, with floors: 20 long-lived connections all starting in green (60/20/20)
# has a chance of 0.2^20.
LONG_LIVED = e2e.flows(50, 20)
NEW_AFTER_SWITCH = e2e.flows(300, 60)


class TestSwitch(e2e.VeerCase):
    prefix = "ve2e-switch"
    # Native XDP (the testbed turns TX checksum offload off for it): the other files run `auto`, i.e. tc.
    attach = "xdp"

    def test_switch_keeps_established_connections(self):
        src_long, src_new = "10.0.1.31", "10.0.1.32"
        long = self.tb.long_client("--dst", e2e.VIP4, "--port", 7000, "--src", src_long, "--connections",
                                   LONG_LIVED, "--interval", 0.1, "--duration", e2e.scaled(60),
                                   "--time-limit", e2e.scaled(120))
        try:
            ready = long.ready()
            first = {c["index"]: c["variant"] for c in ready["connections"]}
            self.assertTrue(all(c["error"] is None for c in ready["connections"]), ready)
            self.assertNotIn(None, first.values())
            non_green = sum(1 for v in first.values() if v != "green")
            print(f"  before switch: first variants {sorted(first.values()).count('blue')} blue, "
                  f"{non_green} not green of {LONG_LIVED}", flush=True)
            # With weights 60/20/20 some connections start outside green; they prove the switch moved no flow.
            self.assertGreater(non_green, 0)
            time.sleep(1.0)

            self.veerd.ctl("switch", "ranker-echo", "green")
            weights = self.veerd.weights("ranker-echo")
            self.assertEqual(weights, {"blue": 0.0, "green": 100.0, "canary": 0.0})

            # New connections after the switch: all green (one line each).
            new = self.tb.long_client("--dst", e2e.VIP4, "--port", 7000, "--src", src_new, "--connections",
                                      NEW_AFTER_SWITCH, "--duration", 0, "--stagger", 0)
            new_done = new.finish(timeout=60)
            self.assertEqual(new_done["summary"]["errors"], 0, new_done["summary"])
            self.assertEqual(new_done["summary"]["first_variants"], {"green": NEW_AFTER_SWITCH})

            time.sleep(2.0)  # the long-lived connections keep talking across and after the switch
        finally:
            done = long.finish()
        self.assertLongLivedKept(done, first, 20, "long-lived after switch")  # ~3 s at 100 ms
        for v in e2e.VARIANTS:
            echo = self.tb.backend_stats(v)["echo"]["clients"].get(src_long, {})
            self.assertEqual(echo.get("resets", 0), 0, f"{v} saw resets")
            self.assertEqual(echo.get("connections", 0), sum(1 for x in first.values() if x == v))


if __name__ == "__main__":
    e2e.main()
