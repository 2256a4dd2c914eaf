"""Cross-origin front ends: CORS_ORIGINS with credentials (preflights answered before any
auth, the headers a client reads exposed), other origins without CORS headers; and
cookie-authenticated writes from a foreign Origin refused (CSRF defence in depth)."""
from __future__ import annotations

import pytest

from neptun_flask.config import load_config
from tests.api.helpers import MODEL, assert_error, create_chat
from tests.conftest import sign_up

FRONT = "https://chat.example.com"
EVIL = "https://evil.example.net"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type, idempotency-key"}


@pytest.fixture
def cors_client(app_factory):
    """A client of an app allowing one front end."""
    return app_factory(CORS_ORIGINS=[FRONT]).test_client()


def test_cors_origins_setting():
    """Comma-separated, blanks and trailing slashes dropped; none by default."""
    assert load_config({})["CORS_ORIGINS"] == []
    assert load_config({"CORS_ORIGINS": " https://a.example/, http://localhost:3000 ,"})[
        "CORS_ORIGINS"] == ["https://a.example", "http://localhost:3000"]


@pytest.mark.parametrize("path", ["/api/ai/ollama/rwkv-6-world/chat", "/api/users/1/chats",
                                  "/api/auth/login", "/v1/chat/completions"])
def test_preflight_from_allowed_origin(cors_client, path):
    """Answered 200/204 without a session, with credentials allowed and the asked headers."""
    response = cors_client.options(path, headers={"Origin": FRONT, **PREFLIGHT})
    assert response.status_code in (200, 204)
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == FRONT
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "idempotency-key" in headers["Access-Control-Allow-Headers"].lower()


def test_preflight_from_other_origin_has_no_cors_headers(cors_client):
    """Another origin's preflight gets no Access-Control-* headers (the browser stops)."""
    response = cors_client.options("/api/users/1/chats", headers={"Origin": EVIL, **PREFLIGHT})
    assert not [h for h in response.headers.keys() if h.startswith("Access-Control-")]


def test_actual_responses_expose_client_headers(cors_client):
    """A response to the allowed origin, errors too, lets the client read the headers it
    needs; another origin's gets no CORS headers."""
    for response in (cors_client.get("/api/models", headers={"Origin": FRONT}),
                     cors_client.get("/api/auth/session", headers={"Origin": FRONT})):
        assert response.headers["Access-Control-Allow-Origin"] == FRONT
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        exposed = {h.strip().lower() for h in
                   response.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"x-vercel-ai-data-stream", "x-vercel-ai-ui-message-stream", "retry-after",
                "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
                "x-ratelimit-reset"} <= exposed
    other = cors_client.get("/api/models", headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_no_cors_by_default(client):
    """Without CORS_ORIGINS no origin gets CORS headers."""
    response = client.get("/api/models", headers={"Origin": FRONT})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cookie_write_from_foreign_origin_is_refused(cors_client):
    """POST/PATCH/DELETE with the session cookie and a foreign Origin: 403, nothing done;
    from the allowed origin, the service's own, or without an Origin: done."""
    user_id = sign_up(cors_client)
    chat = create_chat(cors_client, user_id)
    path = f"/api/users/{user_id}/chats"
    for method, url, body in (("POST", path, {"model": chat["model"], "name": "x"}),
                              ("PATCH", f"{path}/{chat['id']}", {"name": "renamed"}),
                              ("DELETE", f"{path}/{chat['id']}", None)):
        for origin in (EVIL, "null", "https://chat.example.com.evil.net"):
            response = cors_client.open(url, method=method, json=body,
                                        headers={"Origin": origin})
            assert_error(response, 403, "Cross-origin request refused")
    assert_error(cors_client.post("/api/auth/logout", headers={"Origin": EVIL}), 403)
    assert len(cors_client.get(path).get_json()["chats"]) == 1
    assert cors_client.get(f"{path}/{chat['id']}").get_json()["chat"]["name"] == chat["name"]
    body = {"name": "renamed"}
    assert cors_client.patch(f"{path}/{chat['id']}", json=body,
                             headers={"Origin": FRONT}).status_code == 200
    assert cors_client.patch(f"{path}/{chat['id']}", json=body,
                             headers={"Origin": "http://localhost"}).status_code == 200
    assert cors_client.patch(f"{path}/{chat['id']}", json=body).status_code == 200


def test_own_origin_behind_a_proxy(client):
    """The service's own origin as the proxy forwarded it (X-Forwarded-Host) is not foreign;
    without a CORS allow-list a foreign origin is refused all the same."""
    user_id = sign_up(client)
    ok = client.post(f"/api/users/{user_id}/chats", json={"model": MODEL, "name": "proxied chat"},
                     headers={"Origin": "https://chat.example.org",
                              "X-Forwarded-Host": "chat.example.org"})
    assert ok.status_code == 201
    assert_error(client.post(f"/api/users/{user_id}/chats", json={"model": MODEL, "name": "proxied chat"},
                             headers={"Origin": FRONT}), 403)


def test_bearer_and_cookieless_requests_are_not_checked(client):
    """Without the session cookie (sign-up, an API client) or with a Bearer key, the Origin
    is not the question: the request goes on to its own authentication."""
    response = client.post("/api/auth/sign-up", json={"email": "o@example.com",
                                                      "password": "correct horse"},
                           headers={"Origin": EVIL})
    assert response.status_code == 201
    response = client.post("/v1/chat/completions", json={"model": "x", "messages": []},
                           headers={"Origin": EVIL, "Authorization": "Bearer nf_wrong"})
    assert response.status_code == 401
