"""LOG_FORMAT=json under gunicorn: every line on stderr, gunicorn's own and the app's, is one
JSON object; the requests' lines carry the request id the client sent."""
from __future__ import annotations

import json
import subprocess
from functools import partial

import pytest
import requests

from . import server as server_module
from .server import Gunicorn

pytestmark = pytest.mark.slow


def test_every_line_is_json(migrated, tmp_path, monkeypatch):
    """Start, requests (one with X-Request-ID, one 404), stop: all lines parse as JSON."""
    stderr = open(tmp_path / "stderr.log", "w+")
    monkeypatch.setattr(server_module.subprocess, "Popen",
                        partial(subprocess.Popen, stderr=stderr))
    server = Gunicorn({"DATABASE_URL": migrated, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
    try:
        response = requests.get(server.base_url + "/api/models",
                                headers={"X-Request-ID": "trace-42"}, timeout=10)
        assert response.headers["X-Request-ID"] == "trace-42"
        assert requests.get(server.base_url + "/nothing/here", timeout=10).status_code == 404
    finally:
        server.stop()
    stderr.seek(0)
    lines = [line for line in stderr.read().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    messages = [entry["message"] for entry in parsed]
    assert any(m.startswith("Starting gunicorn") for m in messages)
    assert any(m.startswith("Booting worker") for m in messages)
    ours = [e for e in parsed if e["logger"] == "neptun_flask.requests"]
    assert {"method": "GET", "route": "/api/models", "status": 200,
            "request_id": "trace-42"}.items() <= ours[-2].items()
    assert ours[-1]["route"] == "<unmatched>" and ours[-1]["status"] == 404
    assert "/nothing/here" not in "\n".join(lines)
