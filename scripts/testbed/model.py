"""The model-server stand-in's knobs and metrics (Python 3 stdlib only), used by backend.py.

Knobs (each backend has one set; a change replaces the whole immutable Knobs object, so a request uses the
knobs that were current when its head arrived and a change takes effect for new requests):

  latency      added before answering: "none" | "fixed:MS" | "normal:MEAN_MS:STDDEV_MS" (truncated at 0)
               | "lognormal:MEDIAN_MS:SIGMA" (exp of a normal of log(MEDIAN) and SIGMA)
               | "uniform:MIN_MS:MAX_MS"; a plain number is "fixed:NUMBER"
  latency_clients
               whose model requests get the added latency: comma-separated CIDR prefixes, IPv4 and/or IPv6
               ("10.0.3.0/24,fd00:3::/64"; a JSON list of them in a POST); "" or "all" (the default): every
               client. The client is the connection's peer address (an IPv4-mapped IPv6 peer such as
               ::ffff:10.0.3.10 matches as 10.0.3.10); requests of other clients get no added latency.
               Errors and resets do not look at it: they apply to every client. Shown as "all" or the
               prefixes in canonical form ("10.0.3.0/24,fd00:3::/64").
  error_rate   share of model requests answered "500 Internal Server Error"           (0..1)
  reset_rate   share of model requests answered with a TCP RST (SO_LINGER 0, close)  (0..1)
               error_rate + reset_rate <= 1; a point per request of an evenly spread (golden-ratio) sequence picks
               reset, 500 or 200: any run of n requests holds n x rate of each within about two
  predictions  label distribution of the predicted class of each 200 answer: "cat:0.7,dog:0.3" or a JSON
               object; weights >= 0 are normalized; "" / "none" / {} = no prediction

Every model request first waits its drawn latency (asyncio.sleep: other connections go on), then is
answered 200 (with X-Prediction), 500, or reset.
"""
import bisect
import ipaddress
import json
import math
import random
import re

CLASS_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
KNOB_KEYS = ("latency", "latency_ms", "latency_clients", "error_rate", "reset_rate", "predictions", "reset")


def parse_clients(spec):
    """"10.0.3.0/24,fd00:3::/64" (or, in POSTed JSON, a list of such strings) -> a tuple of ip_network;
    "" / "all" -> () (every client). A prefix with host bits set ("10.0.3.7/24") means its network; a bare
    address is a /32 or /128."""
    if isinstance(spec, (list, tuple)) and all(isinstance(p, str) for p in spec):
        if not spec:
            return ()
        spec = ",".join(spec)
    if not isinstance(spec, str):
        raise ValueError(f"latency_clients: expected comma-separated address prefixes, got {spec!r}")
    if spec.strip().lower() in ("", "all"):
        return ()
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"latency_clients: an empty prefix in {spec!r}")
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"latency_clients: {part!r} is not an IPv4 or IPv6 prefix ({exc})") from None
    return tuple(out)


# Prometheus' default buckets plus finer ones around the latencies the tests and gates use (the prometheus
# source estimates quantiles from these by interpolation inside a bucket).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.2,
                    0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _number(text, what):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what}: not finite: {text!r}")
    return value


def _fmt(x):
    return f"{x:g}"


class Latency:
    """An added-latency distribution; draw() gives seconds."""

    def __init__(self, dist="none", params=()):
        self.dist, self.params = dist, tuple(params)

    @staticmethod
    def parse(spec):
        """"fixed:50", 50, {"dist": "normal", "mean_ms": 50, "stddev_ms": 5}, ... -> Latency."""
        if isinstance(spec, bool):
            raise ValueError(f"latency: bad value {spec!r}")
        if isinstance(spec, (int, float)):
            spec = f"fixed:{spec}"
        if isinstance(spec, dict):
            spec = dict(spec)
            dist = spec.pop("dist", None)
            names = {"none": (), "fixed": ("ms",), "normal": ("mean_ms", "stddev_ms"),
                     "lognormal": ("median_ms", "sigma"), "uniform": ("min_ms", "max_ms")}
            if dist not in names:
                raise ValueError(f"latency: dist must be one of {', '.join(names)}, got {dist!r}")
            spec.pop("spec", None)  # our own answer may be posted back
            if set(spec) != set(names[dist]):
                raise ValueError(f"latency {dist}: needs exactly {list(names[dist])}, got {sorted(spec)}")
            spec = ":".join([dist] + [str(spec[n]) for n in names[dist]])
        if not isinstance(spec, str):
            raise ValueError(f"latency: bad value {spec!r}")
        parts = spec.strip().split(":")
        dist = parts[0].lower()
        if len(parts) == 1 and dist not in ("none", "off", ""):
            parts, dist = ["fixed", parts[0]], "fixed"  # a bare number
        if dist in ("none", "off", ""):
            if len(parts) > 1:
                raise ValueError(f"latency: 'none' takes no parameters: {spec!r}")
            return Latency()
        arity = {"fixed": 1, "normal": 2, "lognormal": 2, "uniform": 2}
        if dist not in arity:
            raise ValueError(f"latency: unknown distribution {dist!r} (none, fixed, normal, lognormal, uniform)")
        if len(parts) - 1 != arity[dist]:
            raise ValueError(f"latency {dist}: needs {arity[dist]} parameter(s): {spec!r}")
        p = [_number(x, f"latency {dist}") for x in parts[1:]]
        if any(x < 0 for x in p):
            raise ValueError(f"latency {dist}: parameters must be >= 0: {spec!r}")
        if dist == "uniform" and p[0] > p[1]:
            raise ValueError(f"latency uniform: min > max: {spec!r}")
        if dist == "lognormal" and p[0] <= 0:
            raise ValueError(f"latency lognormal: median must be > 0: {spec!r}")
        milliseconds = p[:1] if dist == "lognormal" else p  # lognormal's second parameter is sigma
        if max(milliseconds) > 600_000:
            raise ValueError(f"latency {dist}: over 600 s: {spec!r}")
        if dist == "fixed" and p[0] == 0:
            return Latency()
        return Latency(dist, p)

    def spec(self):
        return ":".join([self.dist] + [_fmt(x) for x in self.params])

    def as_json(self):
        names = {"none": (), "fixed": ("ms",), "normal": ("mean_ms", "stddev_ms"),
                 "lognormal": ("median_ms", "sigma"), "uniform": ("min_ms", "max_ms")}[self.dist]
        out = {"dist": self.dist}
        out.update(zip(names, self.params))
        out["spec"] = self.spec()
        return out

    def draw(self, rng):
        d, p = self.dist, self.params
        if d == "none":
            return 0.0
        if d == "fixed":
            ms = p[0]
        elif d == "normal":
            ms = max(0.0, rng.gauss(p[0], p[1]))
        elif d == "lognormal":
            ms = math.exp(rng.gauss(math.log(p[0]), p[1]))
        else:
            ms = rng.uniform(p[0], p[1])
        return min(ms, 600_000.0) / 1000.0


def parse_predictions(spec):
    """"cat:0.7,dog:0.3" or {"cat": 0.7, "dog": 0.3} -> ((class, probability), ...) normalized; () = none."""
    if spec is None:
        return ()
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"predictions: bad JSON: {exc}") from None
        elif text.lower() in ("", "none", "off"):
            return ()
        else:
            pairs = {}
            for item in text.split(","):
                name, sep, weight = item.strip().partition(":")
                if not sep:
                    raise ValueError(f"predictions: expected CLASS:WEIGHT, got {item!r}")
                if name in pairs:
                    raise ValueError(f"predictions: class {name!r} given twice")
                pairs[name] = weight
            spec = pairs
    if not isinstance(spec, dict):
        raise ValueError(f"predictions: expected CLASS:WEIGHT,... or a JSON object, got {spec!r}")
    if not spec:
        return ()
    out = []
    for name, weight in spec.items():
        if not isinstance(name, str) or not CLASS_NAME.fullmatch(name):
            raise ValueError(f"predictions: bad class name {name!r} (1-64 of A-Z a-z 0-9 _ . : -)")
        if isinstance(weight, bool):
            raise ValueError(f"predictions: bad weight for {name!r}: {weight!r}")
        w = _number(weight, f"predictions weight of {name!r}")
        if w < 0:
            raise ValueError(f"predictions: negative weight for {name!r}")
        out.append((name, w))
    total = sum(w for _, w in out)
    if total <= 0:
        raise ValueError("predictions: weights sum to 0")
    return tuple((name, w / total) for name, w in out)


def _rate(value, what):
    if isinstance(value, bool):
        raise ValueError(f"{what}: bad value {value!r}")
    r = _number(value, what)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"{what}: must be within 0..1, got {value!r}")
    return r


class Knobs:
    """One immutable set of knobs."""

    def __init__(self, latency=None, error_rate=0.0, reset_rate=0.0, predictions=(), version=0,
                 latency_clients=()):
        self.latency = latency or Latency()
        self.latency_clients = tuple(latency_clients)
        self.error_rate = error_rate
        self.reset_rate = reset_rate
        self.predictions = tuple(predictions)
        self.version = version
        self.classes = [name for name, _ in self.predictions]
        acc, self.cumulative = 0.0, []
        for _, p in self.predictions:
            acc += p
            self.cumulative.append(acc)
        self.active = self.latency.dist != "none" or error_rate > 0 or reset_rate > 0

    def updated(self, changes):
        """A new Knobs with CHANGES (a dict of KNOB_KEYS; values as in the module doc) applied over these
        ones ("reset": true starts from all-off first). Raises ValueError and changes nothing on bad input."""
        if not isinstance(changes, dict):
            raise ValueError("knobs: expected a JSON object")
        unknown = [k for k in changes if k not in KNOB_KEYS]
        if unknown:
            raise ValueError(f"knobs: unknown key(s) {unknown}; known: {list(KNOB_KEYS)}")
        if "latency" in changes and "latency_ms" in changes:
            raise ValueError("knobs: give latency or latency_ms, not both")
        reset = changes.get("reset", False)
        if isinstance(reset, str):
            if reset.lower() not in ("1", "true", "yes", "0", "false", "no", ""):
                raise ValueError(f"knobs: reset must be true or false, got {reset!r}")
            reset = reset.lower() in ("1", "true", "yes")
        elif not isinstance(reset, bool):
            raise ValueError(f"knobs: reset must be true or false, got {reset!r}")
        base = Knobs() if reset else self
        latency = base.latency
        if "latency" in changes:
            latency = Latency.parse(changes["latency"])
        elif "latency_ms" in changes:
            v = changes["latency_ms"]
            latency = Latency.parse(f"fixed:{v}" if isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                    else v)
        error_rate = _rate(changes["error_rate"], "error_rate") if "error_rate" in changes else base.error_rate
        reset_rate = _rate(changes["reset_rate"], "reset_rate") if "reset_rate" in changes else base.reset_rate
        if error_rate + reset_rate > 1.0 + 1e-12:
            raise ValueError(f"knobs: error_rate + reset_rate = {error_rate + reset_rate:g} > 1")
        predictions = (parse_predictions(changes["predictions"]) if "predictions" in changes
                       else base.predictions)
        latency_clients = (parse_clients(changes["latency_clients"]) if "latency_clients" in changes
                           else base.latency_clients)
        return Knobs(latency, error_rate, reset_rate, predictions, self.version + 1, latency_clients)

    def latency_applies_to(self, client):
        """Whether the added latency applies to CLIENT, the peer's address as text (an IPv6 zone "%eth0" is
        ignored; an IPv4-mapped IPv6 address "::ffff:10.0.3.10" is its IPv4 address, so it matches IPv4
        prefixes). With no latency_clients: every client; a peer that is no address (None) never matches
        a prefix."""
        if not self.latency_clients:
            return True
        try:
            addr = ipaddress.ip_address(str(client).split("%")[0])
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.latency_clients)

    def as_json(self):
        return {
            "version": self.version,
            "latency": self.latency.as_json(),
            "error_rate": self.error_rate,
            "reset_rate": self.reset_rate,
            "latency_clients": ",".join(str(n) for n in self.latency_clients) or "all",
            "predictions": {name: p for name, p in self.predictions},
        }

    def draw_class(self, rng):
        if not self.classes:
            return None
        i = bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
        return self.classes[min(i, len(self.classes) - 1)]


def escape_label(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class ModelMetrics:
    """The counters and the latency histogram behind GET /metrics."""

    def __init__(self, variant):
        self.variant = variant
        self.requests = {"200": 0, "500": 0}
        self.resets = 0
        self.predictions = {}
        self.bucket_counts = [0] * len(DURATION_BUCKETS)  # non-cumulative; +Inf is count - sum(these)
        self.duration_sum = 0.0
        self.duration_count = 0

    def answered(self, code, seconds, predicted=None):
        self.requests[code] = self.requests.get(code, 0) + 1
        if predicted is not None:
            self.predictions[predicted] = self.predictions.get(predicted, 0) + 1
        i = bisect.bisect_left(DURATION_BUCKETS, seconds)  # le is inclusive: seconds == bound goes in it
        if i < len(DURATION_BUCKETS):
            self.bucket_counts[i] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def reset_sent(self):
        self.resets += 1

    def as_json(self):
        return {"requests": dict(self.requests), "resets": self.resets, "predictions": dict(self.predictions),
                "duration_count": self.duration_count, "duration_sum": self.duration_sum}

    def exposition(self, knobs):
        """Prometheus text exposition format 0.0.4."""
        out = []

        def family(name, kind, help_text):
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("model_info", "gauge", "The model server stand-in: its variant.")
        out.append(f'model_info{{variant="{escape_label(self.variant)}"}} 1')
        family("model_requests_total", "counter", "Model requests answered, by HTTP status code.")
        for code in sorted(self.requests):
            out.append(f'model_requests_total{{code="{code}"}} {self.requests[code]}')
        family("model_resets_total", "counter", "Model requests answered with a TCP reset (injected).")
        out.append(f"model_resets_total {self.resets}")
        family("model_predictions_total", "counter", "Predicted classes of the 200 answers.")
        classes = set(self.predictions) | set(knobs.classes)
        for name in sorted(classes):
            out.append(f'model_predictions_total{{class="{escape_label(name)}"}} {self.predictions.get(name, 0)}')
        family("model_request_duration_seconds", "histogram",
               "Time from a model request's head to its answer being written (200 and 500 answers).")
        cumulative = 0
        for bound, n in zip(DURATION_BUCKETS, self.bucket_counts):
            cumulative += n
            out.append(f'model_request_duration_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        out.append(f'model_request_duration_seconds_bucket{{le="+Inf"}} {self.duration_count}')
        out.append(f"model_request_duration_seconds_sum {self.duration_sum:.9g}")
        out.append(f"model_request_duration_seconds_count {self.duration_count}")
        family("model_knob_error_rate", "gauge", "Configured share of 500 answers.")
        out.append(f"model_knob_error_rate {knobs.error_rate:g}")
        family("model_knob_reset_rate", "gauge", "Configured share of reset answers.")
        out.append(f"model_knob_reset_rate {knobs.reset_rate:g}")
        return ("\n".join(out) + "\n").encode()


def make_rng(seed=None):
    return random.Random(seed)


class OutcomeSequence:
    """Where each model request falls in [0, 1) for the reset/500/200 choice: a golden-ratio (Weyl) sequence
    from a random start, not an independent draw. Over any run of n requests the share of 500s (and of resets)
    is within about two requests of the knob, as a test that injects "2 % errors" means; at 2 % the gap between
    two 500s is 34, 55 or 89 requests (three-gap theorem). With independent draws a 1 s gate window of 150
    requests at 2 % holds no 500 at all one time in twenty, and a gate with failure_limit 0 then trips one
    interval late: a flaky test of the gate, not a fault of it."""

    STEP = 0.6180339887498949  # (sqrt(5) - 1) / 2: the rotation whose multiples spread most evenly

    def __init__(self, rng):
        self.point = rng.random()

    def next(self):
        self.point = (self.point + self.STEP) % 1.0
        return self.point
