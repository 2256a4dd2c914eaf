"""Login sessions: opaque cookie tokens, stored hashed, with sliding expiry; the session guard."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app, g, request
from sqlalchemy import bindparam, delete, select, update

from ..batching import app_batcher
from ..errors import ApiError
from ..extensions import db
from ..models import Session, utcnow

_sessions = Session.__table__


def sessions_by_hash(*columns, joined=_sessions):
    """A query of the session rows whose token hash is in ``hashes`` (the columns ``is_live``
    and ``accept_session`` read, then ``columns``), from ``joined``: the sessions table or a
    join of it."""
    return (select(_sessions.c.token_hash, _sessions.c.id, _sessions.c.user_id,
                   _sessions.c.created_at, _sessions.c.last_seen_at, _sessions.c.expires_at,
                   *columns)
            .select_from(joined)
            .where(_sessions.c.token_hash.in_(bindparam("hashes", expanding=True))))


# Built once: every guarded request runs these.
_FIND_SESSIONS = sessions_by_hash()
_SLIDE_SESSION = (update(_sessions).where(_sessions.c.id == bindparam("session_id"))
                  .values(last_seen_at=bindparam("now"), expires_at=bindparam("expires")))

# Sliding expiry is written at most this often, so busy clients do not cause a write per request.
_TOUCH_INTERVAL = timedelta(minutes=5)


def hash_token(token: str) -> str:
    """SHA-256 of a cookie token; a 256-bit random token needs no slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def _lifetime() -> timedelta:
    """The configured session lifetime."""
    return timedelta(days=current_app.config["SESSION_LIFETIME_DAYS"])


def create_session(user_id: int) -> tuple[str, Session]:
    """Open a session for a user; returns the cookie token (never stored) and the row."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = Session(user_id=user_id, token_hash=hash_token(token), created_at=now,
                  last_seen_at=now, expires_at=now + _lifetime())
    db.session.add(row)
    return token, row


def lookup_sessions(connection, hashes: list[str]) -> dict:
    """The session rows of token hashes, by hash, in one query."""
    if not hashes:
        return {}
    return {row.token_hash: row for row in connection.execute(
        _FIND_SESSIONS, {"hashes": sorted(set(hashes))})}


def is_live(row, now: datetime) -> bool:
    """The rule: a session row exists and has not expired."""
    return row is not None and row.expires_at > now


def find_sessions(engine, hashes: list[str]) -> list:
    """The session rows of token hashes (None where there is none), in one query: the batched
    lookup of concurrent requests (see batching.py)."""
    with engine.connect() as connection:
        rows = lookup_sessions(connection, hashes)
    return [rows.get(hashed) for hashed in hashes]


def cookie_hash(token: str | None) -> str | None:
    """The hash of a cookie token worth looking up; None for a missing or oversized one."""
    if not token or len(token) > 256:
        return None
    return hash_token(token)


def lookup_session(token: str | None):
    """The session row of a cookie token (live or not), or None. Every guarded request runs
    this: the lookup is batched."""
    hashed = cookie_hash(token)
    return None if hashed is None else app_batcher("sessions")(hashed)


def accept_session(row):
    """401 unless ``row`` is a live session; sets ``g.user_id`` and slides the expiry when due."""
    now = utcnow()
    if not is_live(row, now):
        raise ApiError(401, "Unauthorized")
    g.user_id = row.user_id
    if now - row.last_seen_at >= _TOUCH_INTERVAL:
        expires = now + _lifetime()
        with db.engine.begin() as connection:
            connection.execute(_SLIDE_SESSION, {"session_id": row.id, "now": now,
                                                "expires": expires})
        g.refreshed_expiry = expires
    return row


def revoke_session(token: str | None) -> None:
    """Delete the session of a cookie token, if any."""
    if token:
        db.session.execute(delete(Session).where(Session.token_hash == hash_token(token)))
        db.session.commit()


def session_token() -> str | None:
    """The session token sent by the client."""
    return request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])


def current_session():
    """The request's valid session row; 401 without one. Sets ``g.user_id``."""
    return accept_session(lookup_session(session_token()))


def require_session() -> None:
    """Blueprint guard (a before-request hook must return None): 401 without a session."""
    current_session()


def set_session_cookie(response, token: str, expires: datetime) -> None:
    """Write the session cookie with the configured flags."""
    config = current_app.config
    response.set_cookie(
        config["SESSION_COOKIE_NAME"], token, expires=expires,
        max_age=int((expires - utcnow()).total_seconds()),
        path=config["SESSION_COOKIE_PATH"], domain=config["SESSION_COOKIE_DOMAIN"],
        secure=config["SESSION_COOKIE_SECURE"], httponly=config["SESSION_COOKIE_HTTPONLY"],
        samesite=config["SESSION_COOKIE_SAMESITE"])


def clear_session_cookie(response) -> None:
    """Expire the session cookie in the browser."""
    config = current_app.config
    response.delete_cookie(
        config["SESSION_COOKIE_NAME"], path=config["SESSION_COOKIE_PATH"],
        domain=config["SESSION_COOKIE_DOMAIN"], secure=config["SESSION_COOKIE_SECURE"],
        httponly=config["SESSION_COOKIE_HTTPONLY"], samesite=config["SESSION_COOKIE_SAMESITE"])


def refresh_cookie(response):
    """after_request hook: re-send the cookie when the session's expiry slid forward."""
    expires = g.get("refreshed_expiry")
    if expires is not None:
        set_session_cookie(response, session_token(), expires)
    return response
