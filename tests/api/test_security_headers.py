"""Security headers on every response: nosniff, no referrer, HSTS when cookies are Secure,
no-store on authenticated JSON (a stream keeps its no-cache)."""
from __future__ import annotations

import pytest

from tests.api.test_request_log import NDJSON
from tests.api.test_upstream_errors import Upstream
from tests.conftest import sign_up


def responses(client):
    """A spread of responses: public, errors, authenticated JSON, a 204."""
    out = {"health": client.get("/health"), "catalog": client.get("/api/models"),
           "404": client.get("/nope"), "401": client.get("/api/auth/session")}
    user_id = sign_up(client)
    out["sign-up"] = client.post("/api/auth/login", json={"email": "user@example.com",
                                                          "password": "correct horse"})
    out["chats"] = client.get(f"/api/users/{user_id}/chats")
    out["403"] = client.get(f"/api/users/{user_id + 1}/chats")
    out["logout"] = client.post("/api/auth/logout")
    return out


def test_every_response_has_nosniff_and_referrer_policy(client):
    """Success, errors and 204s all carry both."""
    for name, response in responses(client).items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["Referrer-Policy"] == "no-referrer", name


def test_authenticated_json_is_no_store(client):
    """JSON for a logged-in user (and the login that hands out the cookie) is never stored by
    a cache; the public catalog and health may be."""
    got = responses(client)
    for name in ("sign-up", "chats", "403"):
        assert got[name].headers["Cache-Control"] == "no-store", name
    for name in ("health", "catalog", "404"):
        assert "no-store" not in got[name].headers.get("Cache-Control", ""), name


@pytest.mark.parametrize(("secure", "expected"), [(True, True), (False, False)])
def test_hsts_follows_secure_cookies(app_factory, secure, expected):
    """HSTS only when the session cookie is Secure (the service is behind TLS)."""
    client = app_factory(SESSION_COOKIE_SECURE=secure).test_client()
    for response in (client.get("/health"), client.get("/nope")):
        assert ("Strict-Transport-Security" in response.headers) is expected
        if expected:
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_stream_keeps_no_cache(app_factory):
    """A streamed reply keeps its own Cache-Control: no-cache, with the other headers."""
    upstream = Upstream()
    upstream.answer(200, NDJSON, "application/x-ndjson")
    client = app_factory(OLLAMA_BASE_URL=upstream.url).test_client()
    sign_up(client)
    response = client.post("/api/ai/ollama/rwkv-6-world/chat?chat_id=-1",
                           json={"messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    upstream.server.shutdown()
