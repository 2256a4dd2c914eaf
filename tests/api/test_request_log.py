"""One log line per request (method, route rule, status, duration, request id) and nothing a
user sent; X-Request-ID accepted when plain and short, else replaced, and returned on every
response; LOG_FORMAT=json lines."""
from __future__ import annotations

import json
import logging

import pytest

from neptun_flask import logs
from neptun_flask.config import load_config
from tests.api.test_upstream_errors import Upstream
from tests.conftest import sign_up

EMAIL = "log.person@example.com"
PASSWORD = "a password to hide"


@pytest.fixture
def request_logs(caplog):
    """The request log's records."""
    caplog.set_level(logging.INFO, logger="neptun_flask.requests")
    return lambda: [r for r in caplog.records if r.name == "neptun_flask.requests"]


def test_one_line_per_request_with_route_rule(client, request_logs):
    """A request's one line names its route rule (not the path with ids), status, duration
    and the id returned in X-Request-ID; the user's email, password, cookie and body are in
    none of them."""
    user_id = sign_up(client, EMAIL, PASSWORD)
    response = client.get(f"/api/users/{user_id}/chats?order=desc")
    records = request_logs()
    assert len(records) == 2
    last = records[-1]
    assert (last.method, last.route, last.status) == ("GET", "/api/users/<int:user_id>/chats",
                                                      200)
    assert isinstance(last.duration_ms, float) and last.duration_ms >= 0
    assert last.request_id == response.headers["X-Request-ID"]
    assert records[0].route == "/api/auth/sign-up" and records[0].status == 201
    text = "\n".join(r.getMessage() for r in records)
    cookie = client.get_cookie("neptun-session").value
    for leak in (EMAIL, PASSWORD, cookie, f"/users/{user_id}", "order=desc"):
        assert leak not in text


def test_errors_are_logged_with_their_status(client, request_logs):
    """A 404 (no route) and a 401 are one line each; an unmatched path is not logged."""
    assert client.get("/no/such/path/4242").status_code == 404
    assert client.get("/api/auth/session").status_code == 401
    first, second = request_logs()
    assert (first.route, first.status) == ("<unmatched>", 404)
    assert (second.route, second.status) == ("/api/auth/session", 401)
    assert "4242" not in first.getMessage()


@pytest.mark.parametrize("sent", ["3f2b9c1e-8c1a-4e7b-9a52-0c2d5f6e7a81", "Root=1-67891233-abc",
                                  "abc.DEF_123:xyz"])
def test_plain_request_id_is_kept(client, sent, request_logs):
    """A short, plain X-Request-ID is returned and logged as sent."""
    response = client.get("/health", headers={"X-Request-ID": sent})
    assert response.headers["X-Request-ID"] == sent
    assert request_logs()[-1].request_id == sent


@pytest.mark.parametrize("sent", ["a" * 129, "two words", "<script>", "id\" status=200",
                                  "é-accent", ""])
def test_unsafe_request_id_is_replaced(client, sent):
    """Too long, spaces, quotes, markup, non-ASCII or empty: a new id instead."""
    response = client.get("/api/models", headers={"X-Request-ID": sent})
    rid = response.headers["X-Request-ID"]
    assert rid != sent and len(rid) == 32 and int(rid, 16) >= 0


def test_every_response_has_a_request_id(client):
    """Success, JSON errors (404, 405, 415) all carry one; each request its own."""
    responses = [client.get("/health"), client.get("/nope"), client.delete("/health"),
                 client.post("/api/auth/login", data="x", content_type="text/plain")]
    ids = [r.headers.get("X-Request-ID") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)


NDJSON = ('{"model":"m","message":{"role":"assistant","content":"Hello"},"done":false}\n'
          '{"model":"m","message":{"role":"assistant","content":""},"done":true,'
          '"done_reason":"stop","prompt_eval_count":3,"eval_count":1}\n')


def test_streamed_response_is_logged_when_it_ends(app_factory, request_logs):
    """A streamed reply's line is written once the stream is closed, with its request id."""
    upstream = Upstream()
    upstream.answer(200, NDJSON, "application/x-ndjson")
    client = app_factory(OLLAMA_BASE_URL=upstream.url).test_client()
    sign_up(client)
    response = client.post("/api/ai/ollama/rwkv-6-world/chat?chat_id=-1",
                           json={"messages": [{"role": "user", "content": "Hi"}]},
                           buffered=False)
    assert response.status_code == 200
    assert [r.route for r in request_logs()] == ["/api/auth/sign-up"]
    assert b"Hello" in response.get_data()
    response.close()
    last = request_logs()[-1]
    assert last.route.endswith("/chat") and last.request_id == response.headers["X-Request-ID"]
    upstream.server.shutdown()


def test_json_lines():
    """LOG_FORMAT=json: a record is one JSON object with its fields, a traceback included."""
    assert load_config({"LOG_FORMAT": "JSON"})["LOG_FORMAT"] == "json"
    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        load_config({"LOG_FORMAT": "xml"})
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("neptun_flask.requests", logging.ERROR, __file__, 1,
                                   "GET %s", ("/health",), sys.exc_info())
    record.request_id = "abc"
    line = logs.json_formatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "GET /health" and parsed["level"] == "ERROR"
    assert parsed["logger"] == "neptun_flask.requests" and parsed["request_id"] == "abc"
    assert "ValueError: boom" in parsed["exc_info"]
