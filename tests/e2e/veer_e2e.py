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
import re
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


def _env_factor(name):
    value = os.environ.get(name, "1")
    try:
        factor = float(value)
    except ValueError:
        factor = -1.0
    if not 0 < factor <= 100:
        raise SystemExit(f"{name}={value!r}: want a number in (0, 100]")
    return factor


# Knobs for slow machines (scripts/vm-test.sh passes VEER_* into its QEMU guests, ~10x slower under TCG):
# VEER_E2E_SCALE multiplies every timeout and wait (default 1); VEER_E2E_FLOWS_FACTOR multiplies the
# flow counts of the traffic tests (default 1), never below each test's floor (see flows()).
SCALE = _env_factor("VEER_E2E_SCALE")
FLOWS_FACTOR = _env_factor("VEER_E2E_FLOWS_FACTOR")


def scaled(seconds):
    """A timeout or wait of SECONDS on this machine (times VEER_E2E_SCALE)."""
    return seconds * SCALE


def flows(count, floor):
    """COUNT flows times VEER_E2E_FLOWS_FACTOR, at least FLOOR (the least that keeps the test meaningful,
    e.g. chi-square expected counts >= 5 per variant) and at most COUNT."""
    return min(count, max(floor, int(round(count * FLOWS_FACTOR))))


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
    """Runs CMD; TIMEOUT is in host seconds (scaled by VEER_E2E_SCALE here, callers pass plain values)."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=scaled(timeout), **kw)
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

    def up(self, offloads="xdp-safe"):
        run([self.script, "down", "--prefix", self.prefix], timeout=60)  # leftovers of a killed run
        run([self.script, "up", "--prefix", self.prefix, "--offloads", offloads], timeout=60)

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
        event = self._event(scaled(timeout))
        assert event["event"] == "ready", event
        return event

    def finish(self, timeout=60):
        open(self.stop_file, "w").close()
        timeout = scaled(timeout)
        try:
            event = self._event(timeout)
            if event["event"] == "ready":
                event = self._event(timeout)
            assert event["event"] == "done", event
            self.proc.wait(timeout=scaled(10))
            return event
        finally:
            self.kill()

    def kill(self):
        _stop_client(self.proc, self.drains, self.stop_file)


def _stop_client(proc, readers, stop_file):
    """Ends a background client process: kill it if still running, join its output readers, close its
    pipes, remove its stop file."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for t in readers:
        t.join(timeout=5)
    proc.stdout.close()
    proc.stderr.close()
    try:
        os.unlink(stop_file)
    except FileNotFoundError:
        pass


class Veerd:
    """A veerd in the lb namespace: `ip netns exec P-lb veerd --config CFG --foreground`."""

    def __init__(self, testbed, config):
        self.testbed = testbed
        self.config = config
        self.proc = None
        # A fleet node (veer_fleet.FleetNode) names its own log: several veerds share one prefix there.
        name = getattr(testbed, "log_name", testbed.prefix)
        self.log_path = os.path.join(tempfile.gettempdir(), f"veer-e2e-{name}-veerd.log")
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
        timeout = scaled(timeout)
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


def set_attach(text, mode):
    """The config text with its one `attach:` line set to MODE."""
    text, n = re.subn(r"(?m)^(\s*attach:\s*)\S+\s*$", rf"\g<1>{mode}", text)
    if n != 1:
        raise ValueError(f"the config has {n} attach lines, not one")
    return text


class VeerCase(unittest.TestCase):
    """One testbed and one veerd for a test file (setUpClass), torn down whatever happens."""
    prefix = None
    with_veerd = True
    attach = None  # None: the config's own (examples/testbed.yaml: auto, which is tc on the testbed's veths)
    offloads = "xdp-safe"  # the testbed's veth offloads (scripts/testbed.sh --offloads)

    @classmethod
    def config_text(cls, tb):
        """The veerd config of this file (default: examples/testbed.yaml for the file's prefix)."""
        text = tb.render_config()
        return set_attach(text, cls.attach) if cls.attach else text

    @classmethod
    def setUpClass(cls):
        if cls.with_veerd:
            require_veer(cls)
        cls.tb = Testbed(cls.prefix)
        cls.veerd = None

        def bring_up():
            cls.tb.up(cls.offloads)
            if cls.with_veerd:
                cls.tb.write_config(cls.config_text(cls.tb))
                cls.veerd = Veerd(cls.tb, cls.tb.config)
                cls.veerd.start()
        cls.set_up_or_tear_down(bring_up)

    @classmethod
    def set_up_or_tear_down(cls, step):
        """Runs STEP() of setUpClass; if it fails, tears down what the class had brought up (tearDownClass) and
        re-raises: unittest does not call tearDownClass after a failed setUpClass."""
        try:
            step()
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

    def assertSampledSplit(self, sample, sources, weights, what):
        """assertSplit on sample(sources[0]); if that sample's p is not above P_MIN, once more on a fresh
        sample from sources[1] (new client address, new connections), which must pass. A split that is really
        off fails both; a chance p <= 0.001 (one sample in a thousand, and CI runs ~18 such checks) does not
        fail the suite. Returns the counts that passed."""
        observed = sample(sources[0])
        stat, df, p = chi_square(observed, weights)
        if p > P_MIN or len(sources) < 2:
            self.assertSplit(observed, weights, what)
            return observed
        print(f"  {what}: observed {observed}: chi2 {stat:.2f} df {df} p {p:.2e} <= {P_MIN}: "
              f"a fresh sample from {sources[1]} decides", flush=True)
        observed = sample(sources[1])
        self.assertSplit(observed, weights, what + " (fresh sample)")
        return observed

    def assertLongLivedKept(self, done, first, min_sent, what="long-lived"):
        """A finished long client (DONE): no error, no reset, every connection answered only by the variant
        that answered it first (FIRST: index -> variant) and at least MIN_SENT messages each (it really was
        talking throughout)."""
        s = done["summary"]
        print(f"  {what}: {s}", flush=True)
        self.assertEqual(s["errors"], 0, [c for c in done["connections"] if c["error"]])
        self.assertEqual(s["resets"], 0)
        self.assertEqual(s["changed_variant"], 0)
        for c in done["connections"]:
            self.assertEqual(c["variants"], {first[c["index"]]: c["sent"]}, c)
            self.assertGreaterEqual(c["sent"], min_sent, c)

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


# ---------------------------------------------------------------- rollouts (issue 4)
#
# Configs, status polling, the steady-rate client in the background, backend knobs and Prometheus text, for
# the rollout, telemetry and demo tests (test_rollout_*.py, test_telemetry.py).

import queue as _queue
import re as _re
import threading as _threading

TESTBED_NODE_YAML = """node:
  interfaces: [lbc, lbblue, lbgreen, lbcanary]
  attach: auto
  hash_seed: 0x5eed
  flow_table_size: 65536
  socket: /run/veer-testbed/veer.sock
  pin_path: /run/veer-testbed/bpffs
  state_dir: /run/veer-testbed/state
  metrics_listen: 127.0.0.1:9469
"""


def for_prefix(text, prefix):
    """Config text written for the testbed prefix "veer" -> the same for PREFIX (what make_config.py does)."""
    return _re.sub(r"(?m)^(\s*(?:socket|pin_path|state_dir):\s*)/run/veer-testbed/", rf"\g<1>/run/{prefix}-testbed/",
                   text)


def ranker_config(rollout, weights="{ blue: 100 }", affinity="connection", variants=("blue", "canary"),
                  metrics_url=True):
    """A testbed config (prefix "veer") with one service, ranker on 10.0.0.100:80, stable blue, the given
    variants (each with its testbed backend and, with metrics_url, http://BACKEND:8080/metrics) and the
    rollout section ROLLOUT (YAML lines indented by 6 spaces)."""
    lines = [TESTBED_NODE_YAML, "services:\n", "  - name: ranker\n", "    vip: 10.0.0.100\n", "    port: 80\n",
             "    protocol: tcp\n", f"    affinity: {affinity}\n", "    stable: blue\n", "    variants:\n"]
    for v in variants:
        url = f', metrics_url: "http://{BACKEND4[v]}:8080/metrics"' if metrics_url else ""
        lines.append(f'      {v}: {{ backends: ["{BACKEND4[v]}:8080"]{url} }}\n')
    lines += [f"    weights: {weights}\n", "    rollout:\n", rollout]
    return "".join(lines)


def example_config(name, prefix):
    """examples/NAME for testbed PREFIX."""
    with open(os.path.join(ARGS.source_dir, "examples", name)) as f:
        return for_prefix(f.read(), prefix)


def prom_samples(text):
    """Prometheus text -> [(name, {label: value}, value)] (comments and blank lines skipped)."""
    sample = _re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$")
    label = _re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = sample.match(line)
        if not m:
            raise ValueError(f"not a Prometheus sample: {line!r}")
        labels = dict(label.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def prom_value(samples, name, **labels):
    """Sum of the samples NAME whose labels include LABELS."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == str(x) for k, x in labels.items()))


def prom_histogram(samples, base, **labels):
    """Cumulative buckets [(le, count)] (ascending, +Inf last) of histogram BASE with LABELS."""
    buckets = {}
    for n, ls, v in samples:
        if n == base + "_bucket" and all(ls.get(k) == str(x) for k, x in labels.items()):
            le = float(ls["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    return sorted(buckets.items())


def histogram_delta(after, before):
    b = dict(before)
    return [(le, n - b.get(le, 0.0)) for le, n in after]


def histogram_quantile(buckets, q):
    """Quantile Q of cumulative BUCKETS, interpolated linearly inside the bucket (as Prometheus does); None
    when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return lower_le
            if n == lower_n:
                return le
            return lower_le + (le - lower_le) * (rank - lower_n) / (n - lower_n)
        lower_le, lower_n = le, n
    return lower_le


def _testbed_knobs(self, variant, *changes):
    """control.py in the backend's namespace (KEY=VALUE...); asserts the backend took the change."""
    proc = run([sys.executable, os.path.join(self.tools, "control.py"), "--prefix", self.prefix, "--variant",
                variant, *changes], check=False, timeout=30)
    answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    if proc.returncode != 0 or not answer.get("ok"):
        raise AssertionError(f"knobs {variant} {changes}: {proc.stdout} {proc.stderr}")
    return answer


def _testbed_fetch(self, ns, url, timeout=10):
    """GET URL from inside namespace NS (e.g. "lb" for veer's own /metrics); returns the body text."""
    code = ("import urllib.request,sys;"
            f"sys.stdout.write(urllib.request.urlopen({url!r},timeout=5).read().decode())")
    return self.exec(ns, [sys.executable, "-c", code], timeout=timeout).stdout


class KnobChange:
    """A knob change made ready in the backend's namespace (the process is started and waiting), sent by go():
    so that the moment of the change can be chosen exactly, e.g. right after a gate evaluation."""

    CODE = ("import json,sys,time,urllib.request;"
            "sys.stdout.write('ready\\n');sys.stdout.flush();sys.stdin.readline();"
            "req=urllib.request.Request('http://127.0.0.1:8080/control',data=sys.argv[1].encode(),method='POST',"
            "headers={'Content-Type':'application/json'});"
            "t=time.time();a=json.loads(urllib.request.urlopen(req,timeout=5).read().decode());"
            "print(json.dumps({'time':t,'answer':a}))")

    def __init__(self, testbed, variant, changes):
        self.variant, self.changes = variant, changes
        self.proc = subprocess.Popen(["ip", "netns", "exec", testbed.ns(variant), sys.executable, "-c", self.CODE,
                                      json.dumps(changes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise AssertionError(f"knob helper in {variant} did not start")

    def go(self):
        """Sends the change; returns the Unix time taken just before the request was sent (the knobs apply while
        it is handled), with the backend's answer."""
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            out = json.loads(self.proc.stdout.readline())
            self.proc.wait(timeout=10)
        finally:
            self.close()
        if not out["answer"].get("ok"):
            raise AssertionError(f"knobs {self.variant} {self.changes}: {out['answer']}")
        return out["time"], out["answer"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def _testbed_knobs_timed(self, variant, changes):
    """Changes backend knobs (a dict) from a process already running in the backend's namespace, so the time of
    the change is exact: returns the Unix time taken just before the request was sent (the knobs apply while
    it is handled), with the backend's answer."""
    return KnobChange(self, variant, changes).go()


def _testbed_rate_client(self, *args):
    return RateClient(self, args)


Testbed.knobs = _testbed_knobs
Testbed.knobs_timed = _testbed_knobs_timed
Testbed.knob_change = lambda self, variant, changes: KnobChange(self, variant, changes)
Testbed.fetch = _testbed_fetch
Testbed.rate_client = _testbed_rate_client


class RateClient:
    """client.py rate in the background (a steady request rate through the VIP). Progress lines (if
    --progress) are queued; stop() asks it to finish (stop file) and returns its done line."""

    def __init__(self, testbed, args):
        self.stop_file = tempfile.mktemp(prefix="veer-e2e-rate-stop-")
        cmd = ["ip", "netns", "exec", testbed.ns("client"), sys.executable, os.path.join(testbed.tools, "client.py"),
               "rate", "--stop-file", self.stop_file, *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events = _queue.Queue()
        self.progress = []
        self.stderr = []
        self.done = None
        self.threads = [_threading.Thread(target=self._drain_out, daemon=True),
                        _threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True)]
        for t in self.threads:
            t.start()

    def _drain_out(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress":
                self.progress.append(event)
            self.events.put(event)
        self.events.put(None)

    def next_progress(self, timeout=10):
        """The next progress line (needs --progress)."""
        while True:
            try:
                event = self.events.get(timeout=timeout)
            except _queue.Empty:
                raise AssertionError("rate client: no progress line in time")
            if event is None:
                raise AssertionError(f"rate client exited ({self.proc.poll()}): {''.join(self.stderr)}")
            if event.get("event") == "progress":
                return event
            if event.get("event") == "done":
                self.done = event

    def window_after_now(self, timeout=10):
        """The window of the first progress line that began after this call (needs --progress)."""
        while True:
            try:
                event = self.events.get_nowait()
            except _queue.Empty:
                break
            if event is None:
                raise AssertionError(f"rate client exited ({self.proc.poll()}): {''.join(self.stderr)}")
            if event.get("event") == "done":
                self.done = event
        self.next_progress(timeout)  # the window in progress now
        return self.next_progress(timeout)["window"]

    def stop(self, timeout=30):
        open(self.stop_file, "w").close()
        deadline = time.monotonic() + timeout
        try:
            while self.done is None:
                try:
                    event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
                except _queue.Empty:
                    raise AssertionError("rate client: no done line in time")
                if event is None:
                    if self.done is None:
                        raise AssertionError(f"rate client exited ({self.proc.poll()}) without a done line: "
                                             f"{''.join(self.stderr)}")
                    break
                if event.get("event") == "done":
                    self.done = event
            return self.done
        finally:
            self.kill()

    def kill(self):
        _stop_client(self.proc, self.threads, self.stop_file)


def opened_between(done, since, until=None):
    """{variant: requests} of a rate client's DONE line whose connection opened at or after SINCE (Unix time)
    and, with UNTIL, before it: whole 100 ms buckets of the client's "opened" histogram, so a connection in
    the bucket that holds SINCE or UNTIL is left out rather than guessed."""
    out = {}
    for variant, buckets in done.get("opened", {}).items():
        n = sum(count for start, count in buckets
                if start >= since and (until is None or start + 0.1 <= until))
        if n:
            out[variant] = n
    return out


def assert_connections_opened_reach(case, done, variant, since, until=None, what="new connections"):
    """Every connection the rate client opened in [SINCE, UNTIL) that a response named went to VARIANT, and
    there were some. Connections opened before SINCE may still reach the old side, rightly: a SYN sent before
    a flip and retransmitted after it keeps its choice (on a loaded machine the retransmission is a second
    later, and the answer later still), so the judge is when a connection began, not when it finished."""
    seen = opened_between(done, since, until)
    named = {v: n for v, n in seen.items() if v != "unattributed"}
    span = f"[{since:.1f}, {until:.1f})" if until is not None else f"from {since:.1f}"
    case.assertEqual(set(named), {variant}, f"{what}: connections opened {span} reached {seen}")
    return seen


def _veerd_request(self, obj, timeout=5.0):
    """One request on the control socket (no veerctl process: for polling every 100 ms)."""
    answer, closed = unix_exchange(self.testbed.socket, (json.dumps(obj) + "\n").encode(), timeout=timeout)
    if answer is None:
        raise AssertionError(f"no answer to {obj} (closed {closed})\nveerd log:\n{self.log_tail()}")
    return answer


def _veerd_service_status(self, name):
    answer = self.request({"cmd": "status", "service": name})
    assert answer.get("ok"), answer
    return self.service(name, answer["result"])


def _veerd_events(self, service=None, since=0):
    """Every event from SINCE on (the events request, paged by its "next")."""
    out = []
    while True:
        request = {"cmd": "events", "since": since}
        if service:
            request["service"] = service
        answer = self.request(request)
        assert answer.get("ok"), answer
        page = answer["result"]["events"]
        out += [e for e in page if e["seq"] >= since]
        if not page or answer["result"]["next"] <= since:
            return out
        since = answer["result"]["next"]


def _veerd_rollout(self, service, action, *extra, check=True):
    """veerctl rollout ACTION SERVICE [extra]; returns the daemon's answer."""
    rc, answer = self.ctl_json("rollout", action, service, *extra, check=check)
    if check:
        assert answer.get("ok"), answer
    return answer


Veerd.request = _veerd_request
Veerd.service_status = _veerd_service_status
Veerd.events = _veerd_events
Veerd.rollout = _veerd_rollout


def applied(svc):
    """{variant: applied weight} of a service status object."""
    return {v["name"]: float(v["weight_applied"]) for v in svc["variants"]}


def desired(svc):
    return {v["name"]: float(v["weight_desired"]) for v in svc["variants"]}


class StatusRecorder:
    """Polls one service's status every PERIOD seconds in a thread; keeps (monotonic time, status) pairs."""

    def __init__(self, veerd, service, period=0.1):
        self.veerd, self.service, self.period = veerd, service, period
        self.samples = []
        self.errors = []
        self._stop = _threading.Event()
        self.thread = _threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.veerd.service_status(self.service)))
            except Exception as exc:  # a restart in the middle: recorded, polling goes on
                self.errors.append((time.monotonic(), repr(exc)))
            self._stop.wait(self.period)

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=10)
        return self.samples


def wait_for(what, predicate, timeout, period=0.1):
    """Calls PREDICATE() every PERIOD until it returns something truthy; returns (value, seconds waited)."""
    start = time.monotonic()
    last = None
    while True:
        try:
            last = predicate()
        except (AssertionError, KeyError, TypeError, IndexError) as exc:  # e.g. no rollout object yet
            last = exc
        if last and not isinstance(last, Exception):
            return last, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")
        time.sleep(period)


def format_rollout(svc):
    """One line: phase, step and weights desired/applied, gates' last results (for test logs)."""
    r = svc.get("rollout") or {}
    gates = ", ".join(f"{g['stage'] + '.' if g.get('stage') else ''}{g['name']}={g.get('last_result')}({g.get('value')})"
                      for g in r.get("gates", []))
    weights = " ".join(f"{v['name']} {v['weight_desired']}/{v['weight_applied']}" for v in svc["variants"])
    return f"phase {r.get('phase')} step {r.get('step')}/{r.get('steps')}; weights {weights}; gates {gates}"


class RolloutCase(VeerCase):
    """A test file's testbed and veerd, with the rollout helpers. Subclasses set prefix and config_text."""

    def start_traffic(self, src_range, rate=250, duration=120, *extra):
        """A steady request rate to the VIP, new connection per request, from SRC_RANGE; stopped by
        self.traffic.stop() (the test does it, or cleanup)."""
        client = self.tb.rate_client("--dst", VIP4, "--port", 80, "--src-range", src_range, "--rate", rate,
                                     "--duration", duration, "--timeout", 5, *extra)
        self.addCleanup(client.kill)
        return client

    def status(self, service="ranker"):
        return self.veerd.service_status(service)

    def wait_status(self, what, predicate, timeout, service="ranker", period=0.1):
        """Polls the service status until PREDICATE(svc) holds; returns (svc, seconds)."""
        seen = {}

        def check():
            svc = self.status(service)
            seen["svc"] = svc
            return svc if predicate(svc) else None
        try:
            return wait_for(what, check, timeout, period)
        except AssertionError as exc:
            # What the rollout did instead (an abort, a hold), so that a failure explains itself.
            svc = seen.get("svc")
            if svc and svc.get("rollout"):
                self.print_events(service=service)
                raise AssertionError(f"{exc}; status then: {format_rollout(svc)}") from None
            raise

    def right_after_an_evaluation(self, change, service="ranker", timeout=10):
        """Sends CHANGE (a KnobChange) as soon as the service's status shows a new gate evaluation (a gate's "at"
        moved): the change then has a whole interval before the next evaluation, as a reaction budget of
        interval x (failure_limit + 1) + 1 s assumes, on a slow machine as on a fast one."""
        def evaluated_at():
            return [g.get("at") for g in self.status(service)["rollout"]["gates"]]
        first = evaluated_at()
        deadline = time.monotonic() + scaled(timeout)
        while evaluated_at() == first:
            if time.monotonic() > deadline:
                change.close()
                raise AssertionError(f"no gate evaluation within {scaled(timeout)} s")
            time.sleep(0.02)
        return change.go()

    def print_events(self, service="ranker", since=0):
        events = self.veerd.events(service, since)
        for e in events:
            print(f"    event {e['seq']} {e['time']} {e['kind']}: {e['message']} {e.get('values') or ''}", flush=True)
        return events


# ---------------------------------------------------------------- busy clients (issue 10)
#
# Real clients reuse source ports: the ports client (client.py ports) binds fixed ports and uses each for a
# new connection every round; wrk as it is, with an ephemeral port range of the client namespace narrowed so
# that it reuses ports within seconds at testbed rates, as a busy gateway does at production rates.

def _testbed_ports(self, *args, timeout=180):
    """client.py ports (foreground): its JSON answer."""
    return self.client("ports", *args, timeout=timeout)


class PortsClient:
    """client.py ports --rounds 0 in the background until stop() (stop file); stop() returns its answer."""

    def __init__(self, testbed, args):
        self.stop_file = tempfile.mktemp(prefix="veer-e2e-ports-stop-")
        cmd = ["ip", "netns", "exec", testbed.ns("client"), sys.executable, os.path.join(testbed.tools, "client.py"),
               "ports", "--rounds", "0", "--stop-file", self.stop_file, *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        self.threads = [_threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True),
                        _threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)]
        for t in self.threads:
            t.start()

    def stop(self, timeout=60):
        open(self.stop_file, "w").close()
        try:
            self.proc.wait(timeout=scaled(timeout))
            for t in self.threads:
                t.join(timeout=10)
            if self.proc.returncode != 0 or not self.out:
                raise AssertionError(f"ports client exited {self.proc.returncode}: {''.join(self.err)}")
            return json.loads(self.out[-1])
        finally:
            self.kill()

    def kill(self):
        _stop_client(self.proc, self.threads, self.stop_file)


def _testbed_ports_background(self, *args):
    return PortsClient(self, args)


def _testbed_sysctl(self, ns, key, value):
    """Sets sysctl KEY to VALUE in namespace NS; returns the previous value."""
    old = self.exec(ns, ["sysctl", "-n", key]).stdout.strip()
    self.exec(ns, ["sysctl", "-q", "-w", f"{key}={value}"])
    return old


WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(m?s)", re.M)
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def _testbed_wrk(self, seconds, connections=8, threads=1, path="/", close=True, timeout_s=2):
    """wrk from the client namespace to http://VIP4PATH (Debian's wrk as it is, one client address, source
    ports from the kernel); with close, every request a new connection (`-H 'Connection: close'`). Returns
    {requests, seconds, errors: {connect, read, write, timeout}, non_2xx, output}."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout", f"{timeout_s}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = self.exec("client", cmd + [f"http://{VIP4}{path}"], timeout=seconds + 60).stdout
    m = WRK_REQUESTS.search(out)
    if not m:
        raise AssertionError(f"wrk printed no request count:\n{out}")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    if e := WRK_SOCKET_ERRORS.search(out):
        errors = dict(zip(errors, map(int, e.groups())))
    n = WRK_NON_2XX.search(out)
    return {"requests": int(m.group(1)), "seconds": float(m.group(2)) / (1000 if m.group(3) == "ms" else 1),
            "errors": errors, "non_2xx": int(n.group(1)) if n else 0, "output": out}


def _testbed_busy_client(self, case, seconds_of_ports=2.0):
    """Makes the client namespace a busy client for wrk: tcp_tw_reuse=1 (as on gateway nodes) and an ephemeral
    port range of SECONDS_OF_PORTS x wrk's own rate here (measured by a 1 s wrk run, at least 500 ports), so that
    wrk reuses each port every couple of seconds at this machine's pace, as a gateway does at production rates
    with the default 28,000 ports. wrk closes first (TIME_WAIT on the client) and gives up a connection whose
    connect fails, so the range must hold what a second of TIME_WAIT keeps (tcp_tw_reuse's 1 s). The old values
    come back in CASE's cleanup. Returns the number of ports."""
    old_reuse = self.sysctl("client", "net.ipv4.tcp_tw_reuse", "1")
    case.addCleanup(self.sysctl, "client", "net.ipv4.tcp_tw_reuse", old_reuse)
    probe = self.wrk(1)
    ports = max(500, int(seconds_of_ports * probe["requests"] / probe["seconds"]))
    low = 40000
    old_range = self.sysctl("client", "net.ipv4.ip_local_port_range", f"{low} {low + ports - 1}")
    case.addCleanup(self.sysctl, "client", "net.ipv4.ip_local_port_range", old_range)
    print(f"  busy client: wrk made {probe['requests']} connections in {probe['seconds']} s; ephemeral ports "
          f"{low}-{low + ports - 1} ({ports}), tcp_tw_reuse=1", flush=True)
    return ports


def _testbed_http_connections(self, client_addr):
    """{variant: HTTP connections its backend accepted from CLIENT_ADDR}."""
    return self.counts_at_backends(client_addr, "http", "connections")


Testbed.ports = _testbed_ports
Testbed.ports_background = _testbed_ports_background
Testbed.sysctl = _testbed_sysctl
Testbed.wrk = _testbed_wrk
Testbed.http_connections = _testbed_http_connections
Testbed.busy_client = _testbed_busy_client


def _veerd_which(self, service, client):
    """The daemon's `which` answer for SERVICE and CLIENT ("ip:port" or "ip")."""
    answer = self.request({"cmd": "which", "service": service, "client": client})
    assert answer.get("ok"), answer
    return answer["result"]


def _veerd_flows(self, service):
    """{variant: the kernel's new-flow counter} of SERVICE."""
    return {v: c["flows"] for v, c in self.counters(service, {"services": [self.service_status(service)]}).items()}


Veerd.which = _veerd_which
Veerd.flows = _veerd_flows


def connections_by_port(answer):
    """A ports answer -> {port: [variant of each round's connection, in round order]}."""
    out = {}
    for port, rnd, _t, variant, _err in sorted(answer["connections"], key=lambda c: (c[0], c[1])):
        out.setdefault(port, []).append(variant)
    return out


def delta(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
