#!/usr/bin/env python3
"""One testbed backend (Python 3 stdlib only): the servers of one variant, in one asyncio loop.

  HTTP/1.1 on --http-port (8080), IPv4 and IPv6: any GET answers "<variant>\\n" (keep-alive supported, so
      a client may close first and keep TIME_WAIT on its side); GET /stats answers JSON counts.
  UDP echo on --udp-port (9000): answers "<variant> <payload>".
  TCP line echo on --echo-port (7000): answers "<variant> <line>" for each line (long-lived connections).

Counts are kept per client address so test cases that use distinct client addresses can read their own
numbers. Requests from loopback (the /stats reader) are not counted.
"""
import argparse
import asyncio
import ipaddress
import json
import os
import signal
import socket
import sys


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


def client_address(peer):
    """Peer tuple -> canonical address text; None for loopback (not counted)."""
    host = peer[0]
    addr = ipaddress.ip_address(host.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return None
    return str(addr)


class Backend:
    def __init__(self, variant):
        self.variant = variant
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
        }

    def response(self, status, body, content_type, close):
        head = (
            f"HTTP/1.1 {status}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Variant: {self.variant}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        return head.encode() + body

    async def serve_http(self, reader, writer):
        client = client_address(writer.get_extra_info("peername"))
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
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                conn_hdr = headers.get("connection", "").lower()
                close = conn_hdr == "close" or (version == "HTTP/1.0" and conn_hdr != "keep-alive")
                if path == "/stats":
                    body = json.dumps(self.stats()).encode()
                    writer.write(self.response("200 OK", body, "application/json", close))
                elif method in ("GET", "HEAD", "POST"):
                    if client is not None:
                        self.http.add(client, "requests")
                    body = self.body if method != "HEAD" else b""
                    writer.write(self.response("200 OK", body, "text/plain", close))
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
    args = ap.parse_args()

    backend = Backend(args.variant)
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
    print(f"backend {args.variant}: http :{args.http_port} udp :{args.udp_port} echo :{args.echo_port}",
          file=sys.stderr, flush=True)

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
