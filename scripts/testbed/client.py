#!/usr/bin/env python3
"""Testbed load client (Python 3 stdlib only); run it inside the client namespace:

  ip netns exec veer-client python3 client.py http --dst 10.0.0.100 --port 80 --src 10.0.1.11 --count 10000
  ... client.py udp  --dst 10.0.0.100 --port 53 --src 10.0.1.12 --count 1000
  ... client.py long --proto line --dst 10.0.0.100 --port 7000 --src 10.0.1.13 --connections 50 --duration 10

http: COUNT new TCP connections (one GET each; the client closes first, so TIME_WAIT stays on the client).
udp:  COUNT flows, each from a fresh socket (new source port): one datagram, retried on timeout.
long: K long-lived connections each sending a line (proto line) or a keep-alive GET (proto http) every
      INTERVAL for DURATION seconds (or until --stop-file exists), recording which variant answered each
      reply, and errors/resets. Prints a {"event":"ready",...} line once every connection got its first
      reply (or failed), then a {"event":"done",...} line.
rate: an open-loop steady request rate (--rate per second for --duration seconds, at most --count), each
      request a new TCP connection (or one of --keepalive K connections per source address), source
      addresses round robin from --src-range FIRST-LAST / --src A,B,... and source ports picked by the
      kernel. Per variant (X-Variant of the response; "unattributed" for failures no response named):
      count, answered, ok, http_5xx, status, resets (ECONNRESET/EPIPE after connecting), refused,
      timeouts {connect, response}, errors, predictions (X-Prediction counts), latency_ms.ttfb (from the
      request's first byte sent to the response's first byte) and latency_ms.total (dispatch, before
      connect, to the last byte): n, min, p50, p95, p99, mean, max. With --progress S, a {"event": "progress"}
      line every S seconds (the window's numbers per variant, and the run's totals); last a
      {"event": "done", "variants": ..., "totals": ..., "per_source": {src: {variant: n}},
      "opened": {variant: [[t, n], ...]} (n requests whose connection opened in the 100 ms from Unix time
      t), ...} line.
      ... client.py rate --dst 10.0.0.100 --port 80 --src-range 10.0.1.20-10.0.1.40 --rate 200 --duration 30
ports: a busy client that reuses its source ports, as API gateways, NAT gateways and wrk do: the ports
      FIRST-LAST (--ports) of one --src address, each used for a new connection in every round (bind with
      SO_REUSEADDR; one GET with "Connection: close", so the server closes first and keeps TIME_WAIT, and
      the port is free again as soon as the close completes). --rounds R rounds one after another (0: until
      --stop-file or --time-limit), --concurrency ports at a time, at most --rate connections a second
      over all (0: as fast as they go). With --udp, one datagram per port per
      round (a fresh socket bound to the port, answered by the UDP echo). Prints one JSON object:
      {"mode": "ports", "connections": [[port, round, unix start time, variant or null, error or null], ...],
      "variants": {name: count}, "errors": {kind: count}, "rounds", "elapsed"}.
      ... client.py ports --dst 10.0.0.100 --port 80 --src 10.0.1.10 --ports 20000-20299 --rounds 3
http/udp print one JSON object: {"variants": {name: count}, "completed", "errors": {kind: count}, ...}.
Every mode is bounded by its count and by --time-limit.
"""
import argparse
import asyncio
import errno
import ipaddress
import json
import math
import os
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the port at connect(), so TIME_WAIT ports can be reused


def family_of(addr):
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def error_kind(exc):
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return type(exc).__name__


def sockname(sock):
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tcp_socket(src, dst):
    sock = socket.socket(family_of(dst), socket.SOCK_STREAM)
    sock.setblocking(False)
    if src:
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        sock.bind((src, 0))
    return sock


async def recv_http_response(loop, sock, buf):
    """Reads one HTTP/1.1 response with Content-Length. Returns (status, headers, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed before response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed inside response body")
        rest += chunk
    return status, headers, rest[:length], rest[length:]


def http_request(dst, port, path, close):
    host = f"[{dst}]" if ":" in dst else dst
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: veer-testbed\r\n{conn}\r\n".encode()


async def run_bounded(count, concurrency, time_limit, one):
    """Runs one(i) for i in range(count) with at most `concurrency` at a time, until the time limit."""
    deadline = time.monotonic() + time_limit
    next_index = 0

    async def worker():
        nonlocal next_index
        while next_index < count and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            await one(i)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))


async def mode_http(args):
    loop = asyncio.get_running_loop()
    variants, errors = {}, {}
    request = http_request(args.dst, args.port, args.path, close=False)

    async def one(i):
        sock = tcp_socket(args.src, args.dst)
        try:
            async def exchange():
                await loop.sock_connect(sock, (args.dst, args.port))
                await loop.sock_sendall(sock, request)
                status, headers, body, _ = await recv_http_response(loop, sock, b"")
                if status != 200:
                    raise ConnectionError(f"status {status}")
                return body.decode().strip()
            variant = await asyncio.wait_for(exchange(), args.timeout)
            variants[variant] = variants.get(variant, 0) + 1
        except Exception as exc:  # counted and reported, never fatal
            kind = error_kind(exc)
            errors[kind] = errors.get(kind, 0) + 1
        finally:
            sock.close()

    start = time.monotonic()
    await run_bounded(args.count, args.concurrency, args.time_limit, one)
    return summary("http", args, start, variants, errors)


async def mode_udp(args):
    loop = asyncio.get_running_loop()
    variants, errors = {}, {}
    retries = {"n": 0}

    async def one(i):
        sock = socket.socket(family_of(args.dst), socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            if args.src:
                sock.bind((args.src, 0))
            sock.connect((args.dst, args.port))
            payload = f"flow-{i}".encode()
            for attempt in range(args.retries + 1):
                await loop.sock_sendall(sock, payload)
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 2048), args.timeout)
                except asyncio.TimeoutError:
                    retries["n"] += 1
                    continue
                variant, _, echoed = data.decode().partition(" ")
                if echoed != payload.decode():
                    raise ValueError("echo mismatch")
                variants[variant] = variants.get(variant, 0) + 1
                return
            errors["timeout"] = errors.get("timeout", 0) + 1
        except Exception as exc:
            kind = error_kind(exc)
            errors[kind] = errors.get(kind, 0) + 1
        finally:
            sock.close()

    start = time.monotonic()
    await run_bounded(args.count, args.concurrency, args.time_limit, one)
    out = summary("udp", args, start, variants, errors)
    out["retries"] = retries["n"]
    return out


def summary(mode, args, start, variants, errors):
    elapsed = time.monotonic() - start
    completed = sum(variants.values())
    return {
        "mode": mode,
        "dst": args.dst,
        "port": args.port,
        "src": args.src,
        "requested": args.count,
        "completed": completed,
        "variants": dict(sorted(variants.items())),
        "errors": errors,
        "elapsed": round(elapsed, 3),
        "rate": round(completed / elapsed, 1) if elapsed > 0 else 0.0,
    }


class LongConn:
    def __init__(self, index):
        self.index = index
        self.local = None
        self.first = None
        self.variants = {}
        self.sent = 0
        self.received = 0
        self.error = None
        self.first_reply = asyncio.Event()


async def mode_long(args):
    loop = asyncio.get_running_loop()
    conns = [LongConn(i) for i in range(args.connections)]
    start = time.monotonic()
    end = start + min(args.duration, args.time_limit)

    def stopping():
        return time.monotonic() >= end or (args.stop_file and os.path.exists(args.stop_file))

    async def run(c):
        sock = tcp_socket(args.src, args.dst)
        buf = b""
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (args.dst, args.port)), args.timeout)
            c.local = sockname(sock)
            n = 0
            while True:
                if args.proto == "line":
                    line = f"conn {c.index} seq {n}\n".encode()
                    await loop.sock_sendall(sock, line)
                    c.sent += 1
                    while b"\n" not in buf:
                        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), args.timeout)
                        if not chunk:
                            raise ConnectionError("closed by peer")
                        buf += chunk
                    reply, _, buf = buf.partition(b"\n")
                    variant, _, echoed = reply.decode().partition(" ")
                    if echoed != line.decode().rstrip("\n"):
                        raise ValueError(f"echo mismatch: {reply!r}")
                else:
                    await loop.sock_sendall(sock, http_request(args.dst, args.port, args.path, close=False))
                    c.sent += 1
                    status, _, body, buf = await asyncio.wait_for(recv_http_response(loop, sock, buf),
                                                                  args.timeout)
                    if status != 200:
                        raise ValueError(f"status {status}")
                    variant = body.decode().strip()
                c.received += 1
                c.variants[variant] = c.variants.get(variant, 0) + 1
                if c.first is None:
                    c.first = variant
                    c.first_reply.set()
                n += 1
                if stopping():
                    break
                await asyncio.sleep(args.interval)
        except Exception as exc:
            c.error = error_kind(exc) + (f": {exc}" if str(exc) else "")
        finally:
            c.first_reply.set()
            sock.close()

    tasks = []
    for c in conns:
        tasks.append(asyncio.ensure_future(run(c)))
        await asyncio.sleep(args.stagger)
    await asyncio.wait([asyncio.ensure_future(c.first_reply.wait()) for c in conns])
    emit({"event": "ready", "elapsed": round(time.monotonic() - start, 3),
          "connections": [{"index": c.index, "local": c.local, "variant": c.first, "error": c.error}
                          for c in conns]})
    await asyncio.gather(*tasks)
    per = [{"index": c.index, "local": c.local, "first": c.first, "variants": c.variants, "sent": c.sent,
            "received": c.received, "error": c.error} for c in conns]
    first_counts = {}
    for c in conns:
        if c.first:
            first_counts[c.first] = first_counts.get(c.first, 0) + 1
    return {
        "event": "done",
        "mode": "long",
        "proto": args.proto,
        "elapsed": round(time.monotonic() - start, 3),
        "summary": {
            "connections": len(conns),
            "ok": sum(1 for c in conns if c.error is None and c.received > 0),
            "errors": sum(1 for c in conns if c.error is not None),
            "resets": sum(1 for c in conns if c.error and "Reset" in c.error),
            "changed_variant": sum(1 for c in conns if len(c.variants) > 1),
            "first_variants": dict(sorted(first_counts.items())),
            "replies": sum(c.received for c in conns),
        },
        "connections": per,
    }


# ---------------------------------------------------------------- ports: reused source ports

def port_range(spec):
    """"20000-20299" -> (20000, 20299), 1..65535, at most 16384 ports."""
    first, sep, last = spec.partition("-")
    try:
        a, b = int(first), int(last if sep else first)
    except ValueError:
        raise ValueError(f"--ports {spec!r}: want FIRST-LAST") from None
    if not 1 <= a <= b <= 65535 or b - a >= 16384:
        raise ValueError(f"--ports {spec!r}: want 1 <= FIRST <= LAST <= 65535, at most 16384 ports")
    return a, b


BUSY_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL)


async def bound_socket(kind, src, port, dst, deadline):
    """A socket bound to (src, port) with SO_REUSEADDR. The previous connection of the port may still be
    finishing its close (LAST_ACK); bind or connect then fail with EADDRINUSE/EADDRNOTAVAIL: retried every
    5 ms until the deadline."""
    while True:
        sock = socket.socket(family_of(dst), kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        try:
            sock.bind((src, port))
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno not in BUSY_ERRNOS or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.005)


async def ports_tcp_exchange(loop, args, port, request):
    """One connection from (src, port): connect (retrying while the port's last connection finishes), GET
    with Connection: close, the response, then the server's close. Returns the X-Variant of the answer."""
    deadline = time.monotonic() + args.timeout
    while True:
        sock = await bound_socket(socket.SOCK_STREAM, args.src, port, args.dst, deadline)
        try:
            await loop.sock_connect(sock, (args.dst, args.port))
            break
        except OSError as exc:
            sock.close()
            if exc.errno not in BUSY_ERRNOS or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.005)
    try:
        await loop.sock_sendall(sock, request)
        status, headers, _, rest = await recv_http_response(loop, sock, b"")
        while await loop.sock_recv(sock, 65536):  # the server closes first (Connection: close)
            pass
        if status not in (200, 500):
            raise ConnectionError(f"status {status}")
        return headers.get("x-variant")
    finally:
        sock.close()


async def ports_udp_exchange(loop, args, port):
    deadline = time.monotonic() + args.timeout
    sock = await bound_socket(socket.SOCK_DGRAM, args.src, port, args.dst, deadline)
    try:
        await loop.sock_connect(sock, (args.dst, args.port))
        await loop.sock_sendall(sock, b"ports %d" % port)
        data = await loop.sock_recv(sock, 65536)
        return data.decode(errors="replace").split(" ", 1)[0]
    finally:
        sock.close()


async def mode_ports(args):
    loop = asyncio.get_running_loop()
    first, last = port_range(args.ports)
    ports = list(range(first, last + 1))
    request = http_request(args.dst, args.port, args.path, close=True)
    records, variants, errors = [], {}, {}
    start = time.monotonic()
    deadline = start + args.time_limit
    next_due = start  # --rate: when the next connection may start

    async def paced():
        nonlocal next_due
        if args.rate > 0:
            due = next_due
            next_due = max(next_due, time.monotonic() - 1.0) + 1.0 / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def stopping():
        return time.monotonic() > deadline or (args.stop_file and os.path.exists(args.stop_file))

    async def one(rnd, port):
        t = time.time()
        variant, kind = None, None
        try:
            if args.udp:
                variant = await asyncio.wait_for(ports_udp_exchange(loop, args, port), args.timeout)
            else:
                variant = await asyncio.wait_for(ports_tcp_exchange(loop, args, port, request), args.timeout)
            variants[variant] = variants.get(variant, 0) + 1
        except Exception as exc:  # counted and reported, never fatal
            kind = error_kind(exc)
            errors[kind] = errors.get(kind, 0) + 1
        records.append([port, rnd, round(t, 4), variant, kind])

    rnd = 0
    while (args.rounds == 0 or rnd < args.rounds) and not stopping():
        queue = list(ports)

        async def worker():
            while queue and not stopping():
                port = queue.pop(0)
                await paced()
                await one(rnd, port)

        await asyncio.gather(*(worker() for _ in range(max(1, min(args.concurrency, len(ports))))))
        rnd += 1
    return {"mode": "ports", "src": args.src, "ports": [first, last], "udp": args.udp, "rounds": rnd,
            "elapsed": round(time.monotonic() - start, 3), "variants": variants, "errors": errors,
            "connections": records}


# ---------------------------------------------------------------- rate: a steady request rate

def address_range(spec):
    """"10.0.1.20-10.0.1.40" -> the addresses from first to last (IPv4 or IPv6; at most 4096)."""
    first, sep, last = spec.partition("-")
    try:
        a = ipaddress.ip_address(first.strip())
        b = ipaddress.ip_address(last.strip()) if sep else a
    except ValueError as exc:
        raise ValueError(f"--src-range {spec!r}: {exc}") from None
    if a.version != b.version or int(b) < int(a):
        raise ValueError(f"--src-range {spec!r}: need FIRST-LAST of one family with FIRST <= LAST")
    if int(b) - int(a) >= 4096:
        raise ValueError(f"--src-range {spec!r}: more than 4096 addresses")
    return [str(ipaddress.ip_address(int(a) + i) if a.version == 4 else ipaddress.IPv6Address(int(a) + i))
            for i in range(int(b) - int(a) + 1)]


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values):
    """Seconds -> {"n", "min", "p50", "p95", "p99", "mean", "max"} in milliseconds (nearest rank)."""
    v = sorted(values)
    ms = lambda x: None if x is None else round(x * 1000.0, 3)
    return {"n": len(v), "min": ms(v[0]) if v else None, "p50": ms(percentile(v, 50)), "p95": ms(percentile(v, 95)),
            "p99": ms(percentile(v, 99)), "mean": ms(sum(v) / len(v)) if v else None, "max": ms(v[-1]) if v else None}


class Outcomes:
    """What one variant (or the unattributed failures) saw, over the run or over one progress window."""

    def __init__(self):
        self.answered = 0        # responses with a status line, any status
        self.status = {}         # status code -> count
        self.http_5xx = 0
        self.resets = 0          # ECONNRESET/EPIPE on an established connection (after the request was sent)
        self.refused = 0         # RST answering the SYN
        self.timeouts = {"connect": 0, "response": 0}
        self.errors = {}         # any other failure, by kind
        self.ttfb = []           # request's first byte sent -> response's first byte, seconds
        self.total = []          # dispatch (before connect) -> last response byte, seconds
        self.predictions = {}

    def add(self, r):
        if r.status is not None:
            self.answered += 1
            key = str(r.status)
            self.status[key] = self.status.get(key, 0) + 1
            if 500 <= r.status <= 599:
                self.http_5xx += 1
            self.ttfb.append(r.ttfb)
            self.total.append(r.total)
            if r.prediction is not None:
                self.predictions[r.prediction] = self.predictions.get(r.prediction, 0) + 1
        elif r.failure == "reset":
            self.resets += 1
        elif r.failure == "refused":
            self.refused += 1
        elif r.failure in ("connect_timeout", "response_timeout"):
            self.timeouts[r.failure.split("_")[0]] += 1
        else:
            self.errors[r.failure] = self.errors.get(r.failure, 0) + 1

    def failures(self):
        return self.resets + self.refused + sum(self.timeouts.values()) + sum(self.errors.values())

    def as_json(self):
        return {
            "count": self.answered + self.failures(),
            "answered": self.answered,
            "ok": sum(n for s, n in self.status.items() if s.startswith("2")),
            "http_5xx": self.http_5xx,
            "status": dict(sorted(self.status.items())),
            "resets": self.resets,
            "refused": self.refused,
            "timeouts": dict(self.timeouts),
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": {"ttfb": latency_summary(self.ttfb), "total": latency_summary(self.total)},
            "predictions": dict(sorted(self.predictions.items())),
        }


class RequestResult:
    # opened: Unix time at which the request's connection began (connect() called; for a keep-alive
    # connection, when it was opened), so a test can ask where connections opened after a moment went.
    __slots__ = ("src", "variant", "status", "failure", "ttfb", "total", "prediction", "opened")

    def __init__(self, src):
        self.src, self.variant, self.status, self.failure = src, None, None, None
        self.ttfb = self.total = self.prediction = self.opened = None


class Tally:
    """Outcomes per variant ("unattributed" for failures on a connection no response named), for the whole
    run and for the current progress window."""
    UNATTRIBUTED = "unattributed"

    OPENED_BUCKET_S = 0.1

    def __init__(self):
        self.run, self.window, self.per_source = {}, {}, {}
        self.opened = {}  # variant -> {bucket: requests whose connection opened in [bucket, bucket + 0.1 s)}

    def add(self, r):
        key = r.variant or self.UNATTRIBUTED
        for table in (self.run, self.window):
            if key not in table:
                table[key] = Outcomes()
            table[key].add(r)
        per = self.per_source.setdefault(r.src or "", {})
        per[key] = per.get(key, 0) + 1
        if r.opened is not None:
            bucket = math.floor(r.opened / self.OPENED_BUCKET_S)
            per_bucket = self.opened.setdefault(key, {})
            per_bucket[bucket] = per_bucket.get(bucket, 0) + 1

    def opened_report(self):
        """{variant: [[bucket start (Unix s), requests], ...]} in time order."""
        return {k: [[round(b * self.OPENED_BUCKET_S, 1), n] for b, n in sorted(v.items())]
                for k, v in sorted(self.opened.items())}

    @staticmethod
    def report(table):
        return {k: table[k].as_json() for k in sorted(table)}

    @staticmethod
    def totals(table):
        out = Outcomes()
        for o in table.values():
            out.answered += o.answered
            out.http_5xx += o.http_5xx
            out.resets += o.resets
            out.refused += o.refused
            for k in out.timeouts:
                out.timeouts[k] += o.timeouts[k]
            for d_out, d_in in ((out.status, o.status), (out.errors, o.errors), (out.predictions, o.predictions)):
                for k, n in d_in.items():
                    d_out[k] = d_out.get(k, 0) + n
            out.ttfb += o.ttfb
            out.total += o.total
        return out.as_json()


class KeepAlivePool:
    """At most SIZE keep-alive connections per source address; a request takes an idle one or opens one."""

    def __init__(self, size):
        self.size = size
        self.idle = {}   # src -> [(sock, buf, variant, opened)]
        self.open = {}   # src -> number open
        self.freed = asyncio.Condition()

    async def acquire(self, src):
        async with self.freed:
            while True:
                idle = self.idle.get(src)
                if idle:
                    return idle.pop()
                if self.open.get(src, 0) < self.size:
                    self.open[src] = self.open.get(src, 0) + 1
                    return None  # the caller opens a new connection
                await self.freed.wait()

    async def release(self, src, conn):
        """conn None: the connection was closed (a slot is free again)."""
        async with self.freed:
            if conn is None:
                self.open[src] -= 1
            else:
                self.idle.setdefault(src, []).append(conn)
            self.freed.notify()

    def close_all(self):
        for conns in self.idle.values():
            for sock, _, _, _ in conns:
                sock.close()
        self.idle.clear()


async def rate_exchange(loop, args, src, pool, request, r, dispatched):
    """One request; fills R. Never raises (every failure is an outcome)."""
    conn = await pool.acquire(src) if pool else None
    sock, buf, known_variant, opened, phase = (conn if conn else (None, b"", None, None)) + ("connect",)
    reusable = False
    try:
        async def exchange():
            nonlocal sock, buf, phase, reusable, opened
            if sock is None:
                opened = time.time()
                sock = tcp_socket(src, args.dst)
                await loop.sock_connect(sock, (args.dst, args.port))
            phase = "response"
            sent = time.perf_counter()
            await loop.sock_sendall(sock, request)
            first = None
            while b"\r\n\r\n" not in buf:
                chunk = await loop.sock_recv(sock, 65536)
                if first is None:
                    first = time.perf_counter()
                if not chunk:
                    raise ConnectionError("closed before the response head")
                buf += chunk
            if first is None:  # the head was already buffered (cannot happen with one request in flight)
                first = time.perf_counter()
            status, headers, _, buf = await recv_http_response(loop, sock, buf)
            done = time.perf_counter()
            r.status, r.ttfb, r.total = status, first - sent, done - dispatched
            r.variant = headers.get("x-variant") or None
            r.prediction = headers.get("x-prediction") or None
            reusable = headers.get("connection", "").lower() != "close"

        await asyncio.wait_for(exchange(), args.timeout)
    except asyncio.TimeoutError:
        r.failure = phase + "_timeout"
    except ConnectionRefusedError:
        r.failure = "refused"
    except (ConnectionResetError, BrokenPipeError):
        r.failure = "reset"
    except Exception as exc:  # counted and reported, never fatal
        r.failure = error_kind(exc)
    if r.variant is None and r.status is None:
        r.variant = known_variant  # a failure on a keep-alive connection that an earlier response named
    r.opened = opened
    if pool and sock is not None and r.status is not None and reusable:
        await pool.release(src, (sock, buf, r.variant, opened))
    else:
        if sock is not None:
            sock.close()
        if pool:
            await pool.release(src, None)


async def mode_rate(args):
    loop = asyncio.get_running_loop()
    sources = []
    for spec in args.src_range or []:
        sources += address_range(spec)
    if args.src:
        sources += [s.strip() for s in args.src.split(",") if s.strip()]
    if not sources:
        sources = [None]  # the kernel picks the source address
    duration = min(args.duration, args.time_limit)
    count = args.count if args.count_given else int(math.ceil(args.rate * duration))
    # No "Connection: close" even without keep-alive: the client closes first after the response, so
    # TIME_WAIT stays on the client (as in mode http).
    request = http_request(args.dst, args.port, args.path, close=False)
    pool = KeepAlivePool(args.keepalive) if args.keepalive else None
    tally = Tally()
    inflight = set()
    skipped = 0
    sent = 0
    start = loop.time()
    end = start + duration
    wall_start = time.time()
    window_start = start
    window_done = 0
    done_count = 0
    stop = asyncio.Event()

    def stopping(due):
        # The duration bounds the dispatch schedule (a late scheduler still sends every request due before
        # the end); far behind it (an overloaded host) we stop anyway.
        return due >= end or loop.time() >= end + 5.0 or (args.stop_file and os.path.exists(args.stop_file))

    async def one(i):
        nonlocal done_count
        src = sources[i % len(sources)]
        r = RequestResult(src)
        await rate_exchange(loop, args, src, pool, request, r, time.perf_counter())
        tally.add(r)
        done_count += 1

    async def progress():
        nonlocal window_start, window_done
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.progress)
                return
            except asyncio.TimeoutError:
                pass
            now = loop.time()
            emit({"event": "progress", "elapsed": round(now - start, 3), "time": round(time.time(), 3),
                  "sent": sent, "done": done_count, "inflight": len(inflight), "skipped": skipped,
                  "rate": round((done_count - window_done) / (now - window_start), 1) if now > window_start else 0,
                  "window": Tally.report(tally.window), "totals": Tally.totals(tally.run)})
            tally.window = {}
            window_start, window_done = now, done_count

    reporter = asyncio.ensure_future(progress()) if args.progress > 0 else None
    i = 0
    while i < count and not stopping(start + i / args.rate):
        due = start + i / args.rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
            continue
        if len(inflight) >= args.max_inflight:
            skipped += 1  # open loop: a slow server must not slow the offered rate down, so drop, and say so
        else:
            task = asyncio.ensure_future(one(i))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            sent += 1
        i += 1
    offered_elapsed = loop.time() - start
    if inflight:
        await asyncio.wait(set(inflight), timeout=args.timeout + 5)
    for task in list(inflight):
        task.cancel()
    stop.set()
    if reporter:
        await reporter
    if pool:
        pool.close_all()
    elapsed = loop.time() - start
    return {
        "event": "done",
        "mode": "rate",
        "dst": args.dst,
        "port": args.port,
        "path": args.path,
        "keepalive": args.keepalive,
        "sources": len([s for s in sources if s]),
        "target_rate": args.rate,
        "requested": count,
        "sent": sent,
        "done": done_count,
        "skipped": skipped,
        "unfinished": sent - done_count,
        "offered_rate": round(sent / offered_elapsed, 1) if offered_elapsed > 0 else 0.0,
        "started": round(wall_start, 3),
        "elapsed": round(elapsed, 3),
        "variants": Tally.report(tally.run),
        "totals": Tally.totals(tally.run),
        "per_source": {s: dict(sorted(v.items())) for s, v in sorted(tally.per_source.items())},
        "opened": tally.opened_report(),
    }


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["http", "udp", "long", "rate", "ports"])
    ap.add_argument("--dst", required=True, help="destination address (the VIP)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--src", help="source address to bind (one of the client's addresses)")
    ap.add_argument("--count", type=int, help="http/udp: connections or flows (default 1000); "
                                              "rate: at most this many requests (default RATE x DURATION)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--time-limit", type=float, default=120.0, help="stop starting new work after this")
    ap.add_argument("--timeout", type=float, default=5.0, help="per connection/reply timeout (udp: per try)")
    ap.add_argument("--retries", type=int, default=2, help="udp: resends after a timeout")
    ap.add_argument("--path", default="/")
    ap.add_argument("--proto", choices=["line", "http"], default="line", help="long: protocol")
    ap.add_argument("--connections", type=int, default=50, help="long: connections")
    ap.add_argument("--interval", type=float, default=0.1, help="long: seconds between messages")
    ap.add_argument("--duration", type=float, default=10.0, help="long/rate: seconds")
    ap.add_argument("--stagger", type=float, default=0.002, help="long: seconds between connection opens")
    ap.add_argument("--stop-file", help="long/rate/ports: stop early once this file exists")
    ap.add_argument("--ports", metavar="FIRST-LAST", help="ports: the source ports to reuse")
    ap.add_argument("--rounds", type=int, default=1, help="ports: rounds over the ports (0: until stopped)")
    ap.add_argument("--udp", action="store_true", help="ports: one UDP datagram per port and round")
    ap.add_argument("--rate", type=float, default=None,
                    help="rate: requests per second (open loop, default 100); ports: at most this many "
                         "connections per second (default 0: unpaced)")
    ap.add_argument("--src-range", action="append", metavar="FIRST-LAST",
                    help="rate: source addresses, used round robin (repeatable; --src may be a comma list)")
    ap.add_argument("--keepalive", type=int, default=0, metavar="K",
                    help="rate: up to K keep-alive connections per source address (0: a new connection "
                         "per request, closed by the client after the response)")
    ap.add_argument("--max-inflight", type=int, default=5000,
                    help="rate: requests in flight at most; a request due beyond it is skipped and counted")
    ap.add_argument("--progress", type=float, default=0.0, metavar="SECONDS",
                    help="rate: print a progress JSON line every SECONDS (0: none)")
    args = ap.parse_args()
    args.count_given = args.count is not None
    if args.rate is None:
        args.rate = 0.0 if args.mode == "ports" else 100.0
    if args.count is None:
        args.count = 1000
    if args.mode == "rate":
        if not args.rate > 0 or args.rate > 100000:
            ap.error("--rate must be within (0, 100000]")
        if args.count < 0 or args.keepalive < 0 or args.max_inflight < 1 or args.progress < 0:
            ap.error("--count, --keepalive, --progress must be >= 0 and --max-inflight >= 1")
        try:
            for spec in args.src_range or []:
                address_range(spec)
        except ValueError as exc:
            ap.error(str(exc))
    if args.mode == "ports":
        if not args.src or not args.ports or args.rounds < 0:
            ap.error("ports needs --src, --ports FIRST-LAST and --rounds >= 0")
        try:
            port_range(args.ports)
        except ValueError as exc:
            ap.error(str(exc))
    if args.mode == "udp" and args.timeout == 5.0:
        args.timeout = 1.0
    mode = {"http": mode_http, "udp": mode_udp, "long": mode_long, "rate": mode_rate, "ports": mode_ports}[args.mode]
    emit(asyncio.run(mode(args)))


if __name__ == "__main__":
    main()
