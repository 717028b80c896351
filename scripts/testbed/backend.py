#!/usr/bin/env python3
"""One testbed backend (Python 3 stdlib only): the servers of one variant, in one asyncio loop.

  HTTP/1.1 on --http-port (8080), IPv4 and IPv6: a model-server stand-in.
      Model requests (GET/HEAD/POST of any path but the ones below) answer "<variant>\\n" with the headers
      X-Variant and, when a prediction distribution is set, X-Prediction: <class>; GET /predict answers
      {"variant": ..., "class": ...} instead. Keep-alive is supported, so a client may close first and keep
      TIME_WAIT on its side. Knobs (model.py): added latency (fixed or a distribution), shares of 500
      answers and of TCP resets, the prediction label distribution; all off by default.
      GET /stats      JSON counts (per client address; "model" has 200/500/reset counts)
      GET /metrics    Prometheus text: model_requests_total{code}, model_resets_total,
                      model_predictions_total{class}, model_request_duration_seconds (histogram)
      GET /control    the current knobs as JSON
      GET /control?KEY=VALUE&...   or   POST /control with a JSON object {KEY: VALUE, ...}:
                      change knobs at run time (for new requests); answers {"ok": true, "knobs": {...}},
                      or 400 {"ok": false, "error": ...} and nothing changed. KEYs: latency ("fixed:50",
                      "normal:50:5", "lognormal:50:0.3", "uniform:20:80", "none"), latency_ms, error_rate,
                      reset_rate, latency_clients ("10.0.3.0/24,fd00:3::/64": the added latency only for
                      the clients whose peer address is inside one of these prefixes, IPv4-mapped IPv6 peers
                      as IPv4; "all", the default: every client; errors and resets still apply to all),
                      predictions ("cat:0.7,dog:0.3" or a JSON object), reset (true: all off first). Same
                      knobs at start: --latency --latency-clients --error-rate --reset-rate --predictions.
      e.g. ip netns exec P-canary curl -s '127.0.0.1:8080/control?latency=fixed:300&error_rate=0.02'
           ip netns exec P-canary curl -s '127.0.0.1:8080/control?latency=fixed:300&latency_clients=10.0.3.0/24'
           ip netns exec P-canary curl -s -XPOST 127.0.0.1:8080/control -d '{"reset": true}'
      (or scripts/testbed/control.py --prefix P --variant canary latency=fixed:300)
  UDP echo on --udp-port (9000): answers "<variant> <payload>".
  TCP line echo on --echo-port (7000): answers "<variant> <line>" for each line (long-lived connections).

Counts are kept per client address so test cases that use distinct client addresses can read their own
numbers. Requests from loopback (the /stats reader) are not counted there; /metrics counts every model
request.
"""
import argparse
import asyncio
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import time
import urllib.parse

import model

MAX_BODY = 1 << 20
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST and drops unsent data


class Counter:
    def __init__(self, *fields):
        self.fields = fields
        self.total = {f: 0 for f in fields}
        self.clients = {}

    def add(self, client, field, n=1):
        self.total[field] += n
        per = self.clients.get(client)
        if per is None:
            per = self.clients[client] = {f: 0 for f in self.fields}
        per[field] += n

    def as_json(self):
        out = dict(self.total)
        out["clients"] = self.clients
        return out


def peer_address(peer):
    """Peer tuple -> canonical address text (an IPv4-mapped IPv6 peer as its IPv4 address, no zone)."""
    addr = ipaddress.ip_address(peer[0].split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def client_address(peer):
    """Peer tuple -> canonical address text; None for loopback (not counted)."""
    text = peer_address(peer)
    return None if ipaddress.ip_address(text).is_loopback else text


class Backend:
    def __init__(self, variant, knobs=None, seed=None):
        self.variant = variant
        self.knobs = knobs or model.Knobs()
        self.rng = model.make_rng(seed)
        self.outcomes = model.OutcomeSequence(self.rng)
        self.metrics = model.ModelMetrics(variant)
        self.model = Counter("ok", "errors", "injected_resets")
        self.http = Counter("connections", "requests", "resets")
        self.echo = Counter("connections", "lines", "resets")
        self.udp = Counter("datagrams")
        self.body = (variant + "\n").encode()

    def stats(self):
        return {
            "variant": self.variant,
            "pid": os.getpid(),
            "connections": self.http.total["connections"],
            "requests": self.http.total["requests"],
            "clients": self.http.clients,
            "http": self.http.as_json(),
            "echo": self.echo.as_json(),
            "udp": self.udp.as_json(),
            "model": self.model.as_json(),
            "knobs": self.knobs.as_json(),
        }

    def response(self, status, body, content_type, close, extra="", length=None):
        head = (
            f"HTTP/1.1 {status}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n"
            f"X-Variant: {self.variant}\r\n"
            + extra
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        return head.encode() + body

    def control(self, method, query, body):
        """GET /control[?changes] or POST /control {changes} -> (status, JSON answer)."""
        try:
            if method == "POST":
                try:
                    changes = json.loads(body.decode() or "{}")
                except (UnicodeDecodeError, ValueError) as exc:
                    raise ValueError(f"body is not JSON: {exc}") from None
            elif method == "GET":
                pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
                changes = {}
                for k, v in pairs:
                    if k in changes:
                        raise ValueError(f"{k} given twice")
                    changes[k] = v
            else:
                return "405 Method Not Allowed", {"ok": False, "error": "use GET or POST"}
            if changes:
                self.knobs = self.knobs.updated(changes)
                print(f"backend {self.variant}: knobs {json.dumps(self.knobs.as_json())}", file=sys.stderr,
                      flush=True)
            return "200 OK", {"ok": True, "variant": self.variant, "knobs": self.knobs.as_json()}
        except ValueError as exc:
            return "400 Bad Request", {"ok": False, "variant": self.variant, "error": str(exc),
                                       "knobs": self.knobs.as_json()}

    async def model_request(self, writer, client, peer, method, path, close, started):
        """One model request: the drawn latency (if latency_clients takes in PEER, the peer's address), then
        200 (with a prediction), 500 or a reset. CLIENT is the counting key (None: loopback, not counted).
        Returns False when the connection was reset (nothing more to do on it)."""
        knobs = self.knobs  # the knobs current when the request arrived
        if knobs.latency.dist != "none" and knobs.latency_applies_to(peer):
            delay = knobs.latency.draw(self.rng)
            if delay > 0:
                await asyncio.sleep(delay)
        u = self.outcomes.next() if knobs.active else 1.0
        if u < knobs.reset_rate:
            self.metrics.reset_sent()
            if client is not None:
                self.model.add(client, "injected_resets")
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            writer.transport.abort()
            return False
        if u < knobs.reset_rate + knobs.error_rate:
            body = b"injected error\n"
            if path == "/predict":
                body = json.dumps({"variant": self.variant, "error": "injected"}).encode()
            writer.write(self.response("500 Internal Server Error", b"" if method == "HEAD" else body,
                                       "text/plain", close, length=len(body)))
            self.metrics.answered("500", time.monotonic() - started)
            if client is not None:
                self.model.add(client, "errors")
            return True
        predicted = knobs.draw_class(self.rng)
        extra = f"X-Prediction: {predicted}\r\n" if predicted is not None else ""
        if path == "/predict":
            body, ctype = json.dumps({"variant": self.variant, "class": predicted}).encode(), "application/json"
        else:
            body, ctype = self.body, "text/plain"
        writer.write(self.response("200 OK", b"" if method == "HEAD" else body, ctype, close, extra,
                                   length=len(body)))
        self.metrics.answered("200", time.monotonic() - started, predicted)
        if client is not None:
            self.model.add(client, "ok")
        return True

    async def serve_http(self, reader, writer):
        peername = writer.get_extra_info("peername")
        peer, client = peer_address(peername), client_address(peername)
        if client is not None:
            self.http.add(client, "connections")
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # client closed (between requests: the normal end of a keep-alive connection)
                except asyncio.LimitOverrunError:
                    writer.write(self.response("431 Request Header Fields Too Large", b"", "text/plain", True))
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split()
                if len(parts) != 3:
                    writer.write(self.response("400 Bad Request", b"bad request line\n", "text/plain", True))
                    return
                method, path, version = parts
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                started = time.monotonic()
                try:
                    length = int(headers.get("content-length", "0") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    writer.write(self.response("400 Bad Request", b"bad content-length\n", "text/plain", True))
                    return
                try:
                    body = await reader.readexactly(length) if length else b""
                except asyncio.IncompleteReadError:
                    return  # closed inside the request body
                conn_hdr = headers.get("connection", "").lower()
                close = conn_hdr == "close" or (version == "HTTP/1.0" and conn_hdr != "keep-alive")
                path, _, query = path.partition("?")
                if path == "/stats":
                    body = json.dumps(self.stats()).encode()
                    writer.write(self.response("200 OK", body, "application/json", close))
                elif path == "/metrics":
                    body = self.metrics.exposition(self.knobs)
                    writer.write(self.response("200 OK", body, "text/plain; version=0.0.4; charset=utf-8", close))
                elif path == "/control":
                    status, answer = self.control(method, query, body)
                    writer.write(self.response(status, (json.dumps(answer) + "\n").encode(), "application/json",
                                               close))
                elif method in ("GET", "HEAD", "POST"):
                    if client is not None:
                        self.http.add(client, "requests")
                    if not await self.model_request(writer, client, peer, method, path, close, started):
                        return
                else:
                    writer.write(self.response("405 Method Not Allowed", b"", "text/plain", True))
                    close = True
                await writer.drain()
                if close:
                    return
        except (ConnectionResetError, BrokenPipeError):
            if client is not None:
                self.http.add(client, "resets")
        finally:
            writer.close()

    async def serve_echo(self, reader, writer):
        client = client_address(writer.get_extra_info("peername"))
        if client is not None:
            self.echo.add(client, "connections")
        prefix = (self.variant + " ").encode()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if client is not None:
                    self.echo.add(client, "lines")
                if not line.endswith(b"\n"):
                    line += b"\n"
                writer.write(prefix + line)
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            if client is not None:
                self.echo.add(client, "resets")
        finally:
            writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, backend):
        self.backend = backend
        self.prefix = (backend.variant + " ").encode()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        client = client_address(addr)
        if client is not None:
            self.backend.udp.add(client, "datagrams")
        self.transport.sendto(self.prefix + data, addr)


def udp_socket(family, port):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::", port))
    else:
        sock.bind(("0.0.0.0", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--http-port", type=int, default=8080)
    ap.add_argument("--udp-port", type=int, default=9000)
    ap.add_argument("--echo-port", type=int, default=7000)
    ap.add_argument("--pid-file", help="written once every socket is bound")
    ap.add_argument("--latency", help="added latency: none | fixed:MS | normal:MEAN:STDDEV | "
                                      "lognormal:MEDIAN_MS:SIGMA | uniform:MIN:MAX (ms)")
    ap.add_argument("--latency-clients", help='the clients the added latency applies to: comma-separated '
                                              'prefixes, e.g. "10.0.3.0/24,fd00:3::/64" (default: all)')
    ap.add_argument("--error-rate", help="share of model requests answered 500 (0..1)")
    ap.add_argument("--reset-rate", help="share of model requests answered with a TCP reset (0..1)")
    ap.add_argument("--predictions", help='prediction label distribution, e.g. "cat:0.7,dog:0.3"')
    ap.add_argument("--seed", type=int, help="seed of the random draws (default: from the OS)")
    args = ap.parse_args()
    start_knobs = {k: v for k, v in (("latency", args.latency), ("latency_clients", args.latency_clients),
                                     ("error_rate", args.error_rate), ("reset_rate", args.reset_rate),
                                     ("predictions", args.predictions))
                   if v is not None}
    try:
        knobs = model.Knobs().updated(start_knobs) if start_knobs else model.Knobs()
    except ValueError as exc:
        ap.error(str(exc))

    backend = Backend(args.variant, knobs, args.seed)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # host=None binds 0.0.0.0 and :: (asyncio sets IPV6_V6ONLY on the latter).
    http = await asyncio.start_server(backend.serve_http, host=None, port=args.http_port,
                                      reuse_address=True, backlog=4096)
    echo = await asyncio.start_server(backend.serve_echo, host=None, port=args.echo_port,
                                      reuse_address=True, backlog=4096)
    udp = []
    for family in (socket.AF_INET, socket.AF_INET6):
        transport, _ = await loop.create_datagram_endpoint(lambda: UdpEcho(backend),
                                                           sock=udp_socket(family, args.udp_port))
        udp.append(transport)

    if args.pid_file:
        tmp = args.pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.rename(tmp, args.pid_file)
    print(f"backend {args.variant}: http :{args.http_port} udp :{args.udp_port} echo :{args.echo_port} "
          f"knobs {json.dumps(knobs.as_json())}", file=sys.stderr, flush=True)

    await stop.wait()
    http.close()
    echo.close()
    for t in udp:
        t.close()
    if args.pid_file:
        try:
            os.unlink(args.pid_file)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
