"""Per-user limits under gunicorn (2 gevent workers sharing them through Redis db 13): requests
per user, concurrent streams per user, daily tokens per user; 429s in each route's error shape."""
from __future__ import annotations

import time
import uuid

import pytest

from .conftest import TIMEOUT_ENV, Client
from .server import Gunicorn, upstream_env
from .test_streaming import directive

REDIS = "redis://127.0.0.1:6379/13"
MODEL = "ollama/rwkv-6-world"


def _server(upstream, migrated, **settings):
    return Gunicorn({"DATABASE_URL": migrated, **upstream_env(upstream.base_url), **TIMEOUT_ENV,
                     "UPSTREAM_IDLE_TIMEOUT": "5", "RATELIMIT_ENABLED": "true",
                     "RATELIMIT_STORAGE_URI": REDIS,
                     "REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex}:", **settings}, workers=2)


@pytest.fixture
def limited(upstream, migrated):
    """At most 8 requests a minute and 2 streams at once per user."""
    process = _server(upstream, migrated, USER_RATE_LIMIT="8/minute", USER_MAX_STREAMS="2")
    yield process
    process.stop()


def _v1(client: Client, content: str = "Hi", stream: bool = True, **kwargs):
    return client.http.post(f"{client.base_url}/v1/chat/completions", timeout=30,
                            json={"model": MODEL, "stream": stream,
                                  "messages": [{"role": "user", "content": content}]},
                            stream=stream, **kwargs)


def _assert_429(response, limit: str) -> dict:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-RateLimit-Limit"] == limit
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) > time.time() - 1
    return response.json()


def test_requests_per_user(limited):
    """The 9th chat request of a user within the minute is 429 on the chat route and on /v1
    (OpenAI's shape there); another user is not affected."""
    client = Client(limited.base_url)
    for number in range(8):
        if number % 2:
            response = _v1(client, stream=False)
        else:
            response = client.chat("ollama/rwkv-6-world")
        assert response.status_code == 200, response.text
        assert response.headers["X-RateLimit-Remaining"] == str(7 - number)
    body = _assert_429(client.chat("ollama/rwkv-6-world"), "8")
    assert body["statusCode"] == 429 and body["statusMessage"]
    body = _assert_429(_v1(client), "8")
    assert body["error"]["type"] == "rate_limit_error"
    assert Client(limited.base_url).chat("ollama/rwkv-6-world").status_code == 200


def test_concurrent_streams_per_user(limited, upstream):
    """With 2 streams of a user running (one per worker, maybe), a 3rd is 429 on either route;
    once one ends the user may open another. Failed requests give their slot back."""
    client = Client(limited.base_url)
    # An upstream failure before streaming must not keep the slot.
    assert client.chat("ollama/rwkv-6-world", content=directive(status=503)).status_code == 503
    long = directive(tokens=200, delay_ms=25)
    first = client.chat("ollama/rwkv-6-world", content=long, stream=True)
    second = _v1(client, content=long, stream=True)
    assert first.status_code == 200 and second.status_code == 200
    chunks = first.iter_content(chunk_size=None)   # kept: a dropped iterator hangs up
    next(chunks)
    lines = second.iter_lines()
    next(lines)
    _assert_429(client.chat("ollama/rwkv-6-world"), "2")
    body = _assert_429(_v1(client), "2")
    assert body["error"]["type"] == "rate_limit_error"
    first.close()   # the run is aborted and its slot given back
    deadline = time.monotonic() + 5
    while True:
        reopened = client.chat("ollama/rwkv-6-world")
        if reopened.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert reopened.status_code == 200, reopened.text
    second.close()


def test_daily_tokens_per_user(upstream, migrated):
    """Once a user's replies of the day reach USER_DAILY_TOKENS, their next requests are 429
    until the UTC day ends; another user is not affected."""
    process = _server(upstream, migrated, USER_DAILY_TOKENS="10")
    try:
        client = Client(process.base_url)
        assert client.chat("ollama/rwkv-6-world").status_code == 200   # charged at its end
        time.sleep(0.3)
        response = client.chat("ollama/rwkv-6-world")
        _assert_429(response, "10")
        assert int(response.headers["Retry-After"]) <= 86400
        assert _v1(client).status_code == 429
        assert Client(process.base_url).chat("ollama/rwkv-6-world").status_code == 200
    finally:
        process.stop()


def test_unreachable_storage_fails_open(upstream, migrated):
    """With the limiter's storage away, chat requests pass (a warning is logged)."""
    process = Gunicorn({"DATABASE_URL": migrated, **upstream_env(upstream.base_url),
                        **TIMEOUT_ENV, "RATELIMIT_ENABLED": "true",
                        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0",
                        "USER_RATE_LIMIT": "1/minute", "USER_MAX_STREAMS": "1",
                        "USER_DAILY_TOKENS": "1"}, workers=1)
    try:
        client = Client(process.base_url)
        for _ in range(3):
            assert client.chat("ollama/rwkv-6-world").status_code == 200
            assert _v1(client, stream=False).status_code == 200
    finally:
        process.stop()
