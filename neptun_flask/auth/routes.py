"""Account routes: sign-up, login, logout, check and session."""
from __future__ import annotations

import hashlib

from flask import Blueprint, current_app, jsonify
from flask_limiter.util import get_remote_address
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError
from ..extensions import db, limiter
from ..models import User
from ..openapi import operation
from ..schemas import (AuthCheckSchema, LoginSchema, SessionPayloadSchema, SignUpSchema,
                       UserSchema, normalize_email)
from ..validation import json_body, load_body
from .passwords import hash_password, verify_password
from .sessions import (clear_session_cookie, create_session, current_session, revoke_session,
                       session_token, set_session_cookie)

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

# Schemas are built once: building one copies all of its fields.
_user_schema = UserSchema()
_sign_up = SignUpSchema()
_login = LoginSchema()


def _login_limit() -> str:
    """The configured login rate limit (per address and email; per address on sign-up)."""
    return current_app.config["LOGIN_RATE_LIMIT"]


def _address_limit() -> str:
    """Logins per client address, whatever the emails."""
    return current_app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"]


def _account_limit() -> str:
    """Logins per email, whatever the addresses."""
    return current_app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"]


def _email_digest() -> str:
    """The SHA-256 of the normalized email being tried. The digest bounds the key and is
    encodable whatever the body holds (a storage such as Redis must encode the key: a lone
    surrogate could not be); the body is validated in the view."""
    body = json_body()
    email = body.get("email") if isinstance(body, dict) else None
    tried = normalize_email(email) if isinstance(email, str) else ""
    return hashlib.sha256(tried.encode("utf-8", "surrogatepass")).hexdigest()


def _login_key() -> str:
    """Rate-limit key: client address (behind TRUSTED_PROXIES, the forwarded one) and the
    email's digest."""
    return f"{get_remote_address()}|{_email_digest()}"


def _address_key() -> str:
    """Rate-limit key: the client address alone."""
    return f"address|{get_remote_address()}"


def _account_key() -> str:
    """Rate-limit key: the email's digest alone."""
    return f"account|{_email_digest()}"


def _session_payload(user: User, logged_in_at):
    """The ``{user, loggedInAt}`` document."""
    return {"user": _user_schema.dump(user), "loggedInAt": logged_in_at.isoformat()}


def _logged_in(user: User, status: int):
    """Open a session for ``user`` and answer with its cookie."""
    token, row = create_session(user.id)
    db.session.commit()
    response = jsonify(_session_payload(user, row.created_at))
    response.status_code = status
    set_session_cookie(response, token, row.expires_at)
    return response


@bp.post("/sign-up")
@operation("Create an account and log it in (sets the session cookie)", tag="auth",
           public=True, body=SignUpSchema, responses={201: SessionPayloadSchema},
           errors=(409, 429))
@limiter.limit(_login_limit, key_func=get_remote_address)
def sign_up():
    """Create an account and log it in."""
    data = load_body(_sign_up)
    cost = current_app.config["PASSWORD_HASH_COST"]
    user = User(email=normalize_email(data["email"]),
                password_hash=hash_password(data["password"], cost))
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, "Email already registered") from None
    return _logged_in(user, 201)


@bp.post("/login")
@operation("Log in (sets a fresh session cookie)", tag="auth", public=True, body=LoginSchema,
           responses={200: SessionPayloadSchema}, errors=(401, 429))
# The X-RateLimit-* headers of a request under every limit tell of the shortest window's, the
# first registered (the lowest decorator) on a tie: the address and email one, the tightest.
@limiter.limit(_account_limit, key_func=_account_key)
@limiter.limit(_address_limit, key_func=_address_key)
@limiter.limit(_login_limit, key_func=_login_key)
def login():
    """Check credentials and open a fresh session."""
    data = load_body(_login)
    user = db.session.scalar(select(User).where(User.email == normalize_email(data["email"])))
    stored_hash = user.password_hash if user else None
    # The connection goes back to the pool while the password is checked (tens of ms in the
    # hashing pool): a burst of logins must not hold the pool from every other request.
    db.session.close()
    cost = current_app.config["PASSWORD_HASH_COST"]
    if not verify_password(stored_hash, data["password"], cost):
        raise ApiError(401, "Invalid email or password")
    return _logged_in(user, 200)


@bp.post("/logout")
@operation("Revoke the session and clear its cookie", tag="auth", public=True,
           responses={204: None})
def logout():
    """Revoke the session server-side and clear the cookie."""
    revoke_session(session_token())
    response = current_app.response_class(status=204)
    clear_session_cookie(response)
    return response


@bp.route("/check", methods=["GET", "HEAD"])
@operation("Whether the session is valid", tag="auth", responses={200: AuthCheckSchema},
           methods=("GET", "HEAD"))
def check():
    """200 when the session is valid, else 401."""
    current_session()
    return jsonify({"authenticated": True})


@bp.get("/session")
@operation("The logged-in user and when the session began", tag="auth",
           responses={200: SessionPayloadSchema})
def session():
    """The logged-in user and when the session began."""
    row = current_session()
    return jsonify(_session_payload(db.session.get(User, row.user_id), row.created_at))
