"""Session cookies: opaque hashed tokens, flags, configurable and sliding expiry, the guard."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.helpers import (COOKIE, ROUTE_IDS, assert_error, create_chat, parse_set_cookie,
                               session_row, session_token, set_session_times, sha256,
                               user_routes)
from tests.conftest import sign_up

DAY = 24 * 3600


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(timezone.utc)


def sign_up_response(client):
    """Sign up through the API and return the raw response."""
    response = client.post("/api/auth/sign-up",
                           json={"email": "user@example.com", "password": "correct horse"})
    assert response.status_code == 201
    return response


def test_token_is_random_and_only_its_hash_is_stored(app, client):
    """The cookie holds a >=256-bit urlsafe token; the database holds only its SHA-256."""
    sign_up(client)
    token = session_token(client)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)
    row = session_row(app, token)
    assert row is not None
    assert row.token_hash != token
    assert row.token_hash == sha256(token)
    assert token not in row.token_hash


def test_tokens_differ_between_sessions(app):
    """Two logins never share a token."""
    first, second = app.test_client(), app.test_client()
    sign_up(first)
    second.post("/api/auth/login", json={"email": "user@example.com", "password": "correct horse"})
    assert session_token(first) != session_token(second)


@pytest.fixture
def default_app(app_factory, monkeypatch):
    """An app whose session settings all come from the built-in defaults."""
    for name in ("SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE",
                 "SESSION_COOKIE_PATH", "SESSION_COOKIE_NAME", "SESSION_LIFETIME_DAYS"):
        monkeypatch.delenv(name, raising=False)
    return app_factory()


@pytest.mark.parametrize("route", ["/api/auth/sign-up", "/api/auth/login"])
def test_cookie_flags_default(default_app, route):
    """Sign-up and login set an HttpOnly, SameSite=Lax, Path=/, Secure cookie for 7 days."""
    client = default_app.test_client()
    response = sign_up_response(client)
    if route == "/api/auth/login":
        response = client.post(route, json={"email": "user@example.com",
                                            "password": "correct horse"})
        assert response.status_code == 200
    cookie = parse_set_cookie(response)
    assert cookie is not None
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["secure"] is True
    assert abs(int(cookie["max-age"]) - 7 * DAY) <= 60
    assert "expires" in cookie


def test_cookie_not_secure_when_disabled(app_factory):
    """SESSION_COOKIE_SECURE=False drops the Secure flag."""
    client = app_factory(SESSION_COOKIE_SECURE=False).test_client()
    cookie = parse_set_cookie(sign_up_response(client))
    assert "secure" not in cookie
    assert cookie["httponly"] is True


def test_session_lifetime_is_configurable(app_factory):
    """SESSION_LIFETIME_DAYS sets both the cookie lifetime and the stored expiry."""
    app = app_factory(SESSION_LIFETIME_DAYS=2)
    client = app.test_client()
    cookie = parse_set_cookie(sign_up_response(client))
    assert abs(int(cookie["max-age"]) - 2 * DAY) <= 60
    row = session_row(app, cookie["value"])
    assert abs((row.expires_at - row.created_at) - timedelta(days=2)) < timedelta(seconds=1)


def test_default_lifetime_is_seven_days(default_app):
    """The stored expiry defaults to seven days after login."""
    client = default_app.test_client()
    sign_up(client)
    row = session_row(default_app, session_token(client))
    assert abs((row.expires_at - row.created_at) - timedelta(days=7)) < timedelta(seconds=1)


def test_session_used_after_five_minutes_slides(app_factory):
    """A session idle >5 min gets a new expiry (one lifetime from now), stored and re-sent."""
    app = app_factory(SESSION_LIFETIME_DAYS=3)
    client = app.test_client()
    sign_up(client)
    token = session_token(client)
    set_session_times(app, token, last_seen_at=now() - timedelta(minutes=10),
                      expires_at=now() + timedelta(hours=1))
    response = client.get("/api/auth/check")
    assert response.status_code == 200
    cookie = parse_set_cookie(response)
    assert cookie is not None and cookie["value"] == token
    assert abs(int(cookie["max-age"]) - 3 * DAY) <= 60
    assert cookie["httponly"] is True and cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    row = session_row(app, token)
    assert abs(row.expires_at - (now() + timedelta(days=3))) < timedelta(minutes=1)
    assert now() - row.last_seen_at < timedelta(minutes=1)
    assert client.get("/api/auth/check").status_code == 200  # the re-sent cookie still works


def test_session_slides_on_user_routes(app, client, user_id):
    """Sliding expiry also happens on /api/users/... routes."""
    token = session_token(client)
    set_session_times(app, token, last_seen_at=now() - timedelta(minutes=6),
                      expires_at=now() + timedelta(minutes=30))
    response = client.get(f"/api/users/{user_id}/chats")
    assert response.status_code == 200
    assert parse_set_cookie(response)["value"] == token
    lifetime = timedelta(days=app.config["SESSION_LIFETIME_DAYS"])
    assert session_row(app, token).expires_at > now() + lifetime - timedelta(minutes=1)


def test_recent_session_is_not_rewritten(app, client):
    """A session used within 5 minutes keeps its expiry and gets no new cookie."""
    sign_up(client)
    token = session_token(client)
    expires = now() + timedelta(hours=1)
    set_session_times(app, token, last_seen_at=now() - timedelta(minutes=1), expires_at=expires)
    response = client.get("/api/auth/check")
    assert response.status_code == 200
    assert parse_set_cookie(response) is None
    assert abs(session_row(app, token).expires_at - expires) < timedelta(seconds=1)


def test_expired_session_is_401(app, client, user_id):
    """Past its expiry a session opens nothing, even if recently seen."""
    token = session_token(client)
    set_session_times(app, token, last_seen_at=now() - timedelta(minutes=10),
                      expires_at=now() - timedelta(seconds=1))
    assert_error(client.get("/api/auth/check"), 401)
    assert_error(client.get("/api/auth/session"), 401)
    assert_error(client.get(f"/api/users/{user_id}/chats"), 401)
    assert session_row(app, token).expires_at < now()  # an expired session is not revived


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
@pytest.mark.parametrize("cookie", ["none", "forged", "expired", "logged-out"])
def test_user_routes_require_session(app, client, user_id, index, cookie):
    """Every /api/users/... route is 401 without a valid, unexpired session; nothing changes."""
    chat = create_chat(client, user_id)
    method, path, body = user_routes(user_id, chat["id"])[index]
    token = session_token(client)
    caller = app.test_client()
    if cookie == "forged":
        caller.set_cookie(COOKIE, "forged-token-value-that-was-never-issued-x")
    elif cookie == "expired":
        set_session_times(app, token, last_seen_at=now() - timedelta(minutes=10),
                          expires_at=now() - timedelta(seconds=1))
        caller.set_cookie(COOKIE, token)
    elif cookie == "logged-out":
        caller.set_cookie(COOKIE, token)
        assert caller.post("/api/auth/logout").status_code == 204
        caller.set_cookie(COOKIE, token)  # replay the revoked token
    assert_error(getattr(caller, method)(path, json=body), 401)

    owner = app.test_client()
    sign_in = owner.post("/api/auth/login", json={"email": "user@example.com",
                                                  "password": "correct horse"})
    assert sign_in.status_code == 200
    assert owner.get(f"/api/users/{user_id}/chats").get_json()["chats"] == [chat]


@pytest.mark.parametrize("path", ["/api/models", "/models", "/health"])
def test_public_routes_need_no_session(client, path):
    """The catalog and health routes answer without a session."""
    assert client.get(path).status_code == 200
