"""A plain Flask app as a real admin would write it: Werkzeug's router,
request.form / request.get_json as Flask picks them by content type, and
the usual WSGI method-override middleware from the Flask snippets. Every
executed handler appends one JSON line to the record log and answers 200
with that record.

Werkzeug server:  python flask_app.py <port> <record-log>
gunicorn:         RECORD_LOG=<log> gunicorn -b 127.0.0.1:<port> flask_app:app
"""

import json
import os
import sys

from flask import Flask, jsonify, request

SERVER = os.environ.get("RECORD_SERVER", "flask")
LOG = os.environ.get("RECORD_LOG")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]


class HTTPMethodOverrideMiddleware:
    """The Flask snippet "HTTP Method Overrides" (X-HTTP-Method-Override)."""

    allowed_methods = frozenset(["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"])
    bodyless_methods = frozenset(["GET", "HEAD", "OPTIONS", "DELETE"])

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        method = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").upper()
        if method in self.allowed_methods:
            environ["REQUEST_METHOD"] = method
        if method in self.bodyless_methods:
            environ["CONTENT_LENGTH"] = "0"
        return self.app(environ, start_response)


app = Flask(__name__)
app.wsgi_app = HTTPMethodOverrideMiddleware(app.wsgi_app)


def parsed_body():
    if request.is_json:
        return request.get_json(silent=True)
    # What handler code reads as request.form[name]: the first value.
    return {k: request.form[k] for k in request.form}


def record(handler):
    rec = {
        "server": SERVER,
        "handler": handler,
        "method": request.method,
        "path": request.path,
        "host": request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host,
        "query": {k: request.args[k] for k in request.args},
        "body": parsed_body(),
        "session": request.cookies.get("SESSIONID"),
        "assertion": request.headers.get("X-StepUp-Assertion"),
        "headers": dict(request.headers),
        # What the app believes about the client and its own URL; behind
        # ProxyFix (flask_proxyfix.py) these come from X-Forwarded-*.
        "remote_addr": request.remote_addr,
        "scheme": request.scheme,
        "host_port": request.host,
        "url_root": request.url_root,
        "peer": request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR", request.remote_addr),
    }
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    return jsonify(rec), 200


@app.before_request
def admin_vhost():
    if request.host.split(":")[0] == "admin.example":
        return record("admin.vhost")
    return None


@app.route("/admin/users/<name>", methods=["DELETE"])
def user_delete(name):
    return record("user.delete")


@app.route("/admin/users/<name>/delete", methods=["POST"])
def user_delete_post(name):
    return record("user.delete")


@app.route("/admin/sql/run", methods=ALL_METHODS)
def sql_run():
    return record("sql.run")


@app.route("/api/transfers", methods=["POST"])
def transfer():
    return record("transfer")


@app.route("/api/items/<item_id>", methods=["DELETE"])
def item_delete(item_id):
    return record("item.delete")


@app.route("/api/items/<item_id>", methods=["POST"])
def item_update(item_id):
    return record("item.update")


@app.route("/legacy", methods=["GET"])
def legacy():
    return record("legacy.delete" if request.args.get("action") == "delete" else "legacy.view")


@app.errorhandler(404)
@app.errorhandler(405)
def other(_err):
    return record("other")


if __name__ == "__main__":
    from werkzeug.serving import run_simple

    LOG = sys.argv[2]
    run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
