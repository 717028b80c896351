"""A real Prometheus (Debian's `prometheus`, 2.42) inside a testbed namespace, for the e2e tests that check
what veer exposes the way an operator's Prometheus sees it: recording and alerting rules evaluated on real
scrapes, the dashboard's queries, PromQL gates against a real server. Python 3 stdlib only.

  prom = Prometheus(tb.ns("lb"), {"veer": ["127.0.0.1:9469"], "model": ["10.1.1.2:8080", "10.1.3.2:8080"]},
                    rule_files=[os.path.join(SRC, "packaging", "prometheus", "veer.rules.yml")])
  with prom:                                  # start(): waits for /-/ready; stop() on the way out
      prom.wait_for("up == 1")                # -> the API's "data" once the result is not empty
      prom.targets_up()                       # every active target's health is "up"
      prom.query('sum(veer_flows_total)')     # {"resultType": "vector", "result": [...]}

Everything it writes (config, TSDB) is in a mkdtemp folder that stop() removes; its output goes to
/tmp/veer-e2e-NETNS-prometheus.log, kept for the failure that needs it. The HTTP API is reached from inside
the namespace (`ip netns exec NETNS python3 -c ...`): Prometheus listens on the namespace's loopback.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import veer_e2e as e2e

PROMETHEUS = "prometheus"

# GET http://ADDR/PATH?PARAMS from inside a namespace: prints {"status": HTTP code or 0, "body": text}. An
# HTTP error's body is kept (the API explains a bad query there); no answer at all is status 0.
_GET = """
import json, sys, urllib.error, urllib.parse, urllib.request
url, params = sys.argv[1], json.loads(sys.argv[2])
if params:
    url += "?" + urllib.parse.urlencode(params)
try:
    with urllib.request.urlopen(url, timeout=float(sys.argv[3])) as r:
        out = {"status": r.status, "body": r.read().decode()}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "body": e.read().decode()}
except (OSError, ValueError) as e:
    out = {"status": 0, "body": repr(e)}
sys.stdout.write(json.dumps(out))
"""


class PrometheusError(AssertionError):
    """The API answered something other than status "success" (a bad query, an unknown endpoint)."""


def _check_targets(targets):
    if not isinstance(targets, dict) or not targets:
        raise ValueError(f"targets: want {{job_name: ['host:port', ...]}}, got {targets!r}")
    for job, addrs in targets.items():
        if not isinstance(job, str) or not job:
            raise ValueError(f"targets: job name {job!r} is not a non-empty string")
        if isinstance(addrs, str) or not addrs:
            raise ValueError(f"targets[{job!r}]: want a non-empty list of 'host:port', got {addrs!r}")
        for a in addrs:
            host, sep, port = str(a).rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"targets[{job!r}]: {a!r} is not host:port")


class Prometheus:
    """A Prometheus in namespace NETNS scraping TARGETS ({job_name: ["host:port", ...]}, each at /metrics) every
    SCRAPE_INTERVAL, evaluating RULE_FILES (paths) every EVALUATION_INTERVAL (default: the scrape interval).
    WORKDIR: where the temporary folder is made (default: the system's temporary directory)."""

    def __init__(self, netns, targets, listen="127.0.0.1:9090", scrape_interval="1s", rule_files=(), workdir=None,
                 evaluation_interval=None, retention="1h"):
        _check_targets(targets)
        for path in rule_files:
            if not os.path.isfile(path):
                raise ValueError(f"rule file {path!r} does not exist")
        self.netns = netns
        self.targets = {job: list(map(str, addrs)) for job, addrs in targets.items()}
        self.listen = listen
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.rule_files = [os.path.abspath(p) for p in rule_files]
        self.workdir = workdir
        self.retention = retention
        self.url = f"http://{listen}"
        self.dir = None
        self.proc = None
        self.log_path = os.path.join(tempfile.gettempdir(), f"veer-e2e-{netns}-prometheus.log")

    # ------------------------------------------------------------ lifecycle

    def config(self):
        """The prometheus.yml, as a dict (written as JSON, which is YAML)."""
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval,
                       # a scrape may take as long as its interval, no longer
                       "scrape_timeout": self.scrape_interval},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": job, "metrics_path": "/metrics",
                                "static_configs": [{"targets": addrs}]}
                               for job, addrs in self.targets.items()],
        }

    def start(self, timeout=30):
        """Writes the config, starts Prometheus in the namespace and waits (TIMEOUT, scaled) until /-/ready
        answers 200. A Prometheus that exits or is not ready in time is stopped, and the error shows its log."""
        if self.alive():
            raise RuntimeError("Prometheus already running")
        self.dir = tempfile.mkdtemp(prefix="veer-e2e-prometheus-", dir=self.workdir)
        config_path = os.path.join(self.dir, "prometheus.yml")
        with open(config_path, "w") as f:
            json.dump(self.config(), f, indent=1)
        cmd = ["ip", "netns", "exec", self.netns, PROMETHEUS,
               f"--config.file={config_path}",
               f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
               f"--storage.tsdb.retention.time={self.retention}",
               f"--web.listen-address={self.listen}"]
        # --web.enable-lifecycle and --web.enable-admin-api stay off (their default): nothing here may
        # reload, quit or delete through HTTP.
        with open(self.log_path, "a") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n")
            log.flush()
            # `ip netns exec` execs prometheus: proc.pid is Prometheus's pid. Own session: a Ctrl-C of the test
            # reaches the test, whose cleanup stops this.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + e2e.scaled(timeout)
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
                status, _ = self.get("/-/ready", timeout=2)
                if status == 200:
                    return self
                if time.monotonic() > deadline:
                    raise AssertionError(f"prometheus not ready at {self.url} within {e2e.scaled(timeout)}s:\n"
                                         f"{self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=10):
        """SIGTERM, SIGKILL after GRACE seconds; removes the temporary folder. Idempotent."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    log_tail = e2e.Veerd.log_tail  # the last lines of self.log_path

    # ------------------------------------------------------------ HTTP API

    def get(self, path, params=None, timeout=10):
        """GET PATH?PARAMS from inside the namespace: (HTTP status, body text); status 0 when nothing answered."""
        proc = e2e.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", _GET, self.url + path,
                        json.dumps(params or {}), str(timeout)], timeout=timeout + 20)
        out = json.loads(proc.stdout)
        return out["status"], out["body"]

    def api(self, path, params=None, timeout=10):
        """GET /api/v1/PATH: the answer's "data"; raises PrometheusError unless its status is "success"."""
        status, body = self.get("/api/v1/" + path, params, timeout)
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusError(f"GET /api/v1/{path} {params}: HTTP {status}, not JSON: {body[:500]!r}") from None
        if answer.get("status") != "success":
            raise PrometheusError(f"GET /api/v1/{path} {params}: HTTP {status}, {answer.get('errorType')}: "
                                  f"{answer.get('error')}")
        return answer["data"]

    def query(self, expr, time=None):
        """An instant query (at TIME, Unix seconds or RFC 3339; default now): {"resultType", "result"}."""
        params = {"query": expr}
        if time is not None:
            params["time"] = str(time)
        return self.api("query", params)

    def query_range(self, expr, start, end, step):
        """A range query, as a dashboard's time-series panel makes it: {"resultType": "matrix", "result"}."""
        return self.api("query_range", {"query": expr, "start": str(start), "end": str(end), "step": str(step)})

    def wait_for(self, expr, predicate=lambda data: bool(data["result"]), timeout=30, period=0.5):
        """Queries EXPR every PERIOD until PREDICATE(data) holds (default: a non-empty result); returns that data.
        A query the server refuses raises at once (waiting does not mend a bad expression)."""
        deadline = time.monotonic() + e2e.scaled(timeout)
        while True:
            data = self.query(expr)
            if predicate(data):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {e2e.scaled(timeout)}s waiting for {expr!r} "
                                     f"(last: {json.dumps(data)[:1000]})")
            time.sleep(period)

    def active_targets(self):
        """The active targets (/api/v1/targets): [{"labels", "health", "lastError", "scrapeUrl", ...}]."""
        return self.api("targets", {"state": "active"})["activeTargets"]

    def targets_up(self):
        """Every configured target is active and its last scrape was healthy."""
        active = self.active_targets()
        expected = sum(len(addrs) for addrs in self.targets.values())
        return len(active) == expected and all(t["health"] == "up" for t in active)

    def wait_targets_up(self, timeout=30):
        """Waits until targets_up(); the error names the targets that are not up and why. Prometheus scrapes
        first about 5 s after it is ready (its discovery manager hands targets on every 5 s): a test that
        needs samples waits for this, or for a query (wait_for), not for start()."""
        last = []

        def check():
            last[:] = self.active_targets()
            return self.targets_up()
        try:
            e2e.wait_for("every Prometheus target up", check, e2e.scaled(timeout), 0.5)
        except AssertionError as exc:
            down = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError")) for t in last if t["health"] != "up"]
            raise AssertionError(f"{exc}; not up: {down}") from None

    def rules(self):
        """The rule groups as loaded (/api/v1/rules): a rule file that failed to load is not there."""
        return self.api("rules")["groups"]

    def alerts(self):
        """The active alerts (pending and firing): [{"labels", "annotations", "state", "activeAt", "value"}]."""
        return self.api("alerts")["alerts"]

    def firing(self, alertname):
        """The firing alerts named ALERTNAME."""
        return [a for a in self.alerts() if a["labels"].get("alertname") == alertname and a["state"] == "firing"]
