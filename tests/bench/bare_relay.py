"""The baseline: a bare Flask + ``requests`` relay with no auth, validation or persistence.

Run under the same gunicorn gevent settings as the service. ``BARE_RELAY_UPSTREAM`` holds the
upstream request as JSON (``url``, ``headers``, ``json``), the very one the service would send;
each POST to ``/relay`` sends it and yields the upstream's bytes unchanged.
"""
from __future__ import annotations

import json
import os

import requests
from flask import Flask, Response, request
from requests.adapters import HTTPAdapter

_UPSTREAM = json.loads(os.environ["BARE_RELAY_UPSTREAM"])

# Pooled like the service's session, so neither side pays for new upstream connections.
_session = requests.Session()
_session.mount("http://", HTTPAdapter(pool_connections=8, pool_maxsize=1024, max_retries=0))
_session.trust_env = False

app = Flask(__name__)


@app.get("/health")
def health():
    """Readiness probe."""
    return "ok"


@app.post("/relay")
def relay():
    """Send the upstream request and stream its body back chunk by chunk."""
    request.get_data()
    upstream = _session.post(_UPSTREAM["url"], json=_UPSTREAM["json"],
                             headers=_UPSTREAM["headers"], stream=True, timeout=(10, 60))

    def generate():
        """Relay chunks as they arrive; always release the upstream connection."""
        try:
            yield from upstream.iter_content(chunk_size=None)
        finally:
            upstream.close()

    return Response(generate(), status=upstream.status_code,
                    content_type=upstream.headers.get("Content-Type"))
