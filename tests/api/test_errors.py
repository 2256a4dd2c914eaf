"""The one error contract across every route and failure kind, and the /health route."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from neptun_flask import create_app
from neptun_flask.extensions import db
from tests.api.helpers import MODEL, assert_error, create_chat
from tests.conftest import make_test_config, sign_up

SIGN_UP = "/api/auth/sign-up"
LOGIN = "/api/auth/login"


def _unknown_route(app_factory):
    """GET a path no route matches."""
    return app_factory().test_client().get("/api/does-not-exist")


def _unknown_user_path(app_factory):
    """GET under /api/users/ with a non-integer id."""
    return app_factory().test_client().get("/api/users/abc/chats")


def _wrong_method(app_factory):
    """GET a POST-only route."""
    return app_factory().test_client().get(LOGIN)


def _wrong_method_models(app_factory):
    """DELETE the public catalog."""
    return app_factory().test_client().delete("/api/models")


def _too_large_sign_up(app_factory):
    """A sign-up body over MAX_CONTENT_LENGTH."""
    client = app_factory(MAX_CONTENT_LENGTH=64).test_client()
    return client.post(SIGN_UP, json={"email": "user@example.com", "password": "x" * 200})


def _too_large_login(app_factory):
    """A login body over MAX_CONTENT_LENGTH (the rate-limit key reads the body too)."""
    client = app_factory(MAX_CONTENT_LENGTH=64).test_client()
    return client.post(LOGIN, json={"email": "user@example.com", "password": "x" * 200})


def _too_large_chat(app_factory):
    """A chat body over MAX_CONTENT_LENGTH."""
    client = app_factory(MAX_CONTENT_LENGTH=100).test_client()
    user_id = sign_up(client)
    return client.post(f"/api/users/{user_id}/chats", json={"model": MODEL, "name": "n" * 200})


def _form_post(app_factory):
    """A form-encoded sign-up."""
    return app_factory().test_client().post(
        SIGN_UP, data={"email": "user@example.com", "password": "correct horse"})


def _text_post(app_factory):
    """A text/plain login holding JSON."""
    return app_factory().test_client().post(
        LOGIN, data='{"email": "a@b.co", "password": "x"}', content_type="text/plain")


def _no_body_chat(app_factory):
    """A chat creation without a body."""
    client = app_factory().test_client()
    return client.post(f"/api/users/{sign_up(client)}/chats")


def _malformed_json(app_factory):
    """A JSON content type with a broken body."""
    return app_factory().test_client().post(
        SIGN_UP, data='{"email": "user@example.com",', content_type="application/json")


def _malformed_json_patch(app_factory):
    """A rename with a broken JSON body."""
    client = app_factory().test_client()
    user_id = sign_up(client)
    chat = create_chat(client, user_id)
    return client.patch(f"/api/users/{user_id}/chats/{chat['id']}", data="{name:",
                        content_type="application/json")


def _not_an_object(app_factory):
    """A JSON body that is a list."""
    return app_factory().test_client().post(SIGN_UP, json=["user@example.com"])


def _validation(app_factory):
    """A sign-up failing validation."""
    return app_factory().test_client().post(SIGN_UP, json={"email": "x", "password": "y"})


def _unauthorized(app_factory):
    """A user route without a session."""
    return app_factory().test_client().get("/api/users/1/chats")


def _bad_login(app_factory):
    """A login with unknown credentials."""
    return app_factory().test_client().post(
        LOGIN, json={"email": "nobody@example.com", "password": "whatever1"})


def _forbidden(app_factory):
    """Another user's chat list."""
    client = app_factory().test_client()
    return client.get(f"/api/users/{sign_up(client) + 1}/chats")


def _missing_chat(app_factory):
    """A chat that does not exist."""
    client = app_factory().test_client()
    return client.get(f"/api/users/{sign_up(client)}/chats/999999")


def _conflict(app_factory):
    """A second sign-up with the same email."""
    client = app_factory().test_client()
    sign_up(client)
    return client.post(SIGN_UP, json={"email": "user@example.com", "password": "correct horse"})


def _rate_limited(app_factory):
    """A second login attempt under a 1/minute limit."""
    client = app_factory(LOGIN_RATE_LIMIT="1/minute").test_client()
    body = {"email": "user@example.com", "password": "wrong-password"}
    client.post(LOGIN, json=body)
    return client.post(LOGIN, json=body)


def _sign_up_rate_limited(app_factory):
    """A second sign-up from one client under a 1/minute limit."""
    client = app_factory(LOGIN_RATE_LIMIT="1/minute").test_client()
    client.post(SIGN_UP, json={"email": "a@example.com", "password": "correct horse"})
    return client.post(SIGN_UP, json={"email": "b@example.com", "password": "correct horse"})


def _raising_app(app_factory, testing: bool = True):
    """An app with an extra route that fails unexpectedly."""
    app = app_factory(TESTING=testing)

    @app.get("/boom")
    def boom():
        """Fail like a bug would."""
        raise ValueError("secret internal detail /etc/passwd")

    return app


def _unexpected(app_factory):
    """A route raising an unexpected exception."""
    return _raising_app(app_factory).test_client().get("/boom")


CASES = [
    (_unknown_route, 404, {}),
    (_unknown_user_path, 404, {}),
    (_wrong_method, 405, {"Allow": "POST"}),
    (_wrong_method_models, 405, {"Allow": "GET"}),
    (_too_large_sign_up, 413, {}),
    (_too_large_login, 413, {}),
    (_too_large_chat, 413, {}),
    (_form_post, 415, {}),
    (_text_post, 415, {}),
    (_no_body_chat, 415, {}),
    (_malformed_json, 400, {}),
    (_malformed_json_patch, 400, {}),
    (_not_an_object, 400, {}),
    (_validation, 400, {}),
    (_unauthorized, 401, {}),
    (_bad_login, 401, {}),
    (_forbidden, 403, {}),
    (_missing_chat, 404, {}),
    (_conflict, 409, {}),
    (_rate_limited, 429, {"Retry-After": ""}),
    (_sign_up_rate_limited, 429, {"Retry-After": ""}),
    (_unexpected, 500, {}),
]


@pytest.mark.parametrize(("make", "status", "headers"), CASES,
                         ids=[case[0].__name__.strip("_") for case in CASES])
def test_error_contract(app_factory, make, status, headers):
    """Every error is JSON {statusCode, statusMessage, data?} with the right status and headers."""
    response = make(app_factory)
    body = assert_error(response, status)
    assert response.headers["Content-Type"].startswith("application/json")
    json.loads(response.get_data(as_text=True))  # the raw body is JSON, not HTML
    assert "<" not in response.get_data(as_text=True)
    for name, contains in headers.items():
        assert contains in response.headers[name]
    if status == 400 and make is _validation:
        assert set(body["data"]) == {"email", "password"}


def test_method_not_allowed_lists_methods(app_factory):
    """405's Allow header names the methods the route accepts."""
    response = _wrong_method_models(app_factory)
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed and "DELETE" not in allowed


def test_retry_after_is_seconds(app_factory):
    """Retry-After on 429 is a positive number of seconds, at most the limit window."""
    response = _rate_limited(app_factory)
    assert 0 < int(response.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("testing", [True, False], ids=["testing", "production"])
def test_unexpected_error_is_bare_500(app_factory, testing):
    """An unexpected exception answers exactly the bare 500 document, without details."""
    response = _raising_app(app_factory, testing).test_client().get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert response.get_json() == {"statusCode": 500, "statusMessage": "Internal Server Error"}
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "ValueError", "secret internal detail", "passwd"):
        assert leak not in text


def test_health_ok(client):
    """GET /health reports status ok, an ISO timestamp and a numeric uptime."""
    response = client.get("/health")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"status", "timestamp", "uptime"}
    assert body["status"] == "ok"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert isinstance(body["uptime"], (int, float)) and body["uptime"] >= 0


@pytest.mark.parametrize("url", [
    "postgresql://postgres@127.0.0.1:1/unreachable",
    "sqlite:///{tmp}/no/such/dir/db.sqlite3",
], ids=["postgres-closed-port", "sqlite-missing-dir"])
def test_health_database_unreachable_is_503(tmp_path, url):
    """With the database unreachable, /health is a 503 in the error contract."""
    app = create_app(make_test_config(url.format(tmp=tmp_path)))
    try:
        response = app.test_client().get("/health")
        assert_error(response, 503)
        assert "Traceback" not in response.get_data(as_text=True)
    finally:
        with app.app_context():
            db.engine.dispose()
