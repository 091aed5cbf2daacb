"""The Flask app of flask_app.py deployed the way Werkzeug's documentation
says an app behind one reverse proxy should be: wrapped in ProxyFix, which
trusts one hop of X-Forwarded-For, -Proto, -Host, -Port and -Prefix. What
Flask then believes (client address, scheme, host, URL root) is whatever
that one hop, the gateway, sent; each record carries it.

python flask_proxyfix.py <port> <record-log>
"""

import sys

from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import run_simple

import flask_app

flask_app.app.wsgi_app = ProxyFix(
    flask_app.app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1
)

if __name__ == "__main__":
    flask_app.SERVER = "flask-proxyfix"
    flask_app.LOG = sys.argv[2]
    run_simple("127.0.0.1", int(sys.argv[1]), flask_app.app, threaded=True)
