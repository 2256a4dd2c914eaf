"""End to end: a PostgreSQL database that refuses, or goes silent (a black hole), behind a TCP
proxy this test runs (never the machine's server itself): requests fail fast with 503 JSON
"Database unavailable", /health answers 503 within 5 s, and all is well once it is back.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from tests.conftest import postgres_database

from .conftest import TIMEOUT_ENV, Client
from .server import Gunicorn, migrate, upstream_env
from .test_generations import PG_SERVER_URL


class Proxy:
    """A TCP proxy to PostgreSQL with three modes: ``forward``; ``refuse`` (connections are
    reset, new ones refused); ``blackhole`` (connections stay open, nothing passes: a
    connection that met the black hole stays silent for good, as after a network partition,
    while new ones work again once the mode is back to ``forward``)."""

    def __init__(self, target_port: int):
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.mode = "forward"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                client.close()
                continue
            with self._lock:
                self._sockets.append(client)
            if self.mode == "blackhole":
                continue   # held open, never answered
            server = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets.append(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == "blackhole":
                    break   # as a partition does: this connection never carries a byte again
                if self.mode == "refuse":
                    self._reset(source, sink)
                    return
                sink.sendall(data)
        except OSError:
            return
        while True:   # silent, not closed: the peer waits until it gives up by itself
            try:
                if not source.recv(65536):
                    return
            except OSError:
                return

    @staticmethod
    def _reset(*sockets: socket.socket) -> None:
        for end in sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    def set(self, mode: str) -> None:
        """Switch mode; ``refuse`` also resets every open connection."""
        self.mode = mode
        if mode == "refuse":
            with self._lock:
                sockets, self._sockets = self._sockets, []
            self._reset(*sockets)

    def close(self) -> None:
        self._listener.close()
        self.set("refuse")


@pytest.fixture(scope="module")
def faulty(upstream):
    """(server, proxy, user): the app on a PostgreSQL database of its own reached through the
    proxy, DATABASE_TIMEOUT=6 s."""
    with postgres_database(PG_SERVER_URL, prefix="neptun_faults") as direct_url:
        migrate(direct_url)
        proxy = Proxy(int(PG_SERVER_URL.rsplit(":", 1)[1].split("/")[0]))
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
