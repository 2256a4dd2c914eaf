"""What the benchmark measures: the upstream directly, the bare relay and the service (its
shared generation log in SQL, or in Redis).

Each target says where its streams go, what they send, which process tree serves them and
how its replies are framed. All of them cause the very same upstream request.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests

from neptun_flask import create_app
from neptun_flask.ai.settings import provider_settings
from neptun_flask.catalog import current_catalog
from neptun_flask.providers import get_adapter
from tests.e2e.server import ROOT, upstream_env

from .processes import Gunicorn, Placement, migrate

#: The model each provider is benchmarked with (all in the shipped catalog).
MODEL_NAMES = {"huggingface": "Qwen2.5-72B-Instruct",
               "cloudflare": "llama-3.3-70b-instruct-fp8-fast",
               "openrouter": "llama-3.3-70b-instruct", "ollama": "rwkv-6-world"}
CLIENT_BODY = json.dumps({"messages": [{"role": "user", "content": "Hi"}]})
#: The service's gunicorn hooks (generations drained on SIGTERM, stored on worker exit).
SERVICE_CONFIG = "python:neptun_flask.serving"
#: The Redis of every machine; the benchmark uses db 11 only, under a key prefix of its run.
REDIS_URL = "redis://127.0.0.1:6379/11"


def upstream_request(base_url: str, provider: str) -> tuple[dict, str]:
    """The upstream request the service builds for one "Hi", and the catalog model id."""
    app = create_app({"SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": "sqlite://",
                      "LOG_LEVEL": "WARNING", **upstream_env(base_url)})
    with app.app_context():
        entry = current_catalog().find(provider, MODEL_NAMES[provider])
        settings = provider_settings(provider, app.config)
        built = get_adapter(provider).build_request(
            entry.spec, json.loads(CLIENT_BODY)["messages"], settings,
            app.config["NEPTUN_SYSTEM_PROMPT"])
    return {"url": built.url, "headers": built.headers, "json": built.json}, entry.model_id


class Direct:
    """The fake upstream itself, sent the service's upstream request."""

    name = "direct"

    def __init__(self, fake_pid: int, upstream: dict, provider: str) -> None:
        url = urlsplit(upstream["url"])
        self.port, self.mode = url.port, provider
        self.cpu_pid = self.rss_pid = fake_pid
        self._path = url.path
        self._body = json.dumps(upstream["json"])
        self.headers = upstream["headers"]

    def prepare(self, count: int) -> list[tuple[str, str]]:
        """``count`` identical requests."""
        return [(self._path, self._body)] * count

    def close(self) -> None:
        """The fake outlives this target."""


class BareRelay:
    """``tests/bench/bare_relay.py`` under gunicorn + gevent."""

    name = "bare relay"

    def __init__(self, placement: Placement, upstream: dict, provider: str,
                 log_dir: Path) -> None:
        self.server = Gunicorn(placement, "tests.bench.bare_relay:app",
                               {"BARE_RELAY_UPSTREAM": json.dumps(upstream)},
                               log_dir / "bare-relay.log")
        self.port, self.mode, self.headers = self.server.port, provider, {}
        self.cpu_pid, self.rss_pid = self.server.pid, self.server.worker_pid

    def prepare(self, count: int) -> list[tuple[str, str]]:
        """``count`` identical requests."""
        return [("/relay", CLIENT_BODY)] * count

    def close(self) -> None:
        """Stop gunicorn."""
        self.server.stop()


class Service:
    """The app under gunicorn + gevent (with its hooks) on a fresh SQLite database, as one
    signed-up user (of the checkout at ``root``); the shared generation log is in that
    database unless ``settings`` set ``REDIS_URL``."""

    mode = "data"

    def __init__(self, placement: Placement, base_url: str, provider: str, model_id: str,
                 pool_size: int, log_dir: Path, name: str = "service",
                 settings: dict[str, str] | None = None, root: Path = ROOT) -> None:
        self.name, self._provider, self._model_id = name, provider, model_id
        self._dir = Path(tempfile.mkdtemp(prefix="neptun-bench-"))
        try:
            database_url = f"sqlite:///{self._dir / 'bench.sqlite3'}"
            migrate(database_url, root)
            self.server = Gunicorn(placement, "wsgi:app", {
                "DATABASE_URL": database_url, "DATABASE_POOL_SIZE": str(pool_size),
                **upstream_env(base_url), **(settings or {})},
                log_dir / f"{name.replace(' ', '-')}.log", config=SERVICE_CONFIG, root=root)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.port = self.server.port
        self.cpu_pid, self.rss_pid = self.server.pid, self.server.worker_pid
        self._http = requests.Session()
        self._chats: list[int] = []
        self._user_id = self._sign_up()
        self.headers = {"Cookie": f"neptun-session={self._http.cookies['neptun-session']}"}

    def _sign_up(self) -> int:
        """Create the benchmark's user; the session keeps its cookie."""
        response = self._http.post(f"{self.server.base_url}/api/auth/sign-up", timeout=30, json={
            "email": f"bench-{uuid.uuid4().hex[:10]}@example.com", "password": "long enough"})
        response.raise_for_status()
        return response.json()["user"]["id"]

    def _chat_ids(self, count: int) -> list[int]:
        """``count`` chats of the user, created once (on first need)."""
        url = f"{self.server.base_url}/api/users/{self._user_id}/chats"
        while len(self._chats) < count:
            response = self._http.post(url, json={"model": self._model_id, "name": "bench"},
                                       timeout=30)
            response.raise_for_status()
            self._chats.append(response.json()["chat"]["id"])
        return self._chats[:count]

    @property
    def _path(self) -> str:
        return f"/api/ai/{self._provider}/{MODEL_NAMES[self._provider]}/chat"

    def prepare(self, count: int) -> list[tuple[str, str]]:
        """One chat per concurrent stream, so every reply is stored in a chat of its own. The
        chats are created once (on first need) and every round continues them: creating
        K chats right before each round would put K other requests, and their garbage,
        in front of the service's rounds only."""
        return [(f"{self._path}?chat_id={chat_id}", CLIENT_BODY)
                for chat_id in self._chat_ids(count)]

    def resume_requests(self, count: int, tokens: int,
                        delay_ms: float) -> tuple[list[tuple[str, str]], list[tuple[str, None]]]:
        """``count`` resumable POSTs, each asking the fake for ``tokens`` tokens ``delay_ms``
        apart (a directive in the message, whatever the run's N and D), and the GETs resuming
        their chats (``.../chat/<chat_id>/stream``; a None body makes a GET)."""
        directive = json.dumps({"tokens": tokens, "delay_ms": delay_ms})
        body = json.dumps({"messages": [{"role": "user", "content": f"Hi [[fake {directive}]]"}]})
        chats = self._chat_ids(count)
        return ([(f"{self._path}?chat_id={chat_id}&resumable=true", body) for chat_id in chats],
                [(f"{self._path}/{chat_id}/stream", None) for chat_id in chats])

    def close(self) -> None:
        """Stop gunicorn and delete the database."""
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


class RedisService(Service):
    """The service as above with its shared log in Redis (``REDIS_URL``, db 11) under a key
    prefix of its own; closing it deletes that prefix's keys (never the db)."""

    def __init__(self, *args, name: str = "service redis", **kwargs) -> None:
        import redis  # a dependency of the service

        self._redis = redis.Redis.from_url(REDIS_URL, socket_timeout=10,
                                           socket_connect_timeout=5)
        self._redis.ping()  # no Redis: this target cannot start, the others go on
        self.prefix = f"neptun-bench-{uuid.uuid4().hex[:16]}:"
        self.deleted = 0
        try:
            super().__init__(*args, name=name, **kwargs, settings={
                "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": self.prefix})
        except BaseException:
            self.delete_keys()
            raise

    def delete_keys(self) -> int:
        """Delete every key under this run's prefix; returns how many there were."""
        keys = list(self._redis.scan_iter(match=self.prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            self._redis.delete(*keys[start:start + 500])
        self.deleted += len(keys)
        return len(keys)

    def close(self) -> None:
        """Stop gunicorn, delete the database and this run's Redis keys."""
        try:
            super().close()
        finally:
            try:
                self.delete_keys()
            finally:
                self._redis.close()
