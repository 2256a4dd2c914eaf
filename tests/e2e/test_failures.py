"""End to end: upstream failures before and after the first byte, timeouts, disconnects."""
from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.fakes.protocols import expected_text

from .conftest import TIMEOUT_ENV, Client
from .server import ROOT, Gunicorn, free_port, upstream_env
from .streams import parse_data_stream
from .test_streaming import MODEL_PATHS, directive

PROVIDERS = sorted(MODEL_PATHS)


@pytest.mark.parametrize("status,expected_status,message", [
    (401, 502, "Upstream authentication failed"),
    (403, 502, "Upstream authentication failed"),
    (404, 400, "Service not available anymore."),
    (410, 400, "Service not available anymore."),
    (400, 502, "fake says no"),
    (402, 502, "fake says no"),
    (500, 502, "fake says no"),
    (503, 503, "fake says no"),
])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_upstream_status_before_first_byte(api, provider, status, expected_status, message):
    """An upstream error status becomes a JSON error with the mapped status."""
    response = api.chat(MODEL_PATHS[provider], directive(status=status, body="fake says no"))
    assert response.status_code == expected_status
    body = response.json()
    assert body["statusCode"] == expected_status
    assert body["statusMessage"] == message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_upstream_429_keeps_retry_after(api, provider):
    """429 passes through with the upstream's Retry-After."""
    response = api.chat(MODEL_PATHS[provider],
                        directive(status=429, body="slow down", retry_after=7))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["statusMessage"] == "slow down"


def test_upstream_headers_too_slow_is_504(api):
    """No response within the first-token timeout (2 s here) is a 504 JSON error."""
    response = api.chat(MODEL_PATHS["openrouter"],
                        directive(first_delay_ms=3000, delay_headers=True))
    assert response.status_code == 504
    assert response.json()["statusCode"] == 504


@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_event_before_any_text_is_an_http_error(api, provider):
    """An in-stream error before the first token still gets a real HTTP status."""
    response = api.chat(MODEL_PATHS[provider], directive(fault="error_event", at=0))
    assert response.status_code == 502
    assert response.json()["statusCode"] == 502


@pytest.mark.parametrize("fault", ["error_event", "malformed", "no_terminator", "reset"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_failure_after_first_byte(api, provider, fault):
    """After the first byte: the partial text, one error part, then finish parts with "error"."""
    chat_id = api.create_chat("ollama/rwkv-6-world")
    response = api.chat(MODEL_PATHS[provider], directive(fault=fault, at=2), chat_id=chat_id)
    assert response.status_code == 200
    reply = parse_data_stream(response.text)
    sent = expected_text(5 if fault == "no_terminator" else 2)  # no_terminator sends all tokens
    assert reply.text == sent
    assert len(reply.errors) == 1
    assert reply.codes[-3:] == ["3", "e", "d"]
    assert reply.finish["finishReason"] == "error"
    stored = api.messages(chat_id)[-1]
    assert (stored["actor"], stored["message"], stored["finish_reason"]) == (
        "assistant", sent, "error")
    # The upstream failed before its usage: the stored counts are marked as estimates.
    assert stored["usage"]["estimated"] is True and stored["usage"]["completionTokens"] > 0


def test_stalled_upstream_hits_idle_timeout(api):
    """An upstream silent for longer than UPSTREAM_IDLE_TIMEOUT (1 s here; the first-token
    timeout is 2 s) ends as an error after about 1 s."""
    started = time.monotonic()
    reply = parse_data_stream(api.chat(MODEL_PATHS["huggingface"],
                                       directive(fault="stall", at=3)).text)
    assert reply.text == expected_text(3)
    assert reply.finish["finishReason"] == "error"
    assert "timed out" in reply.errors[0]
    assert 0.9 < time.monotonic() - started < 1.9


def _read_parts(response: requests.Response, count: int) -> None:
    """Read the stream until ``count`` text parts arrived."""
    seen = 0
    for line in response.iter_lines():
        seen += line.startswith(b"0:")
        if seen == count:
            return
    raise AssertionError("stream ended early")


@pytest.mark.parametrize("fault", [{"fault": "stall", "at": 2}, {"tokens": 200, "delay_ms": 50}])
def test_client_disconnect_closes_upstream_and_stores_partial(server, upstream, fault):
    """A client that goes away closes the upstream within 1 s; the partial reply is "aborted"."""
    api = Client(server.base_url)
    chat_id = api.create_chat("qwen/Qwen2.5-72B-Instruct")
    upstream.reset()
    response = api.chat(MODEL_PATHS["huggingface"], directive(**fault), chat_id=chat_id,
                        stream=True)
    _read_parts(response, 2)
    response.close()  # an unfinished streamed response closes its connection, like a closed tab
    closed = time.monotonic()
    entry = upstream.wait_for(lambda log: [e for e in log if e["closed_at"]], timeout=5)[0]
    assert entry["outcome"] == "client_closed"
    assert entry["closed_at"] - closed < 1.0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stored = api.messages(chat_id)
        if len(stored) == 2 and stored[1]["finish_reason"] is not None:
            break
        time.sleep(0.05)
    assert stored[1]["finish_reason"] == "aborted"
    assert stored[1]["message"].startswith(expected_text(2))


@pytest.fixture(scope="module")
def broken_server(migrated):
    """A server whose Hugging Face has no key and whose other providers point at a dead port."""
    env = upstream_env(f"http://127.0.0.1:{free_port()}")
    env["HUGGINGFACE_API_KEY"] = ""
    process = Gunicorn({"DATABASE_URL": migrated, **env, "UPSTREAM_CONNECT_TIMEOUT": "2"})
    yield process
    process.stop()


def test_provider_not_configured_is_503(broken_server):
    """Missing credentials are a 503 naming the provider, not a 500."""
    response = Client(broken_server.base_url).chat(MODEL_PATHS["huggingface"])
    assert response.status_code == 503
    assert response.json() == {"statusCode": 503,
                               "statusMessage": "Provider huggingface is not configured"}


@pytest.mark.parametrize("provider", ["cloudflare", "openrouter", "ollama"])
def test_refused_connection_is_503(broken_server, provider):
    """An upstream that refuses connections is a 503 JSON error."""
    response = Client(broken_server.base_url).chat(MODEL_PATHS[provider])
    assert response.status_code == 503
    assert response.json()["statusMessage"] == f"Provider {provider} is unreachable"


@pytest.fixture(scope="module")
def impatient_server(upstream, migrated):
    """The app with UPSTREAM_TOTAL_TIMEOUT=1."""
    process = Gunicorn({"DATABASE_URL": migrated, **upstream_env(upstream.base_url),
                        **TIMEOUT_ENV, "UPSTREAM_TOTAL_TIMEOUT": "1"})
    yield process
    process.stop()


def test_total_timeout_ends_a_long_reply(impatient_server):
    """A reply still streaming after UPSTREAM_TOTAL_TIMEOUT ends with an error part."""
    api = Client(impatient_server.base_url)
    started = time.monotonic()
    reply = parse_data_stream(api.chat(MODEL_PATHS["ollama"],
                                       directive(tokens=20, delay_ms=200)).text)
    assert reply.finish["finishReason"] == "error"
    assert reply.errors == ["The model took longer than the total time allowed."]
    assert expected_text(20).startswith(reply.text) and 0 < len(reply.text)
    assert reply.text != expected_text(20)
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_upstream_past_its_token_limit_is_cut_there(server, api, provider):
    """An upstream that sends more events than the reply's max tokens (each event carries a
    token) is cut there with finish ``length``, instead of streaming on."""
    model = {"huggingface": "qwen/Qwen2.5-72B-Instruct",
             "cloudflare": "cloudflare/llama-3.3-70b-instruct-fp8-fast",
             "openrouter": "openrouter/llama-3.3-70b-instruct",
             "ollama": "ollama/rwkv-6-world"}[provider]
    body = {"model": model, "max_tokens": 5, "stream": False, "messages": [
        {"role": "user", "content": directive(tokens=200, overrun=True)}]}
    response = api.http.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    text = choice["message"]["content"]
    # Cut within a read of the limit (5 tokens plus a few events of slack), not at 200.
    assert expected_text(200).startswith(text) and len(text) < len(expected_text(20))


def test_limits_fail_open_when_their_storage_is_away(upstream, migrated):
    """Rate limits on a Redis that is away (a closed port): sign-up and login answer as usual
    (not 500); Flask-Limiter logs the failure."""
    server = Gunicorn({"DATABASE_URL": migrated, **upstream_env(upstream.base_url),
                       "RATELIMIT_ENABLED": "true",
                       "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:9/0"})
    try:
        api = Client(server.base_url)   # signs up
        login = requests.post(f"{server.base_url}/api/auth/login", timeout=10,
                              json={"email": "nobody@example.com", "password": "long enough"})
        assert login.status_code == 401
    finally:
        server.stop()
    assert api.user_id


def _raw_request(base_url: str, data: bytes) -> tuple[str, dict, bytes]:
    """Send raw bytes; return the status line, headers and body of the answer."""
    host, port = base_url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: v\r\n" % index for index in range(150)) + b"\r\n", 431),
    (b"NOT A REQUEST LINE\r\n\r\n", 400),
    (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400),
])
def test_errors_gunicorn_answers_itself_are_json(server, request_bytes, status):
    """What gunicorn refuses before Flask sees it is JSON in the API's shape, never HTML."""
    status_line, headers, body = _raw_request(server.base_url, request_bytes)
    assert status_line.startswith(f"HTTP/1.1 {status} ")
    assert headers["Content-Type"] == "application/json"
    parsed = json.loads(body)
    assert parsed["statusCode"] == status and isinstance(parsed["statusMessage"], str)


@pytest.fixture(scope="module")
def fallback_server(upstream, migrated, tmp_path_factory):
    """The app with a catalog whose Ollama model falls back to an OpenRouter model, and short
    waits between retries."""
    document = json.loads((ROOT / "neptun_flask" / "catalog.json").read_text(encoding="utf-8"))
    document["ollama"]["rwkv-6-world"]["fallbacks"] = ["openrouter/deepseek-chat"]
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.json"
    catalog.write_text(json.dumps(document), encoding="utf-8")
    process = Gunicorn({"DATABASE_URL": migrated, **upstream_env(upstream.base_url),
                        **TIMEOUT_ENV, "NEPTUN_MODELS_FILE": str(catalog),
                        "UPSTREAM_RETRY_MAX_WAIT": "1.5"})
    yield process
    process.stop()


def _asked(upstream) -> list[str]:
    """The upstream model ids the fake was asked for, in order."""
    return [entry["json"]["model"] for entry in upstream.requests()]


def test_retries_then_fallback_under_gevent(fallback_server, upstream):
    """503 from every try of the model (1 + 2 retries): its fallback answers the stream, and
    the stored reply names the fallback; the OpenAI API's chunks name it too."""
    api = Client(fallback_server.base_url)
    chat_id = api.create_chat("ollama/rwkv-6-world")
    upstream.reset()
    busy = directive(status=503, body=f"busy {time.monotonic_ns()}", times=3)
    reply = parse_data_stream(api.chat(MODEL_PATHS["ollama"], busy, chat_id=chat_id).text)
    assert (reply.text, reply.finish["finishReason"]) == (expected_text(5), "stop")
    assert _asked(upstream) == ["mollysama/rwkv-6-world:1.6b"] * 3 + [
        "deepseek/deepseek-chat:free"]
    stored = api.messages(chat_id)[-1]
    assert (stored["message"], stored["model"]) == (expected_text(5), "openrouter/deepseek-chat")
    busy = directive(status=503, body=f"busy {time.monotonic_ns()}", times=3)
    response = api.http.post(f"{fallback_server.base_url}/v1/chat/completions", timeout=30,
                             json={"model": "ollama/rwkv-6-world", "stream": True,
                                   "messages": [{"role": "user", "content": busy}]})
    assert response.status_code == 200, response.text
    chunks = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: {")]
    assert chunks and {chunk["model"] for chunk in chunks} == {"openrouter/deepseek-chat"}


def test_retry_after_wait_lets_other_requests_run(fallback_server, upstream):
    """A request waiting out ``Retry-After: 1`` does not hold up the worker: another request
    is answered meanwhile; the waiting one then gets its reply from the same model."""
    api = Client(fallback_server.base_url)
    upstream.reset()
    waiting = directive(status=429, retry_after=1, body=f"later {time.monotonic_ns()}", times=1)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        slow = pool.submit(api.chat, MODEL_PATHS["ollama"], waiting)
        upstream.wait_for(lambda log: any(e["outcome"] == "error_status" for e in log))
        quick = api.chat(MODEL_PATHS["openrouter"], "Hi")
        quick_done = time.monotonic() - started
        reply = parse_data_stream(slow.result().text)
    assert parse_data_stream(quick.text).text == expected_text(5)
    assert quick_done < 0.9
    assert reply.text == expected_text(5) and time.monotonic() - started >= 1.0
