"""Upstream error answers through the chat route, against a local HTTP server: what the client
gets in ``statusMessage`` and ``data`` is plain, bounded text, and the warning logged names
the model, never the messages."""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.api.helpers import assert_error
from tests.conftest import sign_up

SECRET = "a private question 91c2"
NGINX_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
             "</body>\r\n</html>\r\n")
#: provider -> (chat route, upstream model id the warning must name)
ROUTES = {
    "ollama": ("/api/ai/ollama/rwkv-6-world/chat", "mollysama/rwkv-6-world:1.6b"),
    "openrouter": ("/api/ai/openrouter/deepseek-chat/chat", "deepseek/deepseek-chat:free"),
    "huggingface": ("/api/ai/huggingface/google/gemma-2-27b-it/chat", "google/gemma-2-27b-it"),
    "cloudflare": ("/api/ai/cloudflare/llama-3.3-70b-instruct-fp8-fast/chat",
                   "@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
}


class Upstream:
    """A local HTTP server answering every POST with one scripted status and body."""

    def __init__(self) -> None:
        self.status, self.body, self.content_type = 500, b"", "text/plain"
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            """Read the request, answer the script."""

            def do_POST(self):  # noqa: N802 - http.server's name
                """Answer with the scripted status and body."""
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(upstream.status)
                self.send_header("Content-Type", upstream.content_type)
                self.send_header("Content-Length", str(len(upstream.body)))
                self.end_headers()
                self.wfile.write(upstream.body)

            def log_message(self, *args):
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status: int, body: str | dict, content_type: str = "text/html") -> None:
        """Script the next answers."""
        if isinstance(body, dict):
            body, content_type = json.dumps(body), "application/json"
        self.status, self.body, self.content_type = status, body.encode(), content_type


@pytest.fixture(scope="module")
def upstream():
    """The module's local upstream."""
    server = Upstream()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def client(app_factory, upstream):
    """A logged-in client of an app whose four providers all point at the local upstream."""
    app = app_factory(
        HUGGINGFACE_API_KEY="hf-key", HUGGINGFACE_BASE_URL=upstream.url,
        CLOUDFLARE_API_TOKEN="cf-token", CLOUDFLARE_ACCOUNT_ID="cf-account",
        CLOUDFLARE_BASE_URL=upstream.url, OPENROUTER_API_KEY="or-key",
        OPENROUTER_BASE_URL=upstream.url, OLLAMA_BASE_URL=upstream.url)
    client = app.test_client()
    sign_up(client)
    return client


def chat(client, provider: str):
    """A playground chat request to ``provider``'s model, asking the secret question."""
    return client.post(f"{ROUTES[provider][0]}?chat_id=-1",
                       json={"messages": [{"role": "user", "content": SECRET}]})


@pytest.mark.parametrize("provider", sorted(ROUTES))
def test_html_error_page_is_plain_text(client, upstream, provider):
    """A proxy's HTML 502 page reaches the client as its text, without markup."""
    upstream.answer(502, NGINX_502)
    assert_error(chat(client, provider), 502, "502 Bad Gateway nginx")


def test_long_html_error_page_is_bounded(client, upstream):
    """A long HTML page is cut to at most 300 characters of plain text."""
    upstream.answer(503, "<html><body>" + "<p>Service unavailable, retry later.</p>\n" * 200)
    message = assert_error(chat(client, "openrouter"), 503)["statusMessage"]
    assert message.startswith("Service unavailable, retry later. Service unavailable")
    assert len(message) <= 300 and "<" not in message and "\n" not in message


@pytest.mark.parametrize("provider", sorted(ROUTES))
def test_upstream_404_keeps_its_message_and_carries_the_reason(client, upstream, caplog,
                                                               provider):
    """An upstream 404 is still the documented 400 "Service not available anymore.", with the
    upstream's reason in data; the warning names the model, not the messages."""
    reason = "model 'x' not found, try pulling it first"
    body = ({"errors": [{"message": reason, "code": 5007}], "success": False}
            if provider == "cloudflare" else {"error": reason})
    upstream.answer(404, body)
    with caplog.at_level(logging.WARNING, logger="neptun_flask.streaming.upstream"):
        response = chat(client, provider)
    error = assert_error(response, 400, "Service not available anymore.")
    assert error["data"] == {"upstream": reason}
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "neptun_flask.streaming.upstream"]
    assert warnings == [f"upstream {provider} answered 404 for model {ROUTES[provider][1]}"]
    assert SECRET not in caplog.text


def test_upstream_404_html_reason_is_plain_and_bounded(client, upstream):
    """The reason a 404 carries in data is plain and bounded like any upstream message."""
    upstream.answer(404, "<html><body><h1>Not Found</h1>" + "<p>no such model</p>" * 100)
    reason = assert_error(chat(client, "huggingface"), 400)["data"]["upstream"]
    assert reason.startswith("Not Found no such model no such model")
    assert len(reason) <= 300 and "<" not in reason
