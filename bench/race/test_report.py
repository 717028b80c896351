#!/usr/bin/env python3
"""The race's arithmetic, without a race: `race.py --report DIR` on a raw.csv of known numbers rebuilds
table.md and summary.csv; the medians, the [min-max] spans, the x-plain ratios, the targets' ratios of
medians with PASS/MISS, the floor column, a failed round left out of the medians and listed, and the split
shares are checked against values worked out by hand. No root, no network (ctest label "unit")."""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

RACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "race.py")
PEERS = ["plain", "ecmp", "veer-tcx", "nftables", "nginx", "haproxy"]
# peer -> per round (new_rps, new_p99_ms, new_cpu_us_per_req, ka_rps, udp_delivered_pps)
ROUNDS = {
    "plain":    [(100, 3.0, 80, 1000, 500), (110, 3.2, 82, 1100, 520), (90, 2.8, 78, 900, 480)],
    "ecmp":     [(101, 3.1, 81, 990, 510), (99, 3.1, 79, 1010, 505), (100, 3.0, 80, 1000, 500)],
    "veer-tcx": [(130, 2.0, 60, 1150, 800), (125, 2.1, 61, 1100, 820), (200, 1.9, 59, 1200, 790)],
    "nftables": [(100, 3.5, 90, 1000, 500), (104, 3.4, 91, 1000, 500), (96, 3.6, 89, 1000, 500)],
    "nginx":    [(65, 5.2, 130, 600, 50), (70, 5.0, 120, 650, 50), (60, 5.4, 140, 700, 50)],
    "haproxy":  [(80, 4.0, 100, 700, None), (80, 4.0, 100, 700, None), (80, 4.0, 100, 700, None)],
}
FAILED = ("nftables", 4, "connectivity check: no answer")  # a 4th nftables round that failed


def write_run(out):
    with open(os.path.join(out, "raw.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, ["round", "position", "peer", "failed", "new_rps", "new_p99_ms",
                                "new_cpu_us_per_req", "new_errors", "new_non2xx", "ka_rps", "ka_p99_ms",
                                "ka_cpu_us_per_req", "ka_errors", "ka_non2xx", "udp_delivered_pps",
                                "http_blue", "http_green", "http_canary", "http_p", "note"])
        w.writeheader()
        for position, peer in enumerate(PEERS, 1):
            for rnd, (new, p99, cpu, ka, udp) in enumerate(ROUNDS[peer], 1):
                row = {"round": rnd, "position": position, "peer": peer, "failed": "", "new_rps": new,
                       "new_p99_ms": p99, "new_cpu_us_per_req": cpu, "new_errors": 0, "new_non2xx": 0,
                       "ka_rps": ka, "ka_p99_ms": p99, "ka_cpu_us_per_req": cpu / 4, "ka_errors": 0,
                       "ka_non2xx": 0, "udp_delivered_pps": "" if udp is None else udp, "note": ""}
                if peer == "veer-tcx":
                    row.update({"http_blue": 700, "http_green": 200, "http_canary": 100, "http_p": 0.5 / rnd})
                w.writerow(row)
        peer, rnd, why = FAILED
        w.writerow({"round": rnd, "position": PEERS.index(peer) + 1, "peer": peer, "failed": why,
                    "new_rps": 1, "ka_rps": 1, "note": ""})
    with open(os.path.join(out, "meta.json"), "w") as fh:
        json.dump({"header": ["date: synthetic"], "peers": PEERS}, fh)


class TestRaceReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="veer-race-report-")
        write_run(cls.dir.name)
        proc = subprocess.run([sys.executable, RACE, "--report", cls.dir.name], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        with open(os.path.join(cls.dir.name, "table.md")) as fh:
            cls.table = fh.read()
        with open(os.path.join(cls.dir.name, "summary.csv"), newline="") as fh:
            cls.summary = {(r["peer"], r["figure"]): r for r in csv.DictReader(fh)}

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def row(self, first_cell):
        for line in self.table.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0] == first_cell:
                return cells
        self.fail(f"no row {first_cell!r} in\n{self.table}")

    def test_medians_spans_and_ratios_to_plain(self):
        plain, tcx = self.row("plain"), self.row("veer-tcx")
        self.assertEqual(plain[1:3], ["100 [90–110]", "1.00"])
        # veer-tcx new-conn 125/130/200: median 130 (not the mean 151.7), x plain 1.30
        self.assertEqual(tcx[1:3], ["130 [125–200]", "1.30"])
        self.assertEqual(tcx[3], "2.00 [1.90–2.10]")  # p99, lower is better: no ratio column
        self.assertEqual(float(self.summary[("veer-tcx", "new_rps")]["median"]), 130.0)
        self.assertEqual(self.summary[("veer-tcx", "new_rps")]["rounds"], "3")
        self.assertAlmostEqual(float(self.summary[("veer-tcx", "ka_rps")]["ratio_to_plain"]), 1150 / 1000)
        # HTTP split: counts summed over rounds, p = median [min] of the per-round p-values
        self.assertIn("70.0/20.0/10.0 (p 0.25 [min 0.17])", tcx)

    def test_failed_round_is_out_of_the_medians_and_listed(self):
        nft = self.row("nftables (1 failed)")
        self.assertEqual(nft[1], "100 [96–104]")
        self.assertEqual(self.summary[("nftables", "new_rps")]["rounds"], "3")
        self.assertIn("- round 4 nftables: failed: connectivity check: no answer", self.table)

    def test_targets_are_ratios_of_medians_with_the_floor_column(self):
        header = self.row("target")
        self.assertEqual(header[2:], ["veer-tcx", "ecmp (floor)"])
        self.assertEqual(self.row("new-conn req/s vs nftables")[1:], [">= 1.25", "1.30 PASS", "1.00 MISS"])
        self.assertEqual(self.row("keep-alive req/s vs nftables")[1:], [">= 1.2", "1.15 MISS", "1.00 MISS"])
        self.assertEqual(self.row("UDP delivered pkt/s vs nftables")[1:], [">= 1.6", "1.60 PASS", "1.01 MISS"])
        # p99 and CPU/req: peer / veer (how many times lower veer is); nginx p99 5.2 / 2.0
        self.assertEqual(self.row("new-conn p99 ms vs nginx")[1:3], [">= 1.9", "2.60 PASS"])
        self.assertEqual(self.row("new-conn CPU µs/req vs haproxy")[1:3], [">= 1.9", "1.67 MISS"])
        # req/s vs nginx: 130 / 65
        self.assertEqual(self.row("new-conn req/s vs nginx")[1:3], [">= 1.9", "2.00 PASS"])

    def test_missing_figure_is_a_dash_not_a_zero(self):
        haproxy = self.row("haproxy")
        self.assertEqual(haproxy[1], "80 [80–80]")
        self.assertEqual(haproxy[9:11], ["—", "—"])  # UDP delivered and its x plain
        self.assertNotIn(("haproxy", "udp_delivered_pps"), self.summary)

    def test_report_of_a_missing_run_fails_clearly(self):
        proc = subprocess.run([sys.executable, RACE, "--report", os.path.join(self.dir.name, "nope")],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("--report", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
