#!/usr/bin/env python3
"""(e) bad input changes nothing and never kills the daemon:
- configs with each kind of error are refused by `veerd --check-config` and by `veerctl reload`, with the
  offending line in the message, and the running state is identical before and after;
- on the control socket: garbage, truncated JSON, a non-object, an unknown command, binary junk and a 1 MiB
  line each get an error answer or a closed connection; a stalled half-line client does not block others;
  after each, a fresh client's ping works;
- refused veerctl requests exit 1, usage errors exit 2, and change nothing."""
import os
import socket
import subprocess
import tempfile
import time

import veer_e2e as e2e


def mutate(text, old, new, occurrence=1, anchor=None):
    """Replaces the occurrence-th `old` with `new`; returns (text, 1-based line of the change, or of the
    first line containing `anchor` at or before it when the error belongs to an enclosing node)."""
    pos = -1
    for _ in range(occurrence):
        pos = text.index(old, pos + 1)
    line = text.count("\n", 0, pos) + 1
    if anchor is not None:
        lines = text.splitlines()
        line = max(i + 1 for i in range(line) if anchor in lines[i])
    return text[:pos] + new + text[pos + len(old):], line


# (what, old, new, occurrence, anchor)
BAD_CONFIGS = [
    ("yaml syntax", '{ backends: ["10.1.3.2:9000"] }', '{ backends: ["10.1.3.2:9000" }', 1, None),
    ("weights do not sum to 100", "weights: { blue: 90, green: 5, canary: 5 }",
     "weights: { blue: 90, green: 5, canary: 6 }", 1, None),
    ("weight with three decimals", "weights: { blue: 50, green: 30, canary: 20 }",
     "weights: { blue: 49.995, green: 30.005, canary: 20 }", 1, None),
    ("weight of an unknown variant", "weights: { blue: 70, green: 20, canary: 10 }",
     "weights: { blue: 70, green: 20, purple: 10 }", 1, None),
    ("bad vip", "vip: 10.0.0.100", "vip: 10.0.0.300", 2, None),
    ("port out of range", "port: 7000", "port: 70000", 1, None),
    ("unknown protocol", "protocol: udp", "protocol: sctp", 1, None),
    ("unknown affinity", "affinity: connection", "affinity: sticky", 4, None),
    ("stable is not a variant", "stable: blue", "stable: purple", 1, None),
    ("bad backend", '"10.1.2.2:8080"', '"10.1.2.2:99999"', 1, None),
    ("backend of the wrong family", '"[fd00:13::2]:8080"', '"10.1.3.2:8080"', 1, None),
    ("unknown key", "affinity: connection", "afinity: connection", 2, None),
    ("bad attach mode", "attach: auto", "attach: sideways", 1, None),
    ("interface name too long", "interfaces: [lbc, lbblue, lbgreen, lbcanary]",
     "interfaces: [lbc, lbblue, lbgreen, lbcanary0123456789]", 1, None),
    ("relative socket path", "socket: /run/", "socket: run/", 1, None),
    ("duplicate service name", "name: ranker-udp", "name: ranker", 1, None),
    ("same vip, port and protocol twice", "port: 7000", "port: 80", 1, "- name:"),
]


def without_volatile(status):
    """Status minus the global pass/drop reason counters (stray IPv6 control packets may bump them) and each
    variant's kernel telemetry window (a measurement: its length in seconds moves with every telemetry tick,
    which a slow machine, e.g. a QEMU guest, reaches within one test)."""
    status = dict(status)
    status.pop("reasons", None)
    status["services"] = [dict(svc, variants=[{k: v for k, v in var.items() if k != "window"}
                                              for var in svc["variants"]])
                          for svc in status.get("services", [])]
    return status


class TestBadInput(e2e.VeerCase):
    prefix = "ve2e-bad"

    def setUp(self):
        with open(self.tb.config) as f:
            self.good = f.read()

    def tearDown(self):
        self.tb.write_config(self.good)

    def bad_configs(self):
        for what, old, new, occurrence, anchor in BAD_CONFIGS:
            text, line = mutate(self.good, old, new, occurrence, anchor)
            yield what, text, line

    def test_check_config(self):
        good = e2e.run([e2e.ARGS.veerd, "--check-config", self.tb.config], check=False)
        self.assertEqual(good.returncode, 0, good.stdout + good.stderr)
        self.assertIn(f"{self.tb.config}: ok", good.stdout + good.stderr)
        with tempfile.TemporaryDirectory() as d:
            for i, (what, text, line) in enumerate(self.bad_configs()):
                with self.subTest(what):
                    path = os.path.join(d, f"bad{i}.yaml")
                    with open(path, "w") as f:
                        f.write(text)
                    r = e2e.run([e2e.ARGS.veerd, "--check-config", path], check=False)
                    out = r.stdout + r.stderr
                    self.assertEqual(r.returncode, 1, f"{what}: {out}")
                    self.assertIn(f"{path}:{line}:", out, f"{what}: expected line {line}")
                    self.assertNotIn(": ok", out)

    def test_reload_refuses_bad_config_and_changes_nothing(self):
        before = without_volatile(self.veerd.status())
        for what, text, line in self.bad_configs():
            with self.subTest(what):
                self.tb.write_config(text)
                rc, answer = self.veerd.ctl_json("reload", check=False)
                self.assertEqual(rc, 1, f"{what}: {answer}")
                self.assertFalse(answer["ok"])
                self.assertEqual(answer["error"]["code"], "config_invalid", answer)
                self.assertIn(f"{self.tb.config}:{line}:", answer["error"]["message"], f"{what}: line {line}")
                self.assertEqual(without_volatile(self.veerd.status()), before, f"{what}: state changed")
        # the human form names the line too
        self.tb.write_config(mutate(self.good, "port: 7000", "port: 70000")[0])
        plain = self.veerd.ctl("reload", check=False)
        self.assertEqual(plain.returncode, 1)
        self.assertIn(f"{self.tb.config}:", plain.stdout + plain.stderr)
        self.tb.write_config(self.good)
        self.veerd.ctl("reload")
        self.assertEqual(without_volatile(self.veerd.status()), before)

    def assertPingWorks(self, after):
        answer, closed = e2e.unix_exchange(self.tb.socket, b'{"cmd":"ping"}\n')
        self.assertFalse(closed, f"ping after {after}: connection closed")
        self.assertTrue(answer["ok"], f"ping after {after}: {answer}")
        self.assertTrue(self.veerd.alive(), f"veerd died after {after}:\n{self.veerd.log_tail()}")

    def test_socket_garbage(self):
        before = without_volatile(self.veerd.status())
        cases = [
            ("garbage", b"this is not json\n", {"bad_json"}),
            ("truncated json", b'{"cmd": "pi\n', {"bad_json"}),
            ("json that is not an object", b"[1, 2, 3]\n", {"bad_request"}),
            ("missing cmd", b'{"service": "ranker"}\n', {"bad_request"}),
            ("cmd not a string", b'{"cmd": 42}\n', {"bad_request"}),
            ("unknown command", b'{"cmd": "frobnicate"}\n', {"unknown_command"}),
            ("binary junk", bytes(range(256)) + b"\n", {"bad_json"}),
            ("weights that do not sum to 100", b'{"cmd":"weights","service":"ranker","weights":{"blue":"50"}}\n',
             {"bad_request", "refused"}),
            ("weights of an unknown service", b'{"cmd":"weights","service":"nope","weights":{"blue":"100"}}\n',
             {"not_found"}),
            ("switch to an unknown variant", b'{"cmd":"switch","service":"ranker","variant":"purple"}\n',
             {"not_found"}),
            ("1 MiB line", b"x" * (1 << 20) + b"\n", {"too_large"}),
            ("1 MiB of json", b'{"cmd":"ping","pad":"' + b"y" * (1 << 20) + b'"}\n', {"too_large"}),
        ]
        for what, payload, codes in cases:
            with self.subTest(what):
                answer, closed = e2e.unix_exchange(self.tb.socket, payload)
                if not closed:
                    self.assertFalse(answer["ok"], f"{what}: {answer}")
                    self.assertIn(answer["error"]["code"], codes, f"{what}: {answer}")
                    self.assertTrue(answer["error"].get("message"), answer)
                else:
                    # closing without an answer is acceptable only for the oversized lines
                    self.assertIn("too_large", codes, f"{what}: closed without an error answer")
                self.assertPingWorks(what)
        self.assertEqual(without_volatile(self.veerd.status()), before)

    def test_stalled_client_does_not_block_others(self):
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            stalled.connect(self.tb.socket)
            stalled.sendall(b'{"cmd": "status", "serv')  # half a line, never finished
            t0 = time.monotonic()
            self.assertPingWorks("a stalled half-line client")
            self.assertLess(time.monotonic() - t0, 2.0)
            # many clients that connect and vanish
            for _ in range(50):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.tb.socket)
                s.close()
            self.assertPingWorks("50 clients that hung up")
        finally:
            stalled.close()

    def test_veerctl_exit_codes(self):
        before = without_volatile(self.veerd.status())
        refused = [
            ("weights", "ranker", "blue=50"),
            ("weights", "nope", "blue=100"),
            ("switch", "ranker", "purple"),
            ("drain", "ranker", "10.9.9.9:8080"),
            ("which", "nope", "10.0.1.10"),
        ]
        for args in refused:
            with self.subTest(" ".join(args)):
                r = self.veerd.ctl(*args, check=False)
                self.assertEqual(r.returncode, 1, f"veerctl {' '.join(args)}: {r.stdout}{r.stderr}")
        for args in [(), ("weights",), ("switch", "ranker"), ("no-such-command",),
                     ("weights", "ranker", "blue=90", "green=5", "canary=5.001")]:
            with self.subTest("usage " + " ".join(args)):
                r = self.veerd.ctl(*args, check=False)
                self.assertEqual(r.returncode, 2, f"veerctl {' '.join(args)}: {r.stdout}{r.stderr}")
        unreachable = subprocess.run([e2e.ARGS.veerctl, "--socket", "/run/nonexistent-veer.sock", "ping"],
                                     capture_output=True, text=True, timeout=10)
        self.assertEqual(unreachable.returncode, 1)
        self.assertEqual(without_volatile(self.veerd.status()), before)


if __name__ == "__main__":
    e2e.main()
