"""A plain ASGI app (no framework) with the shared routes, served by
hypercorn, which also accepts HTTP/2 over cleartext (prior knowledge and
`Upgrade: h2c`). Every executed handler appends one JSON line to the record
log and answers 200 with that record.

usage: RECORD_LOG=<log> hypercorn --bind 127.0.0.1:<port> asgi_app:app
"""

import json
import os

from plain_routes import build_record


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
    rec = build_record(
        "hypercorn",
        scope["method"],
        scope["path"],
        headers,
        scope["query_string"].decode("latin-1"),
        body,
    )
    rec["http_version"] = scope.get("http_version")
    with open(os.environ["RECORD_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    out = json.dumps(rec).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": out})
