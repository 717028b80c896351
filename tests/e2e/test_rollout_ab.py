#!/usr/bin/env python3
"""(f) A/B at 50/50 with affinity client-ip (examples/rollout-ab.yaml as written): real traffic from many
client addresses through the VIP, every client stays in one variant (the load client's per-source counts and
`veerctl which`); conversions pushed with `veerctl push` (the "1*N" / "0*N" forms) at 10 % (blue) vs 13 %
(canary): with a small sample the report is still collecting and not significant; once each arm has the
sample the report asks for, it declares the difference significant; the sample-ratio-mismatch check of the
kernel's flow counts does not fire; `veerctl report` carries the verdict, which chromium renders from the
file; veerd killed (-9) and started again gives the same report.

The clients are chosen (with `veerctl which`) as the same number per arm: with client-ip affinity a client is
the unit of assignment, so equal request rates per client give flow counts in the weights' ratio, which is
what the SRM check compares."""
import json
import os
import re
import shutil
import tempfile
import time

import veer_browser as browser
import veer_e2e as e2e

PER_ARM = 15
CANDIDATES = [f"10.0.1.{i}" for i in range(11, 61)]


class TestAb(e2e.RolloutCase):
    prefix = "ve2e-rab"

    @classmethod
    def config_text(cls, tb):
        return e2e.example_config("rollout-ab.yaml", tb.prefix)

    def which(self, client):
        rc, answer = self.veerd.ctl_json("which", "ranker", client)
        self.assertTrue(answer.get("ok"), answer)
        return answer["result"]["variant"]

    def push(self, variant, *values):
        rc, answer = self.veerd.ctl_json("push", "ranker", variant, *values)
        self.assertTrue(answer.get("ok"), answer)
        return answer["result"]

    def report(self):
        rc, answer = self.veerd.ctl_json("ab", "ranker")
        self.assertTrue(answer.get("ok"), answer)
        return answer["result"]

    def test_ab_report_and_client_affinity(self):
        by_variant = {"blue": [], "canary": []}
        for c in CANDIDATES:
            by_variant[self.which(c)].append(c)
        print(f"  which over {len(CANDIDATES)} client addresses: "
              f"{ {v: len(cs) for v, cs in by_variant.items()} }", flush=True)
        self.assertGreaterEqual(min(len(cs) for cs in by_variant.values()), PER_ARM, by_variant)
        chosen = {v: cs[:PER_ARM] for v, cs in by_variant.items()}
        assigned = {c: v for v, cs in chosen.items() for c in cs}
        sources = sorted(assigned, key=lambda a: int(a.rsplit(".", 1)[1]))

        answer = self.veerd.rollout("ranker", "start")
        print(f"  rollout start: {answer['result']}", flush=True)
        r = self.tb.client("rate", "--dst", e2e.VIP4, "--port", 80, "--src", ",".join(sources), "--rate", 200,
                           "--duration", 8, timeout=60)
        print(f"  traffic: {r['done']} requests, per variant { {v: o['count'] for v, o in r['variants'].items()} }",
              flush=True)
        self.assertEqual(r["sent"], 1600, r)
        self.assertNotIn("unattributed", r["variants"])
        # every client stayed in one variant: the one `which` named before the traffic
        for src in sources:
            self.assertEqual(list(r["per_source"][src]), [assigned[src]], f"client {src}: {r['per_source'][src]}")
            self.assertEqual(self.which(src), assigned[src], f"client {src} moved")
        time.sleep(1.5)  # the kernel's flow counters reach the report

        # a small sample: 10 % vs 13 % of 200 each: not enough yet
        self.push("blue", "conversion=1*20")
        self.push("blue", "conversion=0*180")
        self.push("canary", "conversion=1*26")
        self.push("canary", "conversion=0*174")
        small = self.report()
        print(f"  report after 200 per arm: {small}", flush=True)
        arms = {v["variant"]: v for v in small["variants"]}
        self.assertEqual((arms["blue"]["n"], arms["canary"]["n"]), (200, 200))
        self.assertAlmostEqual(arms["blue"]["estimate"], 0.10, places=9)
        self.assertAlmostEqual(arms["canary"]["estimate"], 0.13, places=9)
        self.assertFalse(small["significant"], small)
        self.assertFalse(small["srm_mismatch"], small)
        # 10 % -> 13 % at alpha 0.05, power 0.8: about 1,770 per arm (two-sided z test of two proportions)
        self.assertTrue(1500 <= small["sample_size_per_arm"] <= 2100, small["sample_size_per_arm"])
        self.assertEqual(small["samples_still_needed"], small["sample_size_per_arm"] - 200)
        self.assertIn("collecting", small["verdict"])

        # the sample the report asked for (3,000 per arm at the same proportions)
        self.push("blue", "conversion=1*280")
        self.push("blue", "conversion=0*2520")
        self.push("canary", "conversion=1*364")
        self.push("canary", "conversion=0*2436")
        rep = self.report()
        print(f"  report after 3000 per arm: {rep}", flush=True)
        arms = {v["variant"]: v for v in rep["variants"]}
        self.assertEqual((arms["blue"]["n"], arms["canary"]["n"]), (3000, 3000))
        self.assertAlmostEqual(arms["canary"]["estimate"], 0.13, places=9)
        self.assertEqual(rep["samples_still_needed"], 0, rep)
        self.assertTrue(rep["significant"], rep)
        self.assertTrue(arms["canary"]["significant"], arms["canary"])
        self.assertLess(arms["canary"]["p_value"], 0.05)
        self.assertAlmostEqual(arms["canary"]["difference"], 0.03, places=9)
        self.assertTrue(arms["canary"]["ci_low"] < 0.13 < arms["canary"]["ci_high"], arms["canary"])
        # SRM: the kernel's flows per arm in the weights' ratio (equal clients, equal rates)
        self.assertFalse(rep["srm_mismatch"], rep)
        self.assertGreater(rep["srm_p_value"], 0.001)
        flows = {v: arms[v]["flows"] for v in arms}
        print(f"  flows per arm (kernel): {flows}; srm p {rep['srm_p_value']}", flush=True)
        self.assertGreaterEqual(sum(flows.values()), 1600, flows)
        self.assertGreater(min(flows.values()), 0, flows)

        # veerctl report (docs/view.md): the file carries this verdict, and chromium shows it from file://
        # with no network
        out = os.path.join(tempfile.mkdtemp(prefix="veer-e2e-ab-report-"), "ranker.html")
        self.addCleanup(shutil.rmtree, os.path.dirname(out), True)
        self.veerd.ctl("report", "ranker", "-o", out)
        with open(out, encoding="utf-8") as f:
            embedded = json.loads(re.search(r"window\.VEER_REPORT = (.*?);</script>", f.read(), re.S).group(1))
        self.assertEqual(embedded["ab"]["verdict"], rep["verdict"])
        self.assertEqual({v["variant"]: v["n"] for v in embedded["ab"]["variants"]}, {"blue": 3000, "canary": 3000})
        dom = browser.render(self, "file://" + out, budget_ms=2000)
        verdict = dom.find("p", cls="verdict", within=lambda a: browser.Dom.has_class(a, "ab-verdict"))
        self.assertEqual(["".join(v["text"]) for v in verdict], [rep["verdict"]])

        # kill -9 and start again: the experiment's data is on disk (state.json's rollout_totals, written
        # before each push is answered), the flow counters live in pinned maps: the same report
        self.veerd.kill9()
        self.veerd.start()
        again = self.report()
        print(f"  report after kill -9 and restart: {again}", flush=True)
        self.assertEqual(again, rep)
        self.push("canary", "conversion=1*1")
        arms = {v["variant"]: v for v in self.report()["variants"]}
        self.assertEqual((arms["blue"]["n"], arms["canary"]["n"]), (3000, 3001))

        # a client that invents names is bounded: 64 names per variant, then a clear refusal that changes nothing
        self.push("canary", *[f"extra_{i}=1" for i in range(63)])  # + conversion = 64
        before = self.report()
        rc, answer = self.veerd.ctl_json("push", "ranker", "canary", "conversion=1", "one_too_many=1", check=False)
        self.assertNotEqual(rc, 0, answer)
        self.assertFalse(answer.get("ok"), answer)
        self.assertIn("at most 64", answer["error"]["message"], answer)
        self.assertEqual(self.report(), before)

        # state.json cannot be written (a directory where veerd's temp file goes): the push is refused with
        # the reason and none of it is kept, in memory or on disk
        blocker = os.path.join(self.tb.run_dir, "state", f"state.json.tmp.{self.veerd.proc.pid}")
        os.mkdir(blocker)
        try:
            rc, answer = self.veerd.ctl_json("push", "ranker", "canary", "conversion=1*1000", check=False)
        finally:
            os.rmdir(blocker)
        print(f"  push while state.json cannot be written: {answer}", flush=True)
        self.assertEqual(answer.get("error", {}).get("code"), "internal", answer)
        self.assertIn("push not kept", answer["error"]["message"])
        self.assertEqual(self.report(), before)
        self.push("canary", "conversion=1")
        arms = {v["variant"]: v for v in self.report()["variants"]}
        self.assertEqual(arms["canary"]["n"], 3002)


if __name__ == "__main__":
    e2e.main()
