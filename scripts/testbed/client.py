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
http/udp print one JSON object: {"variants": {name: count}, "completed", "errors": {kind: count}, ...}.
Every mode is bounded by its count and by --time-limit.
"""
import argparse
import asyncio
import ipaddress
import json
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


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["http", "udp", "long"])
    ap.add_argument("--dst", required=True, help="destination address (the VIP)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--src", help="source address to bind (one of the client's addresses)")
    ap.add_argument("--count", type=int, default=1000, help="http/udp: connections or flows")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--time-limit", type=float, default=120.0, help="stop starting new work after this")
    ap.add_argument("--timeout", type=float, default=5.0, help="per connection/reply timeout (udp: per try)")
    ap.add_argument("--retries", type=int, default=2, help="udp: resends after a timeout")
    ap.add_argument("--path", default="/")
    ap.add_argument("--proto", choices=["line", "http"], default="line", help="long: protocol")
    ap.add_argument("--connections", type=int, default=50, help="long: connections")
    ap.add_argument("--interval", type=float, default=0.1, help="long: seconds between messages")
    ap.add_argument("--duration", type=float, default=10.0, help="long: seconds")
    ap.add_argument("--stagger", type=float, default=0.002, help="long: seconds between connection opens")
    ap.add_argument("--stop-file", help="long: stop early once this file exists")
    args = ap.parse_args()
    if args.mode == "udp" and args.timeout == 5.0:
        args.timeout = 1.0
    mode = {"http": mode_http, "udp": mode_udp, "long": mode_long}[args.mode]
    emit(asyncio.run(mode(args)))


if __name__ == "__main__":
    main()
