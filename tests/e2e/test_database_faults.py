"""End to end: a PostgreSQL database that refuses, or goes silent (a black hole), behind a TCP
proxy this test runs (never the machine's server itself): requests fail fast with 503 JSON
"Database unavailable", /health answers 503 within 5 s, and all is well once it is back.
"""
from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import postgres_database

from .conftest import TIMEOUT_ENV, Client
from .proxy import TcpProxy
from .server import Gunicorn, migrate, upstream_env
from .test_generations import PG_SERVER_URL


@pytest.fixture(scope="module")
def faulty(upstream):
    """(server, proxy, user): the app on a PostgreSQL database of its own reached through the
    proxy, DATABASE_TIMEOUT=6 s."""
    with postgres_database(PG_SERVER_URL, prefix="neptun_faults") as direct_url:
        migrate(direct_url)
        proxy = TcpProxy(int(PG_SERVER_URL.rsplit(":", 1)[1].split("/")[0]))
        url = direct_url.replace(":5432/", f":{proxy.port}/")
        server = Gunicorn({"DATABASE_URL": url, **upstream_env(upstream.base_url),
                           **TIMEOUT_ENV, "DATABASE_TIMEOUT": "6"})
        try:
            yield server, proxy, Client(server.base_url)
        finally:
            proxy.set("forward")
            server.stop()
            proxy.close()


def assert_unavailable(response: requests.Response) -> None:
    """503 JSON "Database unavailable", never HTML or a 500."""
    assert response.status_code == 503, response.text
    assert response.json() == {"statusCode": 503, "statusMessage": "Database unavailable"}


@pytest.mark.parametrize("mode, limit", [("refuse", 5.0), ("blackhole", 12.0)])
def test_a_database_that_refuses_or_goes_silent_is_a_fast_503(faulty, mode, limit):
    """Every database route answers 503 JSON within the bound (6 s here; 30 s by default),
    /health 503 within 5 s; the routes that need no database keep working; then it recovers."""
    server, proxy, user = faulty
    chat_id = user.create_chat("ollama/rwkv-6-world")
    base = server.base_url
    proxy.set(mode)
    try:
        started = time.monotonic()
        health = requests.get(f"{base}/health", timeout=30)
        assert health.status_code == 503 and time.monotonic() - started < 5.0
        calls = [
            lambda: user.http.get(f"{base}/api/users/{user.user_id}/chats", timeout=30),
            lambda: user.http.get(f"{base}/api/users/{user.user_id}/chats/{chat_id}/messages",
                                  timeout=30),
            lambda: user.chat("ollama/rwkv-6-world", "Hi", chat_id),
            lambda: requests.post(f"{base}/api/auth/login", timeout=30,
                                  json={"email": "a@example.com", "password": "long enough"}),
        ]
        for call in calls:
            started = time.monotonic()
            assert_unavailable(call())
            assert time.monotonic() - started < limit
        assert requests.get(f"{base}/api/models", timeout=10).status_code == 200
    finally:
        proxy.set("forward")
    deadline = time.monotonic() + 20
    while requests.get(f"{base}/health", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "never recovered"
        time.sleep(0.2)
    assert user.http.get(f"{base}/api/users/{user.user_id}/chats", timeout=30).status_code == 200
