"""Accounts: sign-up, login, logout, check and session routes; rate limits; password storage."""
from __future__ import annotations

import hashlib
import statistics
import uuid
import time
from datetime import datetime

import pytest
import redis
from sqlalchemy import select

from neptun_flask.extensions import db
from neptun_flask.models import User
from tests.api.helpers import assert_error, parse_set_cookie, session_row, session_token
from tests.conftest import sign_up

EMAIL = "user@example.com"
PASSWORD = "correct horse"


def assert_session_payload(body: dict, user_id: int | None = None, email: str = EMAIL) -> None:
    """Assert the {"user": {"id", "primary_email"}, "loggedInAt"} shape."""
    assert set(body) == {"user", "loggedInAt"}
    assert set(body["user"]) == {"id", "primary_email"}
    assert isinstance(body["user"]["id"], int) and not isinstance(body["user"]["id"], bool)
    if user_id is not None:
        assert body["user"]["id"] == user_id
    assert body["user"]["primary_email"] == email
    assert datetime.fromisoformat(body["loggedInAt"]).tzinfo is not None


def test_sign_up_creates_user_and_logs_in(client):
    """Sign-up answers 201 with the session payload and a cookie that opens the session."""
    response = client.post("/api/auth/sign-up", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 201
    body = response.get_json()
    assert_session_payload(body)
    assert session_token(client)
    session = client.get("/api/auth/session")
    assert session.status_code == 200
    assert session.get_json() == body


@pytest.mark.parametrize("email", [EMAIL, "USER@Example.com"])
def test_sign_up_existing_email_is_409(app, email):
    """Signing up with a registered email answers 409 and creates nobody."""
    sign_up(app.test_client(), EMAIL)
    response = app.test_client().post("/api/auth/sign-up",
                                      json={"email": email, "password": PASSWORD})
    assert_error(response, 409)
    with app.app_context():
        assert db.session.query(User).count() == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "not-an-email", "password": PASSWORD}, "email"),
    ({"email": "", "password": PASSWORD}, "email"),
    ({"email": "a@", "password": PASSWORD}, "email"),
    ({"email": EMAIL, "password": "short"}, "password"),
    ({"email": EMAIL, "password": "1234567"}, "password"),
    ({"email": EMAIL}, "password"),
    ({"password": PASSWORD}, "email"),
    ({"email": EMAIL, "password": 12345678}, "password"),
], ids=["not-email", "empty-email", "no-domain", "short-5", "short-7", "no-password",
        "no-email", "password-not-string"])
def test_sign_up_invalid_fields_are_400(client, body, field):
    """Invalid email or weak password: 400 with messages for the offending field in data."""
    body_out = assert_error(client.post("/api/auth/sign-up", json=body), 400)
    messages = body_out["data"][field]
    assert isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages)
    assert session_token(client) is None


def test_sign_up_accepts_eight_character_password(client):
    """A password of exactly 8 characters is strong enough."""
    response = client.post("/api/auth/sign-up", json={"email": EMAIL, "password": "12345678"})
    assert response.status_code == 201


def test_password_is_stored_as_argon2id(app, client):
    """The stored password is an argon2id hash, never the password itself."""
    sign_up(client, EMAIL, PASSWORD)
    with app.app_context():
        stored = db.session.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_login_opens_fresh_session(app, client):
    """Login answers 200 with the session payload and a new cookie token."""
    user_id = sign_up(client, EMAIL, PASSWORD)
    sign_up_token = session_token(client)
    response = client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 200
    body = response.get_json()
    assert_session_payload(body, user_id)
    login_token = session_token(client)
    assert login_token and login_token != sign_up_token
    assert session_row(app, login_token) is not None
    session = client.get("/api/auth/session")
    assert session.status_code == 200
    assert session.get_json() == body


def test_login_is_case_insensitive_on_email(client):
    """An email typed with different case still logs in."""
    sign_up(client, EMAIL, PASSWORD)
    response = client.post("/api/auth/login",
                           json={"email": "User@EXAMPLE.com", "password": PASSWORD})
    assert response.status_code == 200


@pytest.mark.parametrize(("email", "password"), [
    ("nobody@example.com", PASSWORD),
    (EMAIL, "wrong password"),
], ids=["unknown-email", "wrong-password"])
def test_login_failures_are_identical_401(app, email, password):
    """Unknown email and wrong password get the same 401 and no cookie."""
    sign_up(app.test_client(), EMAIL, PASSWORD)
    client = app.test_client()
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    body = assert_error(response, 401, "Invalid email or password")
    assert body == {"statusCode": 401, "statusMessage": "Invalid email or password"}
    assert parse_set_cookie(response) is None


@pytest.mark.parametrize("body", [{}, {"email": EMAIL}, {"password": PASSWORD},
                                  {"email": 1, "password": PASSWORD}],
                         ids=["empty", "no-password", "no-email", "email-not-string"])
def test_login_invalid_body_is_400(client, body):
    """A login body missing fields or with wrong types is a 400 with field messages."""
    response = client.post("/api/auth/login", json=body)
    assert "data" in assert_error(response, 400)


def test_login_timing_does_not_reveal_unknown_email(app_factory):
    """An unknown email costs about as much time as a wrong password (real argon2 cost)."""
    client = app_factory(PASSWORD_HASH_COST="default").test_client()
    sign_up(client, EMAIL, PASSWORD)

    def timed(email: str) -> float:
        """Seconds one failed login takes."""
        start = time.perf_counter()
        response = client.post("/api/auth/login", json={"email": email, "password": "nope-nope"})
        elapsed = time.perf_counter() - start
        assert response.status_code == 401
        return elapsed

    timed("warm-up@example.com")  # the dummy hash is computed once, on first use
    unknown, wrong = [], []
    for _ in range(3):
        unknown.append(timed("nobody@example.com"))
        wrong.append(timed(EMAIL))
    unknown_time, wrong_time = statistics.median(unknown), statistics.median(wrong)
    assert unknown_time >= 0.3 * wrong_time
    assert wrong_time >= 0.3 * unknown_time


def test_login_rate_limit_per_client_and_email(app_factory):
    """The 4th attempt for one email is 429 with Retry-After; other emails and clients pass."""
    app = app_factory(LOGIN_RATE_LIMIT="3/minute")
    client = app.test_client()
    sign_up(client, EMAIL, PASSWORD)
    for left in (2, 1, 0):
        response = client.post("/api/auth/login", json={"email": EMAIL, "password": "bad-guess"})
        assert response.status_code == 401
        assert response.headers["X-RateLimit-Remaining"] == str(left)
    # The limiter's hooks run only where limits are: other routes carry no rate-limit headers.
    assert not [h for h in client.get("/api/models").headers if h[0].startswith("X-RateLimit")]
    blocked = client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert_error(blocked, 429)
    assert int(blocked.headers["Retry-After"]) > 0
    assert parse_set_cookie(blocked) is None

    other_email = client.post("/api/auth/login",
                              json={"email": "other@example.com", "password": "bad-guess"})
    assert other_email.status_code == 401
    other_client = client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD},
                               environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other_client.status_code == 200


def test_login_rate_limit_with_redis_storage(app_factory):
    """The production setting RATELIMIT_STORAGE_URI=redis://... limits logins (real Redis)."""
    app = app_factory(LOGIN_RATE_LIMIT="2/minute",
                      RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0")
    email = f"redis-{uuid.uuid4().hex}@example.com"  # a key no earlier run used
    attempt = {"email": email, "password": "bad-guess"}
    for _ in range(2):
        assert app.test_client().post("/api/auth/login", json=attempt).status_code == 401
    blocked = app.test_client().post("/api/auth/login", json=attempt)
    assert_error(blocked, 429)
    assert int(blocked.headers["Retry-After"]) > 0


REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("storage", ["memory://", REDIS], ids=["memory", "redis"])
@pytest.mark.parametrize("email", ["\\ud800", "\\udfff@example.com", "a\\ud800@example.com"],
                         ids=["lone-high", "lone-low", "inside"])
def test_login_email_with_lone_surrogate_is_400(app_factory, storage, email):
    """An email holding an unpaired surrogate is a 400 with a field message on any limiter
    storage: the rate-limit key is built from a digest that any text can be hashed to
    (Redis must encode the key, and a lone surrogate has no UTF-8 form)."""
    client = app_factory(RATELIMIT_STORAGE_URI=storage).test_client()
    raw = '{"email": "%s", "password": "whatever1"}' % email
    response = client.post("/api/auth/login", data=raw, content_type="application/json")
    body = assert_error(response, 400)
    assert "email" in body["data"]


def test_login_rate_limit_key_is_a_digest_of_the_email(app_factory):
    """The key stored in Redis holds the SHA-256 of the normalized email, never the email,
    however long it is; case and surrounding spaces count against the same limit."""
    app = app_factory(LOGIN_RATE_LIMIT="2/minute", RATELIMIT_STORAGE_URI=REDIS)
    local = f"key-{uuid.uuid4().hex}" + "x" * 200  # a long email no earlier run used
    email = f"{local}@example.com"
    digest = hashlib.sha256(email.encode()).hexdigest()
    for tried in (email.upper(), f"  {email} "):
        response = app.test_client().post("/api/auth/login",
                                          json={"email": tried, "password": "bad-guess"})
        assert response.status_code == 401
    blocked = app.test_client().post("/api/auth/login",
                                     json={"email": email, "password": "bad-guess"})
    assert_error(blocked, 429)
    client = redis.Redis.from_url(REDIS)
    try:
        keys = [key.decode() for key in client.scan_iter(match=f"*{digest}*")]
        assert keys and all(len(key) < 200 for key in keys)
        assert not list(client.scan_iter(match=f"*{local[:40]}*"))
    finally:
        client.close()


@pytest.mark.parametrize("repeat", [200, 300], ids=["lowered-400-chars", "lowered-600-chars"])
def test_sign_up_email_longer_than_320_once_lowercased_is_400(app, client, repeat):
    """An email within 320 characters as sent but longer once lowercased (each "İ" becomes
    two code points) is refused with a field message instead of failing the insert."""
    email = "İ" * repeat + "@example.com"
    assert len(email) <= 320 < len(email.lower())
    body = assert_error(client.post("/api/auth/sign-up",
                                    json={"email": email, "password": PASSWORD}), 400)
    assert body["data"]["email"] == ["Longer than maximum length 320."]
    with app.app_context():
        assert db.session.query(User).count() == 0


def test_sign_up_email_that_fits_once_lowercased_is_stored_lowercased(client):
    """An email whose lowercased form still fits is accepted and stored lowercased."""
    email = "İ" * 150 + "@Example.com"
    response = client.post("/api/auth/sign-up", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user"]["primary_email"] == email.lower()
    assert len(email.lower()) == 312


def test_logout_revokes_session_and_clears_cookie(app, client):
    """Logout is 204, clears the cookie, and the old token no longer works when replayed."""
    sign_up(client)
    token = session_token(client)
    response = client.post("/api/auth/logout")
    assert response.status_code == 204
    assert response.get_data() == b""
    cleared = parse_set_cookie(response)
    assert cleared is not None and cleared["value"] in ("", '""')
    assert cleared.get("max-age") == "0" or "1970" in str(cleared.get("expires"))
    assert session_token(client) is None
    assert session_row(app, token) is None

    replay = app.test_client()
    replay.set_cookie("neptun-session", token)
    assert_error(replay.get("/api/auth/check"), 401)
    assert_error(replay.get("/api/auth/session"), 401)


def test_logout_without_session_is_204(client):
    """Logging out twice (or never logged in) is harmless."""
    assert client.post("/api/auth/logout").status_code == 204


@pytest.mark.parametrize("method", ["get", "head"])
def test_check_reports_session(client, method):
    """GET/HEAD /api/auth/check: 401 without a session, 200 with one."""
    call = getattr(client, method)
    anonymous = call("/api/auth/check")
    assert anonymous.status_code == 401
    assert anonymous.mimetype == "application/json"
    sign_up(client)
    assert call("/api/auth/check").status_code == 200


def test_session_without_cookie_is_401(client):
    """GET /api/auth/session without a session is 401 in the error contract."""
    assert_error(client.get("/api/auth/session"), 401)


@pytest.mark.parametrize("token", ["garbage", "x" * 43, "x" * 1000])
def test_forged_token_is_401(client, token):
    """A cookie holding a token the server never issued opens nothing."""
    client.set_cookie("neptun-session", token)
    assert_error(client.get("/api/auth/check"), 401)
    assert_error(client.get("/api/auth/session"), 401)
