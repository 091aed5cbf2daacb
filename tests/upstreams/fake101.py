"""A hostile upstream: it answers the first request on every connection
with `101 Switching Protocols` + `Upgrade: websocket` but a wrong
Sec-WebSocket-Accept (missing when the request had no key), and then keeps
reading plain HTTP/1.1 requests on the same connection, executing and
recording each with the shared route table (so `DELETE /admin/users/bob`
sent inside the "tunnel" records `user.delete`) and answering 200 JSON.

usage: python fake101.py <port> <record-log>
"""

import json
import socket
import socketserver
import sys

from plain_routes import build_record

LOG = None


class Handler(socketserver.StreamRequestHandler):
    def read_request(self):
        line = self.rfile.readline(65536)
        while line in (b"\r\n", b"\n"):
            line = self.rfile.readline(65536)
        if not line:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            return None
        method, target, _version = parts
        headers = []
        while True:
            h = self.rfile.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        hd = dict(headers)
        body = b""
        if "chunked" in hd.get("transfer-encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        elif hd.get("content-length", "").isdigit():
            body = self.rfile.read(int(hd["content-length"]))
        path, _, query = target.partition("?")
        return method, path, headers, query, body

    def handle(self):
        first = True
        while True:
            try:
                req = self.read_request()
            except (OSError, ValueError):
                return
            if req is None:
                return
            rec = build_record("fake101", *req)
            rec["tunnelled"] = not first
            with open(LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            if first:
                key = rec["headers"].get("sec-websocket-key")
                accept = b"Sec-WebSocket-Accept: bm90LXRoZS1yaWdodC1rZXk=\r\n" if key else b""
                self.wfile.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\n" + accept + b"\r\n"
                )
                first = False
            else:
                out = json.dumps(rec).encode()
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(out)).encode() + b"\r\n\r\n" + out
                )
            self.wfile.flush()
            if rec["headers"].get("connection", "").lower() == "close":
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    LOG = sys.argv[2]
    with Server(("127.0.0.1", int(sys.argv[1])), Handler) as srv:
        srv.serve_forever()
