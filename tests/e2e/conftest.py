"""End-to-end fixtures: the fake upstream, the app under gunicorn + gevent, API helpers."""
from __future__ import annotations

import uuid

import pytest
import requests

from tests.fakes.upstream import FakeUpstream

from .server import API_KEY, Gunicorn, upstream_env

TIMEOUT_ENV = {"UPSTREAM_CONNECT_TIMEOUT": "2", "UPSTREAM_FIRST_TOKEN_TIMEOUT": "2",
               "UPSTREAM_IDLE_TIMEOUT": "1", "UPSTREAM_TOTAL_TIMEOUT": "20"}


@pytest.fixture(scope="session")
def upstream():
    """One fake upstream for the whole run (5 tokens per reply unless a test says otherwise)."""
    fake = FakeUpstream(tokens=5, api_key=API_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def server(upstream, migrated):
    """The app under gunicorn -k gevent, on the run's database, talking to the fake."""
    process = Gunicorn({"DATABASE_URL": migrated, **upstream_env(upstream.base_url),
                        **TIMEOUT_ENV})
    yield process
    process.stop()


class Client:
    """A logged-in API user over real HTTP."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()
        email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
        response = self.http.post(f"{base_url}/api/auth/sign-up",
                                  json={"email": email, "password": "long enough"})
        assert response.status_code == 201, response.text
        self.user_id = response.json()["user"]["id"]
        self.cookie = self.http.cookies["neptun-session"]

    def create_chat(self, model: str) -> int:
        """Create a chat and return its id."""
        response = self.http.post(f"{self.base_url}/api/users/{self.user_id}/chats",
                                  json={"model": model, "name": "e2e chat"})
        assert response.status_code == 201, response.text
        return response.json()["chat"]["id"]

    def chat(self, path: str, content: str = "Hi", chat_id: int = -1, stream: bool = False,
             messages: list | None = None, **params) -> requests.Response:
        """POST one chat request to ``path`` (relative to /api/ai/)."""
        body = {"messages": messages or [{"role": "user", "content": content}]}
        return self.http.post(f"{self.base_url}/api/ai/{path}/chat",
                              params={"chat_id": chat_id, **params}, json=body,
                              stream=stream, timeout=30)

    def messages(self, chat_id: int) -> list[dict]:
        """The stored messages of a chat."""
        response = self.http.get(
            f"{self.base_url}/api/users/{self.user_id}/chats/{chat_id}/messages")
        assert response.status_code == 200, response.text
        return response.json()["chatMessages"]


@pytest.fixture
def api(server):
    """A fresh logged-in user against the live server."""
    return Client(server.base_url)
