"""Helpers shared by the API tests: error-contract checks, cookies, chats and session rows."""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select, update

from neptun_flask.extensions import db
from neptun_flask.models import Session

COOKIE = "neptun-session"
MODEL = "qwen/Qwen2.5-72B-Instruct"


def assert_error(response, status: int, message: str | None = None) -> dict:
    """Assert ``response`` follows the JSON error contract with ``status``; return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) <= {"statusCode", "statusMessage", "data"}
    assert body["statusCode"] == status
    assert isinstance(body["statusMessage"], str) and body["statusMessage"]
    if message is not None:
        assert body["statusMessage"] == message
    return body


def parse_set_cookie(response, name: str = COOKIE) -> dict | None:
    """The ``Set-Cookie`` header for ``name`` as {"value", attribute: value-or-True}, or None."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        key, _, value = first.partition("=")
        if key == name:
            parsed: dict = {"value": value}
            for attribute in attributes:
                attr, sep, attr_value = attribute.partition("=")
                parsed[attr.lower()] = attr_value if sep else True
            return parsed
    return None


def session_token(client) -> str | None:
    """The session token the client's cookie jar holds."""
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def sha256(token: str) -> str:
    """The SHA-256 hex digest of a cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_row(app, token: str) -> Session | None:
    """The stored session row for a cookie token (detached), or None."""
    with app.app_context():
        row = db.session.scalar(select(Session).where(Session.token_hash == sha256(token)))
        if row is not None:
            db.session.expunge(row)
        return row


def set_session_times(app, token: str, *, last_seen_at: datetime,
                      expires_at: datetime) -> None:
    """Rewrite a session row's sliding-expiry columns, as if time had passed."""
    with app.app_context():
        db.session.execute(update(Session).where(Session.token_hash == sha256(token))
                           .values(last_seen_at=last_seen_at, expires_at=expires_at))
        db.session.commit()


def create_chat(client, user_id: int, name: str = "my chat", model: str = MODEL) -> dict:
    """Create a chat through the API and return it."""
    response = client.post(f"/api/users/{user_id}/chats", json={"model": model, "name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["chat"]


def user_routes(user_id: int, chat_id: int) -> list[tuple[str, str, dict | None]]:
    """Every /api/users/... route with a valid body."""
    base = f"/api/users/{user_id}/chats"
    return [
        ("get", base, None),
        ("post", base, {"model": MODEL, "name": "new chat"}),
        ("delete", base, {"chat_ids": [chat_id]}),
        ("get", f"{base}/{chat_id}", None),
        ("patch", f"{base}/{chat_id}", {"name": "renamed"}),
        ("delete", f"{base}/{chat_id}", None),
        ("get", f"{base}/{chat_id}/messages", None),
    ]


ROUTE_IDS = ["list", "create", "bulk-delete", "get", "rename", "delete", "messages"]
