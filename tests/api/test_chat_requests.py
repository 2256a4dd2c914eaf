"""Chat routes before the upstream: session, query args, model, body, chat ownership, credentials.

No upstream is contacted: every provider base URL points at a closed local port, so a request
that passes every check ends in 503 "Provider <name> is unreachable", which proves that all
the earlier checks passed. The checks run in a fixed order, and pairs of simultaneous faults
show that each one wins over every later one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from neptun_flask import create_app
from neptun_flask.ai.routes import ROUTER_INVALID as ROUTER_VIEW_INVALID, router_entry
from neptun_flask.ai.view import chat_response
from neptun_flask.errors import ApiError
from neptun_flask.extensions import db, limiter
from neptun_flask.models import ChatMessage
from tests.api.helpers import (COOKIE, assert_error, create_chat, session_token,
                               set_session_times)
from tests.conftest import make_test_config, sign_up

CATALOG_FILE = Path(__file__).resolve().parents[2] / "neptun_flask" / "catalog.json"
CLOSED = "http://127.0.0.1:9"   # nothing listens on the discard port: connections are refused

#: Every provider configured, every base URL unreachable, timeouts short.
CONFIGURED = {
    "HUGGINGFACE_API_KEY": "hf-key", "HUGGINGFACE_BASE_URL": CLOSED,
    "CLOUDFLARE_API_TOKEN": "cf-token", "CLOUDFLARE_ACCOUNT_ID": "cf-account",
    "CLOUDFLARE_BASE_URL": CLOSED,
    "OPENROUTER_API_KEY": "or-key", "OPENROUTER_BASE_URL": CLOSED,
    "OLLAMA_BASE_URL": CLOSED, "OLLAMA_API_KEY": None,
    "NEPTUN_MODELS_FILE": None,
    "UPSTREAM_CONNECT_TIMEOUT": 0.5, "UPSTREAM_FIRST_TOKEN_TIMEOUT": 0.5,
    "UPSTREAM_IDLE_TIMEOUT": 0.5, "UPSTREAM_TOTAL_TIMEOUT": 1.0,
    "UPSTREAM_RETRIES": 0,   # the refused connection is answered at once, not asked again
}

HF_INVALID = "Invalid model name or publisher"
CHAT_INVALID = "Invalid model name"
ROUTER_INVALID = "Invalid model publisher or model name"
RETIRED = "Service not available anymore."
TOO_LONG = "The last message is too long for this model."
NOT_FOUND = "Chat not found"
HELLO = [{"role": "user", "content": "Hello"}]
OLLAMA_TRUNCATE = 3596   # ollama/rwkv-6-world's truncate in the built-in catalog
TOO_LARGE = "x" * (OLLAMA_TRUNCATE * 4 + 1)


@dataclass(frozen=True)
class Route:
    """One chat route shape, with an active model, an unknown one and how it fails."""

    id: str
    path: str            # an active model (retired in the retired catalog below)
    unknown: str         # a model this route does not know
    invalid: str         # the 400 message for the unknown model
    provider: str
    unconfigured: dict = field(default_factory=dict)  # overrides that drop its credentials


ROUTES = [
    Route("hf-publisher", "/api/ai/huggingface/google/gemma-2-27b-it/chat",
          "/api/ai/huggingface/google/no-such-model/chat", HF_INVALID, "huggingface",
          {"HUGGINGFACE_API_KEY": None}),
    Route("hf-name", "/api/ai/huggingface/gemma-2-27b-it/chat",
          "/api/ai/huggingface/no-such-model/chat", HF_INVALID, "huggingface",
          {"HUGGINGFACE_API_KEY": None}),
    Route("cloudflare", "/api/ai/cloudflare/llama-3.3-70b-instruct-fp8-fast/chat",
          "/api/ai/cloudflare/no-such-model/chat", CHAT_INVALID, "cloudflare",
          {"CLOUDFLARE_ACCOUNT_ID": None}),
    Route("openrouter", "/api/ai/openrouter/deepseek-chat/chat",
          "/api/ai/openrouter/no-such-model/chat", CHAT_INVALID, "openrouter",
          {"OPENROUTER_API_KEY": None}),
    Route("ollama", "/api/ai/ollama/rwkv-6-world/chat",
          "/api/ai/ollama/no-such-model/chat", CHAT_INVALID, "ollama",
          {"OLLAMA_BASE_URL": ""}),
    Route("router", "/api/ai/google/gemma-2-27b-it/chat",
          "/api/ai/google/no-such-model/chat", ROUTER_INVALID, "huggingface",
          {"HUGGINGFACE_API_KEY": None}),
]
ROUTE_BY_ID = {route.id: route for route in ROUTES}
#: One model of each provider, retired in the ``retired_catalog`` file.
RETIRED_MODELS = ["google/gemma-2-27b-it", "cloudflare/llama-3.3-70b-instruct-fp8-fast",
                  "openrouter/deepseek-chat", "ollama/rwkv-6-world"]


def catalog_ids() -> list[str]:
    """Every model id of the built-in catalog."""
    document = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    return [f"{publisher}/{name}" for publisher, models in document.items() for name in models]


def provider_of(model_id: str) -> str:
    """The provider serving a catalog model id."""
    publisher = model_id.split("/", 1)[0]
    return publisher if publisher in ("cloudflare", "openrouter", "ollama") else "huggingface"


@pytest.fixture(scope="module")
def retired_catalog(tmp_path_factory) -> str:
    """A copy of the built-in catalog with one model of each provider retired."""
    document = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    for model_id in RETIRED_MODELS:
        publisher, name = model_id.split("/", 1)
        document[publisher][name]["retired"] = True
    path = tmp_path_factory.mktemp("catalog") / "retired.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


class Apps:
    """Apps on the test database, one per config (``CONFIGURED`` plus overrides), built once
    per module: building an app costs far more than the few requests a test sends."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.built: dict[tuple, object] = {}

    def get(self, **overrides):
        """The app for ``CONFIGURED`` updated with ``overrides``."""
        key = tuple(sorted(overrides.items()))
        if key not in self.built:
            self.built[key] = create_app(make_test_config(self.database_url,
                                                          **{**CONFIGURED, **overrides}))
        return self.built[key]


@pytest.fixture(scope="module")
def app_cache(migrated):
    """The module's apps; their engines are disposed at the end."""
    cache = Apps(migrated)
    yield cache
    for app in cache.built.values():
        with app.app_context():
            db.engine.dispose()


def _empty_tables(app) -> None:
    """Delete every row (the database is shared with the rest of the run)."""
    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()


@pytest.fixture
def apps(app_cache):
    """The module's apps on empty tables; rate limits are reset after each test."""
    _empty_tables(app_cache.get())  # earlier tests of the run may have left rows behind
    yield app_cache
    _empty_tables(app_cache.get())
    for app in app_cache.built.values():
        with app.app_context():
            limiter.reset()


@pytest.fixture
def app(apps):
    """The app with every provider configured but unreachable."""
    return apps.get()


@pytest.fixture
def other(app):
    """A second signed-up user: (client, user id)."""
    client = app.test_client()
    return client, sign_up(client, "other@example.com")


def chat_url(path: str, chat_id=-1, **args) -> str:
    """``path`` with its query string (``None`` values left out)."""
    query = {"chat_id": chat_id, **args}
    parts = [f"{key}={value}" for key, value in query.items() if value is not None]
    return f"{path}?{'&'.join(parts)}" if parts else path


def stored_messages(app) -> int:
    """How many chat messages are stored, in every chat."""
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ChatMessage))


def chat_messages(client, user_id: int, chat_id: int) -> list[tuple[str, str]]:
    """A chat's stored messages as (actor, message), through the API."""
    response = client.get(f"/api/users/{user_id}/chats/{chat_id}/messages")
    assert response.status_code == 200, response.get_json()
    return [(m["actor"], m["message"]) for m in response.get_json()["chatMessages"]]


def assert_unreachable(response, provider: str) -> dict:
    """Every check passed: the request failed only on the closed upstream port."""
    return assert_error(response, 503, f"Provider {provider} is unreachable")


def assert_validation(response, key: str) -> dict:
    """A 400 "Validation failed" whose data names ``key``."""
    body = assert_error(response, 400, "Validation failed")
    assert isinstance(body["data"], dict) and key in body["data"], body
    return body


# --- the order of the checks: every fault alone, and every pair of faults -------------------

STEPS = ["session", "args", "model", "retired", "body", "chat", "credentials", "too_large"]


def applicable(route: Route) -> list[str]:
    """The faults a route can have (only Ollama's small context makes a prompt too large)."""
    return [step for step in STEPS if step != "too_large" or route.provider == "ollama"]


def expect(route: Route, step: str | None, response) -> None:
    """Assert the response of the check ``step`` (None: all checks passed)."""
    if step is None:
        assert_unreachable(response, route.provider)
    elif step == "session":
        assert_error(response, 401, "Unauthorized")
    elif step == "args":
        assert_validation(response, "stream_protocol")
    elif step == "model":
        assert_error(response, 400, route.invalid)
    elif step == "retired":
        assert_error(response, 400, RETIRED)
    elif step == "body":
        body = assert_validation(response, "messages")
        assert body["data"]["messages"] == {"0": {"role": [
            "System messages are not accepted: the server sets the system prompt."]}}
    elif step == "chat":
        assert_error(response, 404, NOT_FOUND)
    elif step == "credentials":
        assert_error(response, 503, f"Provider {route.provider} is not configured")
    else:
        assert_error(response, 400, TOO_LONG)


def later_faults(route: Route, first: str) -> list[str]:
    """The faults checked after ``first`` that can be sent together with it."""
    steps = applicable(route)
    return [step for step in steps[steps.index(first) + 1:]
            if {first, step} != {"model", "retired"}]  # an unknown model is not retired too


class Scenario:
    """Apps (one per config a fault set needs), each with a user owning one chat."""

    def __init__(self, apps: Apps, retired_catalog: str, route: Route):
        self.app_cache, self.retired_catalog, self.route = apps, retired_catalog, route
        self.apps: dict[tuple[bool, bool], tuple] = {}

    def env(self, faults: tuple[str, ...]):
        """(app, signed-in client, owned chat id) for the config ``faults`` need."""
        key = ("retired" in faults, "credentials" in faults)
        if key not in self.apps:
            config = {}
            if key[0]:
                config["NEPTUN_MODELS_FILE"] = self.retired_catalog
            if key[1]:
                config.update(self.route.unconfigured)
            app = self.app_cache.get(**config)
            owner = app.test_client()
            user_id = sign_up(owner, f"user{len(self.apps)}@example.com")
            self.apps[key] = (app, owner, create_chat(owner, user_id)["id"])
        return self.apps[key]

    def send(self, faults: tuple[str, ...]):
        """Send one chat request with ``faults``; return (app, response)."""
        app, owner, chat_id = self.env(faults)
        route = self.route
        client = app.test_client() if "session" in faults else owner
        path = route.unknown if "model" in faults else route.path
        content = TOO_LARGE if "too_large" in faults else "Hello"
        messages = [{"role": "user", "content": content}]
        if "body" in faults:
            messages.insert(0, {"role": "system", "content": "Be brief."})
        url = chat_url(path, chat_id + 1000 if "chat" in faults else chat_id,
                       stream_protocol="sse" if "args" in faults else None)
        return app, client.post(url, json={"messages": messages})


@pytest.mark.parametrize("route_id, first", [
    (route.id, step) for route in ROUTES for step in [None, *applicable(route)]],
    ids=lambda value: value or "no-fault")
def test_earliest_fault_wins(apps, retired_catalog, route_id, first):
    """A fault alone gives its error and wins over each later fault; only a clean request stores."""
    route = ROUTE_BY_ID[route_id]
    scenario = Scenario(apps, retired_catalog, route)
    if first is None:
        app, response = scenario.send(())
        expect(route, None, response)
        assert stored_messages(app) == 1
        return
    for faults in [(first,), *((first, later) for later in later_faults(route, first))]:
        app, response = scenario.send(faults)
        try:
            expect(route, first, response)
        except AssertionError as error:
            raise AssertionError(f"faults {faults}: {error}") from None
        assert stored_messages(app) == 0, faults


# --- 1. session --------------------------------------------------------------------------------

def _no_cookie(app, client):
    """Never signed in."""


def _garbage_cookie(app, client):
    """A cookie no session has."""
    client.set_cookie(COOKIE, "not-a-session-token")


def _logged_out(app, client):
    """Signed in, then logged out (the old token is kept and sent again)."""
    sign_up(client)
    token = session_token(client)
    assert client.post("/api/auth/logout").status_code in (200, 204)
    client.set_cookie(COOKIE, token)


def _expired(app, client):
    """Signed in, but the session expired."""
    sign_up(client)
    now = datetime.now(UTC)
    set_session_times(app, session_token(client), last_seen_at=now - timedelta(days=30),
                      expires_at=now - timedelta(days=1))


@pytest.mark.parametrize("make_session", [_no_cookie, _garbage_cookie, _logged_out, _expired],
                         ids=["no-cookie", "garbage", "logged-out", "expired"])
def test_no_valid_session_is_401_on_every_route(app, make_session):
    """Without a valid session every chat route answers 401, whatever else is wrong."""
    client = app.test_client()
    make_session(app, client)
    for route in ROUTES:
        for path in (route.path, route.unknown):
            assert_error(client.post(chat_url(path), json={"messages": HELLO}), 401,
                         "Unauthorized")
            assert_error(client.post(f"{path}?is_playground=maybe", data="{"), 401,
                         "Unauthorized")


# --- 2. query args -----------------------------------------------------------------------------

@pytest.mark.parametrize("query, key", [
    ("", "chat_id"),
    ("is_playground=true", "chat_id"),
    ("chat_id=", "chat_id"),
    ("chat_id=abc", "chat_id"),
    ("chat_id=1.5", "chat_id"),
    ("chat_id=1e3", "chat_id"),
    ("chat_id=null", "chat_id"),
    ("chat_id=1&is_playground=yes", "is_playground"),
    ("chat_id=1&is_playground=", "is_playground"),
    ("chat_id=-1&is_playground=maybe", "is_playground"),
    ("chat_id=1&stream_protocol=sse", "stream_protocol"),
    ("chat_id=1&stream_protocol=", "stream_protocol"),
    ("chat_id=-1&stream_protocol=DATA", "stream_protocol"),
], ids=lambda value: value or "none")
def test_bad_query_args_are_400(client, user_id, query, key):
    """Bad query args are 400 with field messages, before the model and the body are looked at."""
    for route in ROUTES:
        for path in (route.path, route.unknown):
            for request in ({"json": {"messages": []}}, {"data": "not json"}):
                body = assert_validation(client.post(f"{path}?{query}", **request), key)
                assert all(isinstance(m, str) for m in body["data"][key]), body


@pytest.mark.parametrize("query", [
    "chat_id=-1", "chat_id=-1&is_playground=false", "chat_id=-1&is_playground=true",
    "chat_id=12345&is_playground=true", "chat_id=-1&stream_protocol=data",
    "chat_id=-1&stream_protocol=text", "chat_id=-1&unknown_arg=1",
])
def test_valid_query_args_reach_the_upstream(client, user_id, query):
    """Valid query args (true/false, data/text, unknown args ignored) pass every check."""
    for route in ROUTES:
        assert_unreachable(client.post(f"{route.path}?{query}", json={"messages": HELLO}),
                           route.provider)


# --- 3. model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, message", [
    ("/api/ai/huggingface/google/no-such-model/chat", HF_INVALID),
    ("/api/ai/huggingface/no-such-publisher/gemma-2-27b-it/chat", HF_INVALID),
    ("/api/ai/huggingface/cloudflare/llama-3.3-70b-instruct-fp8-fast/chat", HF_INVALID),
    ("/api/ai/huggingface/ollama/rwkv-6-world/chat", HF_INVALID),
    ("/api/ai/huggingface/openrouter/deepseek-chat/chat", HF_INVALID),
    ("/api/ai/huggingface/no-such-model/chat", HF_INVALID),
    ("/api/ai/huggingface/llama-3.3-70b-instruct-fp8-fast/chat", HF_INVALID),
    ("/api/ai/cloudflare/no-such-model/chat", CHAT_INVALID),
    ("/api/ai/cloudflare/gemma-2-27b-it/chat", CHAT_INVALID),
    ("/api/ai/openrouter/no-such-model/chat", CHAT_INVALID),
    ("/api/ai/openrouter/rwkv-6-world/chat", CHAT_INVALID),
    ("/api/ai/ollama/no-such-model/chat", CHAT_INVALID),
    ("/api/ai/ollama/deepseek-chat/chat", CHAT_INVALID),
    ("/api/ai/google/no-such-model/chat", ROUTER_INVALID),
    ("/api/ai/qwen/gemma-2-27b-it/chat", ROUTER_INVALID),
    ("/api/ai/no-such-publisher/Qwen2.5-72B-Instruct/chat", ROUTER_INVALID),
    ("/api/ai/Qwen/Qwen2.5-72B-Instruct/chat", ROUTER_INVALID),
])
def test_unknown_model_is_400(client, user_id, path, message):
    """An unknown model is 400 with the route's own message, before the body and the chat."""
    requests = ({"json": {"messages": []}}, {"data": "not json"}, {"json": {"messages": HELLO}})
    for request in requests:
        body = assert_error(client.post(chat_url(path, 987654), **request), 400, message)
        assert "data" not in body


@pytest.mark.parametrize("model_id", RETIRED_MODELS)
def test_retired_model_is_400_on_provider_route_and_router(apps, retired_catalog, model_id):
    """A retired model is 400 on its provider route and on the router, before the body."""
    app = apps.get(NEPTUN_MODELS_FILE=retired_catalog)
    client = app.test_client()
    sign_up(client)
    name = model_id.split("/", 1)[1]
    provider = provider_of(model_id)
    paths = [f"/api/ai/{model_id}/chat", f"/api/ai/{provider}/{name}/chat"]
    if provider == "huggingface":
        paths.append(f"/api/ai/huggingface/{model_id}/chat")
    for path in paths:
        for request in ({"json": {"messages": HELLO}}, {"json": {}}, {"data": "x"}):
            assert_error(client.post(chat_url(path, 987654), **request), 400, RETIRED)
        assert_validation(client.post(chat_url(path, "x"), json={"messages": HELLO}), "chat_id")


def test_active_models_of_a_catalog_with_retired_ones_still_work(apps, retired_catalog):
    """Retiring some models leaves the others usable."""
    app = apps.get(NEPTUN_MODELS_FILE=retired_catalog)
    client = app.test_client()
    sign_up(client)
    active = [model_id for model_id in catalog_ids() if model_id not in RETIRED_MODELS]
    for model_id in active:
        assert_unreachable(client.post(chat_url(f"/api/ai/{model_id}/chat"),
                                       json={"messages": HELLO}), provider_of(model_id))


# --- 4. body -----------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, path", [
    pytest.param({}, (), id="missing"),
    pytest.param({"message": HELLO}, (), id="misspelled"),
    pytest.param({"messages": None}, (), id="null"),
    pytest.param({"messages": []}, (), id="empty"),
    pytest.param({"messages": "Hello"}, (), id="string"),
    pytest.param({"messages": {"role": "user", "content": "Hello"}}, (), id="object"),
    pytest.param({"messages": ["Hello"]}, ("0", "_schema"), id="item-string"),
    pytest.param({"messages": [None]}, ("0",), id="item-null"),
    pytest.param({"messages": [{"role": "system", "content": "Hello"}]}, ("0", "role"),
                 id="role-system"),
    pytest.param({"messages": [{"role": "tool", "content": "Hello"}]}, ("0", "role"),
                 id="role-tool"),
    pytest.param({"messages": [{"role": "data", "content": "Hello"}]}, ("0", "role"),
                 id="role-data"),
    pytest.param({"messages": [{"role": "User", "content": "Hello"}]}, ("0", "role"),
                 id="role-capitalised"),
    pytest.param({"messages": [{"content": "Hello"}]}, ("0", "role"), id="role-missing"),
    pytest.param({"messages": [{"role": 1, "content": "Hello"}]}, ("0", "role"),
                 id="role-number"),
    pytest.param({"messages": [{"role": "user"}]}, ("0", "content"), id="content-missing"),
    pytest.param({"messages": [{"role": "user", "content": None}]}, ("0", "content"),
                 id="content-null"),
    pytest.param({"messages": [{"role": "user", "content": 42}]}, ("0", "content"),
                 id="content-number"),
    pytest.param({"messages": [{"role": "user", "content": ["Hello"]}]}, ("0", "content"),
                 id="content-list"),
    pytest.param({"messages": [{"role": "user", "content": {"type": "text", "text": "Hi"}}]},
                 ("0", "content"), id="content-object"),
    pytest.param({"messages": [*HELLO, {"role": "assistant", "content": "Hi"},
                               {"role": "user", "content": False}]}, ("2", "content"),
                 id="third-content-bool"),
])
def test_invalid_messages_are_400(client, user_id, payload, path):
    """Invalid ``messages`` are 400 with field messages, before the chat is looked up."""
    for route in ROUTES:
        body = assert_validation(client.post(chat_url(route.path, 987654), json=payload),
                                 "messages")
        data = body["data"]["messages"]
        for key in path:
            assert isinstance(data, dict) and key in data, body
            data = data[key]
        assert isinstance(data, list) and all(isinstance(m, str) for m in data), body


@pytest.mark.parametrize("content, message", [
    ("a\u0000b", "Must not contain NUL characters."),
    ("\ud800", "Must not contain unpaired surrogates."),
    ("abc\udfff", "Must not contain unpaired surrogates."),
], ids=["nul", "lone-high-surrogate", "lone-low-surrogate"])
def test_unstorable_content_is_400(app, client, user_id, content, message):
    """Content no database can store (NUL, lone surrogate) is 400, not a 500 on insert."""
    chat_id = create_chat(client, user_id)["id"]
    raw = json.dumps({"messages": [{"role": "user", "content": content}]})
    for route in ROUTES:
        for target in (chat_id, -1):
            body = assert_validation(client.post(chat_url(route.path, target), data=raw,
                                                 content_type="application/json"), "messages")
            assert body["data"]["messages"] == {"0": {"content": [message]}}
    assert stored_messages(app) == 0


def test_paired_surrogates_and_unicode_are_stored(client, user_id):
    """An escaped surrogate pair is one character, stored like any other text."""
    chat_id = create_chat(client, user_id)["id"]
    raw = json.dumps({"messages": [{"role": "user", "content": "Grüße 😀 \ufffd"}]})
    assert raw.isascii() and "\\ud83d\\ude00" in raw
    assert_unreachable(client.post(chat_url("/api/ai/ollama/rwkv-6-world/chat", chat_id),
                                   data=raw, content_type="application/json"), "ollama")
    assert chat_messages(client, user_id, chat_id) == [("user", "Grüße 😀 \ufffd")]


@pytest.mark.parametrize("payload", [[HELLO[0]], "Hello", 42, True],
                         ids=["list", "string", "number", "bool"])
def test_body_not_an_object_is_400(client, user_id, payload):
    """A JSON body that is not an object is 400 with field messages."""
    for route in ROUTES:
        body = assert_error(client.post(chat_url(route.path, 987654), json=payload), 400,
                            "Validation failed")
        assert isinstance(body.get("data"), dict) and body["data"], body


@pytest.mark.parametrize("request_kwargs", [
    {},
    {"data": json.dumps({"messages": HELLO})},
    {"data": json.dumps({"messages": HELLO}), "content_type": "text/plain"},
    {"data": {"messages": "Hello"}},
    {"data": "messages=Hello", "content_type": "application/x-www-form-urlencoded"},
], ids=["no-body", "no-content-type", "text-plain", "multipart", "form"])
def test_body_not_json_is_415(client, user_id, request_kwargs):
    """A body that is not JSON is 415, before the chat is looked up."""
    for route in ROUTES:
        assert_error(client.post(chat_url(route.path, 987654), **request_kwargs), 415)


@pytest.mark.parametrize("raw", ["", "{", '{"messages": [}', "{'messages': []}", "messages",
                                 '{"messages": []} trailing'])
def test_malformed_json_is_400(client, user_id, raw):
    """A malformed JSON body is 400, before the chat is looked up."""
    for route in ROUTES:
        body = assert_error(client.post(chat_url(route.path, 987654), data=raw,
                                        content_type="application/json"), 400)
        assert body["statusMessage"] == "Malformed JSON body"


USE_CHAT_BODY = {
    "id": "wCgdl3SEmwUnSFXb",
    "data": {"source": "web"},
    "experimental_attachments": [],
    "messages": [
        {"id": "msg-1", "createdAt": "2025-02-01T10:00:00.000Z", "role": "user",
         "content": "Hello", "parts": [{"type": "text", "text": "Hello"}],
         "experimental_attachments": [{"name": "a.txt", "contentType": "text/plain",
                                       "url": "data:text/plain;base64,SGk="}]},
        {"id": "msg-2", "createdAt": "2025-02-01T10:00:01.000Z", "role": "assistant",
         "content": "Hi!", "parts": [{"type": "text", "text": "Hi!"}],
         "annotations": [], "toolInvocations": []},
        {"id": "msg-3", "createdAt": "2025-02-01T10:00:02.000Z", "role": "user",
         "content": "How are you?", "parts": [{"type": "text", "text": "How are you?"}]},
    ],
}


def test_ai_sdk_extra_fields_are_ignored(client, user_id):
    """Extra fields useChat sends on the body and on messages are ignored, not rejected; the
    same turn sent again after an upstream failure is stored once."""
    chat_id = create_chat(client, user_id)["id"]
    for route in ROUTES:
        assert_unreachable(client.post(chat_url(route.path, chat_id), json=USE_CHAT_BODY),
                           route.provider)
        assert_unreachable(client.post(chat_url(route.path, -1), json=USE_CHAT_BODY,
                                       content_type="application/json; charset=utf-8"),
                           route.provider)
    assert chat_messages(client, user_id, chat_id) == [("user", "How are you?")]


# --- 5. chat ownership -------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "other-user", "zero", "minus-two", "beyond-int32",
                                  "huge", "playground-false"])
def test_chat_must_exist_and_be_owned(app, client, user_id, other, case):
    """A chat id other than -1 must name one of the user's chats, else 404; nothing is stored."""
    other_client, other_id = other
    theirs = create_chat(other_client, other_id, "theirs")["id"]
    mine = create_chat(client, user_id, "mine")["id"]
    chat_id, extra = {
        "missing": (theirs + mine + 100, None), "other-user": (theirs, None),
        "zero": (0, None), "minus-two": (-2, None), "beyond-int32": (2**31, None),
        "huge": (10**30, None), "playground-false": (theirs, "false"),
    }[case]
    for route in ROUTES:
        body = assert_error(client.post(chat_url(route.path, chat_id, is_playground=extra),
                                        json={"messages": HELLO}), 404, NOT_FOUND)
        assert "data" not in body
    assert stored_messages(app) == 0


def test_other_users_chat_and_missing_chat_look_the_same(client, user_id, other):
    """Another user's chat and a missing chat give byte-identical 404 responses."""
    other_client, other_id = other
    theirs = create_chat(other_client, other_id, "theirs")["id"]
    for route in ROUTES:
        foreign = client.post(chat_url(route.path, theirs), json={"messages": HELLO})
        missing = client.post(chat_url(route.path, theirs + 1000), json={"messages": HELLO})
        assert_error(foreign, 404, NOT_FOUND)
        assert foreign.get_data() == missing.get_data()
        assert foreign.headers.get("Content-Type") == missing.headers.get("Content-Type")


@pytest.mark.parametrize("case", ["minus-one", "own", "other-user", "missing", "own-minus-one",
                                  "playground-1"])
def test_playground_skips_the_chat_check_and_stores_nothing(app, client, user_id, other, case):
    """chat_id=-1, or is_playground=true with any id, skips the chat check and stores nothing."""
    other_client, other_id = other
    theirs = create_chat(other_client, other_id, "theirs")["id"]
    mine = create_chat(client, user_id, "mine")["id"]
    chat_id, playground = {
        "minus-one": (-1, None), "own": (mine, "true"), "other-user": (theirs, "true"),
        "missing": (theirs + mine + 100, "true"), "own-minus-one": (-1, "true"),
        "playground-1": (mine, "1"),
    }[case]
    for route in ROUTES:
        assert_unreachable(client.post(chat_url(route.path, chat_id, is_playground=playground),
                                       json={"messages": HELLO}), route.provider)
    assert stored_messages(app) == 0
    assert chat_messages(client, user_id, mine) == []


# --- 6. provider credentials -------------------------------------------------------------------

@pytest.mark.parametrize("provider, overrides", [
    ("huggingface", {"HUGGINGFACE_API_KEY": None}),
    ("huggingface", {"HUGGINGFACE_API_KEY": ""}),
    ("huggingface", {"HUGGINGFACE_BASE_URL": ""}),
    ("cloudflare", {"CLOUDFLARE_ACCOUNT_ID": None}),
    ("cloudflare", {"CLOUDFLARE_API_TOKEN": None}),
    ("cloudflare", {"CLOUDFLARE_API_TOKEN": None, "CLOUDFLARE_ACCOUNT_ID": None}),
    ("cloudflare", {"CLOUDFLARE_BASE_URL": ""}),
    ("openrouter", {"OPENROUTER_API_KEY": None}),
    ("openrouter", {"OPENROUTER_BASE_URL": ""}),
    ("ollama", {"OLLAMA_BASE_URL": ""}),
    ("ollama", {"OLLAMA_BASE_URL": None}),
], ids=lambda value: value if isinstance(value, str) else "+".join(
    f"{key}={val!r}" for key, val in value.items()))
def test_missing_credentials_are_503(apps, provider, overrides):
    """A provider without its credentials is 503 "not configured"; the others still work."""
    app = apps.get(**overrides)
    client = app.test_client()
    user_id = sign_up(client)
    chat_id = create_chat(client, user_id)["id"]
    for route in ROUTES:
        response = client.post(chat_url(route.path, chat_id),
                               json={"messages": [{"role": "user", "content": route.id}]})
        if route.provider == provider:
            assert_error(response, 503, f"Provider {provider} is not configured")
        else:
            assert_unreachable(response, route.provider)
    configured = sum(route.provider != provider for route in ROUTES)
    assert stored_messages(app) == configured


def test_ollama_needs_only_a_base_url(apps):
    """Ollama without an API key (and the others without credentials) still reaches upstream."""
    app = apps.get(HUGGINGFACE_API_KEY=None, CLOUDFLARE_API_TOKEN=None,
                   CLOUDFLARE_ACCOUNT_ID=None, OPENROUTER_API_KEY=None, OLLAMA_API_KEY=None)
    client = app.test_client()
    sign_up(client)
    assert_unreachable(client.post(chat_url("/api/ai/ollama/rwkv-6-world/chat"),
                                   json={"messages": HELLO}), "ollama")


# --- routing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model_id", catalog_ids())
def test_every_catalog_model_on_router_and_provider_route(client, user_id, model_id):
    """Every catalog model resolves through the router and its provider route."""
    provider = provider_of(model_id)
    name = model_id.split("/", 1)[1]
    paths = [f"/api/ai/{model_id}/chat", f"/api/ai/{provider}/{name}/chat"]
    if provider == "huggingface":
        paths.append(f"/api/ai/huggingface/{model_id}/chat")
    for path in paths:
        assert_unreachable(client.post(chat_url(path), json={"messages": HELLO}), provider)


@pytest.mark.parametrize("publisher, name", [
    ("huggingface", "Qwen2.5-72B-Instruct"), ("cloudflare", "llama-3.3-70b-instruct-fp8-fast"),
    ("openrouter", "deepseek-chat"), ("ollama", "rwkv-6-world"),
])
def test_router_view_with_a_provider_as_publisher(app, client, user_id, publisher, name):
    """The router view resolves a provider name as publisher to that provider's model."""
    cookie = {"Cookie": f"{COOKIE}={session_token(client)}"}
    for model_name, status, message in (
            (name, 503, f"Provider {publisher} is unreachable"),
            ("no-such-model", 400, ROUTER_INVALID)):
        url = chat_url(f"/api/ai/{publisher}/{model_name}/chat")
        with (app.test_request_context(url, method="POST", json={"messages": HELLO},
                                       headers=cookie),
              pytest.raises(ApiError) as raised):
            chat_response(router_entry(publisher, model_name), ROUTER_VIEW_INVALID)
        assert (raised.value.status, raised.value.message) == (status, message)


# --- prompt size and storage -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/ai/ollama/rwkv-6-world/chat",
                                  "/api/ai/ollama/rwkv-6-world/chat?is_playground=true"])
def test_prompt_too_large_is_400_and_stores_nothing(client, user_id, path):
    """A last message beyond the model's context is 400, and nothing is stored."""
    chat_id = create_chat(client, user_id)["id"]
    separator = "&" if "?" in path else "?"
    url = f"{path}{separator}chat_id={chat_id}"
    for messages in ([{"role": "user", "content": TOO_LARGE}],
                     [*HELLO, {"role": "assistant", "content": "Hi"},
                      {"role": "user", "content": TOO_LARGE}]):
        assert_error(client.post(url, json={"messages": messages}), 400, TOO_LONG)
    assert chat_messages(client, user_id, chat_id) == []


def test_long_history_is_trimmed_not_refused(client, user_id):
    """Old turns that do not fit are dropped; a short last message still goes upstream."""
    chat_id = create_chat(client, user_id)["id"]
    messages = [{"role": "user", "content": TOO_LARGE}, {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "Short question"}]
    assert_unreachable(client.post(chat_url("/api/ai/ollama/rwkv-6-world/chat", chat_id),
                                   json={"messages": messages}), "ollama")
    assert chat_messages(client, user_id, chat_id) == [("user", "Short question")]


@pytest.mark.parametrize("route_id", [route.id for route in ROUTES])
def test_user_message_is_stored_before_the_upstream_call(client, user_id, route_id):
    """For an owned chat the last user message is stored even when the upstream is down."""
    route = ROUTE_BY_ID[route_id]
    chat = create_chat(client, user_id)
    messages = [{"role": "user", "content": "First"}, {"role": "assistant", "content": "Reply"},
                {"role": "user", "content": "Second ✓"}]
    assert_unreachable(client.post(chat_url(route.path, chat["id"], stream_protocol="text"),
                                   json={"messages": messages}), route.provider)
    assert chat_messages(client, user_id, chat["id"]) == [("user", "Second ✓")]
    after = client.get(f"/api/users/{user_id}/chats/{chat['id']}").get_json()["chat"]
    stored = client.get(f"/api/users/{user_id}/chats/{chat['id']}/messages").get_json()
    # The chat's updated_at is the stored message's own time (the database's trigger).
    assert after["updated_at"] == stored["chatMessages"][-1]["created_at"] > chat["updated_at"]
