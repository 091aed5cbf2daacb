"""The route table for the apps without a framework router (asgi_app.py,
fake101.py), written the way a hand-rolled app would: exact, case-sensitive
regexes on the decoded path, the method override header, the standard
library's query, cookie and JSON parsers."""

import json
import re
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl

OVERRIDABLE = frozenset(["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"])


def handler_for(method, path, host, query):
    if host == "admin.example":
        return "admin.vhost"
    if method == "DELETE" and re.fullmatch(r"/admin/users/[^/]+", path):
        return "user.delete"
    if method == "POST" and re.fullmatch(r"/admin/users/[^/]+/delete", path):
        return "user.delete"
    if path == "/admin/sql/run":
        return "sql.run"
    if method == "POST" and path == "/api/transfers":
        return "transfer"
    if re.fullmatch(r"/api/items/[^/]+", path):
        if method == "DELETE":
            return "item.delete"
        if method == "POST":
            return "item.update"
    if method == "GET" and path == "/legacy":
        return "legacy.delete" if query.get("action") == "delete" else "legacy.view"
    return "other"


def strip_port(host):
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.split(":")[0]


def parse_query(raw):
    # dict() over parse_qsl: the last value of a repeated name wins.
    return dict(parse_qsl(raw, keep_blank_values=True))


def parse_body(content_type, body):
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            return None
    if ctype == "application/x-www-form-urlencoded":
        return parse_query(body.decode("latin-1"))
    return body.decode("latin-1") if body else None


def session_of(cookie_header):
    if cookie_header is None:
        return None
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get("SESSIONID")
    return morsel.value if morsel is not None else None


def build_record(server, method, path, headers, query_string, body):
    """headers: list of (lowercase name, value). Applies the method override."""
    hdict = {}
    for k, v in headers:
        hdict[k] = hdict[k] + ", " + v if k in hdict else v
    override = hdict.get("x-http-method-override", "").upper()
    if override in OVERRIDABLE:
        method = override
    host = strip_port(hdict.get("host", ""))
    query = parse_query(query_string)
    return {
        "server": server,
        "handler": handler_for(method, path, host, query),
        "method": method,
        "path": path,
        "host": host,
        "query": query,
        "body": parse_body(hdict.get("content-type", ""), body),
        "session": session_of(hdict.get("cookie")),
        "assertion": hdict.get("x-stepup-assertion"),
        "headers": hdict,
    }
