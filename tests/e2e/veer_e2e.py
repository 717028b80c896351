"""Shared helpers of the e2e layer: a testbed per test file, a veerd in its lb namespace, veerctl, the load
clients and the chi-square test. Python 3 stdlib only.

Every test file is run as
    python3 test_X.py --source-dir SRC [--veerd PATH --veerctl PATH] [unittest args]
(tests/e2e/CMakeLists.txt passes the built binaries). Each file uses its own testbed prefix, so every file
gets a fresh topology (FACTS.md: TIME_WAIT/PAWS), and each case inside a file uses its own client addresses.
"""
import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = argparse.Namespace(source_dir=None, veerd=None, veerctl=None)

VIP4 = "10.0.0.100"
VIP6 = "fd00::100"
VARIANTS = ("blue", "green", "canary")
BACKEND4 = {"blue": "10.1.1.2", "green": "10.1.2.2", "canary": "10.1.3.2"}
BACKEND6 = {"blue": "fd00:11::2", "green": "fd00:12::2", "canary": "fd00:13::2"}
P_MIN = 0.001


def main():
    """Parses our arguments, leaves the rest to unittest."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--source-dir", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("--veerd")
    ap.add_argument("--veerctl")
    ns, rest = ap.parse_known_args()
    ARGS.source_dir, ARGS.veerd, ARGS.veerctl = os.path.abspath(ns.source_dir), ns.veerd, ns.veerctl
    # ctest's timeout and Ctrl-C: unwind through tearDownClass (veerd stopped, testbed down).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("e2e tests need root (network namespaces, BPF)", file=sys.stderr)
        sys.exit(1)
    unittest.main(module="__main__", argv=[sys.argv[0]] + rest, verbosity=2)


def require_veer(test):
    for name in ("veerd", "veerctl"):
        path = getattr(ARGS, name)
        if not path or not os.access(path, os.X_OK):
            raise RuntimeError(f"--{name} PATH is required (got {path!r})")


# ---------------------------------------------------------------- statistics

def chi2_sf(x, df):
    """P(X >= x) for X ~ chi-square with integer df (closed forms: even df by the Poisson sum, odd df
    by erfc plus a finite series)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if x <= 0:
        return 1.0
    half = x / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= half / k
            total += term
        return math.exp(-half) * total
    total = math.erfc(math.sqrt(half))
    if df > 1:
        term = math.sqrt(2.0 * x / math.pi) * math.exp(-half)
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= x / (2 * k + 1)
    return total


def chi_square(observed, weights):
    """observed: {variant: count}; weights: {variant: percent}. Variants of weight 0 are left out (the
    caller asserts they got nothing). Returns (statistic, df, p)."""
    total = sum(observed.get(v, 0) for v, w in weights.items() if w > 0)
    wsum = sum(w for w in weights.values() if w > 0)
    stat, cells = 0.0, 0
    for v, w in weights.items():
        if w <= 0:
            continue
        expected = total * w / wsum
        stat += (observed.get(v, 0) - expected) ** 2 / expected
        cells += 1
    df = cells - 1
    return stat, df, (chi2_sf(stat, df) if df >= 1 else 1.0)


# ---------------------------------------------------------------- processes

def pid_alive(pid):
    """Exists and is not a zombie (processes reparented to init may be reaped late)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def run(cmd, timeout=60, check=True, **kw):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


class Testbed:
    def __init__(self, prefix):
        self.prefix = prefix
        self.script = os.path.join(ARGS.source_dir, "scripts", "testbed.sh")
        self.tools = os.path.join(ARGS.source_dir, "scripts", "testbed")
        self.run_dir = f"/run/{prefix}-testbed"
        self.socket = os.path.join(self.run_dir, "veer.sock")
        self.config = os.path.join(self.run_dir, "veer.yaml")

    def ns(self, name):
        return f"{self.prefix}-{name}"

    def up(self):
        run([self.script, "down", "--prefix", self.prefix], timeout=60)  # leftovers of a killed run
        run([self.script, "up", "--prefix", self.prefix], timeout=60)

    def down(self):
        run([self.script, "down", "--prefix", self.prefix], timeout=60, check=False)

    def exec(self, ns, cmd, **kw):
        return run(["ip", "netns", "exec", self.ns(ns)] + cmd, **kw)

    def render_config(self, template=None):
        template = template or os.path.join(ARGS.source_dir, "examples", "testbed.yaml")
        out = run([sys.executable, os.path.join(self.tools, "make_config.py"), "--prefix", self.prefix,
                   "--template", template])
        return out.stdout

    def write_config(self, text=None, path=None):
        path = path or self.config
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text if text is not None else self.render_config())
        os.rename(tmp, path)
        return path

    def client(self, mode, *args, timeout=180):
        """Runs client.py in the client namespace; returns its JSON answer."""
        out = self.exec("client", [sys.executable, os.path.join(self.tools, "client.py"), mode, *map(str, args)],
                        timeout=timeout)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def long_client(self, *args):
        return LongClient(self, args)

    def backend_stats(self, variant):
        code = ("import urllib.request,sys;"
                "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8080/stats',timeout=5).read().decode())")
        return json.loads(self.exec(variant, [sys.executable, "-c", code], timeout=20).stdout)

    def counts_at_backends(self, client_addr, kind="http", field="requests"):
        """{variant: count} of what each backend saw from one client address."""
        counts = {}
        for v in VARIANTS:
            per = self.backend_stats(v)[kind]["clients"].get(client_addr, {})
            counts[v] = per.get(field, 0)
        return counts


class LongClient:
    """client.py long in the background; ready() returns the ready event, finish() the done event.
    A thread drains stdout (the done line of 300 connections exceeds a pipe buffer) and stderr."""

    def __init__(self, testbed, args):
        import queue
        import threading
        self.stop_file = tempfile.mktemp(prefix="veer-e2e-stop-")
        cmd = ["ip", "netns", "exec", testbed.ns("client"), sys.executable,
               os.path.join(testbed.tools, "client.py"), "long", "--stop-file", self.stop_file, *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.stderr = []
        self.drains = [threading.Thread(target=self._drain, args=(self.proc.stdout, self.lines.put), daemon=True),
                       threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr.append), daemon=True)]
        for t in self.drains:
            t.start()

    @staticmethod
    def _drain(stream, sink):
        for line in stream:
            sink(line)
        sink(None)

    def _event(self, timeout):
        import queue
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError("long-lived client: no answer in time")
        if line is None:
            self.proc.wait()
            raise AssertionError(f"long-lived client exited ({self.proc.returncode}): {''.join(filter(None, self.stderr))}")
        return json.loads(line)

    def ready(self, timeout=30):
        event = self._event(timeout)
        assert event["event"] == "ready", event
        return event

    def finish(self, timeout=60):
        open(self.stop_file, "w").close()
        try:
            event = self._event(timeout)
            if event["event"] == "ready":
                event = self._event(timeout)
            assert event["event"] == "done", event
            self.proc.wait(timeout=10)
            return event
        finally:
            self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self.drains:
            t.join(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        try:
            os.unlink(self.stop_file)
        except FileNotFoundError:
            pass


class Veerd:
    """A veerd in the lb namespace: `ip netns exec P-lb veerd --config CFG --foreground`."""

    def __init__(self, testbed, config):
        self.testbed = testbed
        self.config = config
        self.proc = None
        self.log_path = os.path.join(tempfile.gettempdir(), f"veer-e2e-{testbed.prefix}-veerd.log")
        open(self.log_path, "w").close()

    def start(self, timeout=20):
        log = open(self.log_path, "a")
        log.write(f"--- start {time.strftime('%H:%M:%S')}\n")
        log.flush()
        # `ip netns exec` execs veerd, so proc.pid is veerd's pid.
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.testbed.ns("lb"), ARGS.veerd, "--config",
                                      self.config, "--foreground", "--log-level", "info"],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"veerd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if os.path.exists(self.testbed.socket):
                rc, answer = self.ctl_json("ping", check=False)
                if rc == 0 and answer.get("ok"):
                    return answer["result"]
            time.sleep(0.1)
        raise AssertionError(f"veerd did not answer ping within {timeout}s:\n{self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n=40):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def ctl(self, *args, check=True, timeout=30):
        proc = run([ARGS.veerctl, "--socket", self.testbed.socket, *args], timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"veerctl {' '.join(args)} -> {proc.returncode}: {proc.stdout}{proc.stderr}\n"
                                 f"veerd log:\n{self.log_tail()}")
        return proc

    def ctl_json(self, *args, check=True):
        proc = self.ctl("--json", *args, check=check)
        try:
            return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            if check:
                raise AssertionError(f"veerctl --json {' '.join(args)}: not JSON: {proc.stdout!r} {proc.stderr!r}")
            return proc.returncode, {}

    def status(self):
        _, answer = self.ctl_json("status")
        assert answer.get("ok"), answer
        return answer["result"]

    def service(self, name, status=None):
        status = status or self.status()
        for svc in status["services"]:
            if svc["name"] == name:
                return svc
        raise AssertionError(f"service {name} not in status: {[s['name'] for s in status['services']]}")

    def weights(self, name, status=None):
        """{variant: applied weight in percent} of a service."""
        return {v["name"]: float(v["weight_applied"]) for v in self.service(name, status)["variants"]}

    def counters(self, name, status=None):
        return {v["name"]: {k: v[k] for k in ("flows", "packets_in", "bytes_in")}
                for v in self.service(name, status)["variants"]}


class VeerCase(unittest.TestCase):
    """One testbed and one veerd for a test file (setUpClass), torn down whatever happens."""
    prefix = None
    with_veerd = True

    @classmethod
    def setUpClass(cls):
        if cls.with_veerd:
            require_veer(cls)
        cls.tb = Testbed(cls.prefix)
        cls.veerd = None
        try:
            cls.tb.up()
            if cls.with_veerd:
                cls.tb.write_config()
                cls.veerd = Veerd(cls.tb, cls.tb.config)
                cls.veerd.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.veerd is not None:
                cls.veerd.stop()
        finally:
            cls.tb.down()

    def assertSplit(self, observed, weights, what):
        """Zero-weight variants get nothing; the others match the weights (chi-square p > P_MIN)."""
        for v, w in weights.items():
            if w == 0:
                self.assertEqual(observed.get(v, 0), 0, f"{what}: variant {v} has weight 0 but got flows: {observed}")
        stat, df, p = chi_square(observed, weights)
        print(f"  {what}: observed {observed} weights {weights}: chi2 {stat:.2f} df {df} p {p:.4f}", flush=True)
        self.assertGreater(p, P_MIN, f"{what}: split {observed} does not match weights {weights} (chi2 {stat:.2f}, "
                                     f"df {df}, p {p:.2e})")
        return p


def unix_exchange(path, payload, timeout=5.0, read=True):
    """Sends raw bytes on the control socket; returns (answer dict or None, closed flag)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may close on a too-large line before we finish writing it
        if not read:
            return None, False
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
        if not buf:
            return None, True
        return json.loads(buf.split(b"\n", 1)[0]), False
    finally:
        s.close()
