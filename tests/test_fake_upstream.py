"""Self-check of the fake upstream: each provider's stream, limits, faults, statuses and auth."""
from __future__ import annotations

import http.client
import json
import time

import pytest
import requests

from tests.fakes import server as fake_server
from tests.fakes.upstream import FakeUpstream, expected_text

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROVIDERS = ["huggingface", "cloudflare", "openrouter", "ollama"]
PATHS = {"huggingface": "/hf-inference/models/org/model",
         "cloudflare": "/client/v4/accounts/acc/ai/run/@cf/meta/llama-3.1-8b-instruct",
         "openrouter": "/api/v1/chat/completions",
         "ollama": "/api/chat"}
#: The finish reason each provider reports for a natural end (Cloudflare native has none).
STOP = {"huggingface": "eos_token", "cloudflare": None, "openrouter": "stop", "ollama": "stop"}


@pytest.fixture(scope="module")
def server():
    """One fake for the module; 7 tokens so both "é" and "👋" appear."""
    with FakeUpstream(tokens=7, api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server):
    """The shared fake with an empty request log."""
    server.reset()
    return server


def make_body(provider: str, text: str, max_tokens: int | None = None) -> dict:
    """A streaming request body in the provider's shape."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    if provider == "huggingface":
        params = {"details": True, **({"max_new_tokens": max_tokens} if max_tokens else {})}
        return {"inputs": f"<s>[INST] {text} [/INST]", "parameters": params, "stream": True}
    if provider == "ollama":
        return {"model": "llama3.2", "messages": messages,
                "options": {"num_predict": max_tokens if max_tokens else -1}}
    body = {"model": "m", "messages": messages, "stream": True}
    return {**body, "max_tokens": max_tokens} if max_tokens else body


def post(fake, provider, text="Hi", max_tokens=None, headers=AUTH, timeout=5):
    """Open a streaming POST to the provider route."""
    body = make_body(provider, text, max_tokens)
    return requests.post(fake.base_url + PATHS[provider], json=body, headers=headers,
                         stream=True, timeout=timeout)


def payloads(response, provider):
    """Minimal framing: SSE ``data:`` payloads or NDJSON lines, as raw strings."""
    for line in response.iter_lines():
        line = line.decode("utf-8")
        if provider == "ollama":
            if line:
                yield line
        elif line.startswith("data:"):
            yield line[5:].strip()


def parse(response, provider, out=None) -> dict:
    """Collect text, finish reason, usage and whether the provider's terminator arrived."""
    out = {} if out is None else out
    out.update(text="", finish=None, usage=None, terminated=False, errors=[], malformed=0)
    for raw in payloads(response, provider):
        if raw == "[DONE]":
            out["terminated"] = True
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            out["malformed"] += 1
            continue
        if "error" in event or "errors" in event:
            out["errors"].append(event)
            continue
        PARSERS[provider](event, out)
    return out


def _hf(event, out):
    if not event["token"]["special"]:
        out["text"] += event["token"]["text"]
    if event["generated_text"] is not None:
        out["terminated"] = True
        assert event["generated_text"] == out["text"]
        out["finish"] = event["details"]["finish_reason"]
        out["usage"] = event["details"]["generated_tokens"]


def _cloudflare(event, out):
    out["text"] += event["response"]
    out["usage"] = event.get("usage", out["usage"])


def _openrouter(event, out):
    for choice in event["choices"]:
        out["text"] += choice["delta"].get("content") or ""
        out["finish"] = choice["finish_reason"] or out["finish"]
    out["usage"] = event.get("usage", out["usage"])


def _ollama(event, out):
    out["text"] += event["message"]["content"]
    if event["done"]:
        out["terminated"] = True
        out["finish"], out["usage"] = event["done_reason"], event["eval_count"]


PARSERS = {"huggingface": _hf, "cloudflare": _cloudflare, "openrouter": _openrouter,
           "ollama": _ollama}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_full_reply_matches_expected_text(fake, provider):
    with post(fake, provider) as response:
        assert response.status_code == 200
        result = parse(response, provider)
    assert result["text"] == expected_text(7) and "é" in result["text"] and "👋" in result["text"]
    assert result["finish"] == STOP[provider] and result["terminated"]
    assert result["usage"] is not None
    (entry,) = fake.requests()
    assert (entry["provider"], entry["outcome"], entry["tokens_sent"]) == (provider, "complete", 7)
    assert entry["headers"]["authorization"] == AUTH["Authorization"] or provider == "ollama"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_tokens_stops_with_length(fake, provider):
    with post(fake, provider, max_tokens=3) as response:
        result = parse(response, provider)
    assert result["text"] == expected_text(3) and result["terminated"]
    if provider != "cloudflare":
        assert result["finish"] == "length"


def test_pieces_replace_tokens_and_survive_ollama_escaping(fake):
    pieces = ["<think>", "hmm", "</think>", " A & B"]
    with post(fake, "ollama", f'Q [[fake {json.dumps({"pieces": pieces})}]]') as response:
        raw = response.content
    assert b"\\u003cthink\\u003e" in raw and b"\\u0026" in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == "".join(pieces)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reset_breaks_the_connection_after_the_tokens_before_it(fake, provider):
    result = {}
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        with post(fake, provider, 'x [[fake {"fault": "reset", "at": 2}]]') as response:
            parse(response, provider, result)
    assert result["text"] == expected_text(2)
    entry = fake.wait_for(lambda log: log and log[0]["outcome"] and log[0])
    assert (entry["outcome"], entry["tokens_sent"]) == ("fault", 2)


def test_reset_before_headers(fake):
    with pytest.raises(requests.ConnectionError):
        post(fake, "huggingface", 'x [[fake {"fault": "reset", "at": -1}]]')


def test_delay_headers_holds_back_the_status(fake):
    directive = '{"first_delay_ms": 400, "delay_headers": true}'
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(fake, "ollama", f"x [[fake {directive}]]", timeout=0.1)


def test_stall_gives_up_after_its_limit(fake, monkeypatch):
    monkeypatch.setattr(fake_server, "STALL_SECONDS", 0.2)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        with post(fake, "cloudflare", 'x [[fake {"fault": "stall", "at": 1}]]') as response:
            response.content
    assert fake.requests()[0]["outcome"] == "fault"


def test_stop_ends_open_streams_quickly():
    fake = FakeUpstream().start()
    response = post(fake, "ollama", 'x [[fake {"fault": "stall", "at": 1}]]')
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content


@pytest.mark.parametrize("directive", ['{"fault": "stall", "at": 1}',
                                       '{"delay_ms": 5000}'])
def test_client_close_is_noticed_while_idle(fake, directive):
    response = post(fake, "openrouter", f"x [[fake {directive}]]")
    lines = response.iter_lines()
    while b"t0" not in next(lines):
        pass
    fake.wait_for(lambda log: log[0]["tokens_sent"] == 1)
    closed = time.monotonic()
    response.close()
    entry = fake.wait_for(lambda log: log[0]["outcome"] == "client_closed" and log[0], timeout=2)
    assert 0 <= entry["closed_at"] - closed < 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_event_then_proper_end(fake, provider):
    with post(fake, provider, 'x [[fake {"fault": "malformed", "at": 2}]]') as response:
        result = parse(response, provider)
    assert result["malformed"] == 1 and result["text"] == expected_text(2)
    assert not result["terminated"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_event_in_provider_shape(fake, provider):
    with post(fake, provider, 'x [[fake {"fault": "error_event", "at": 3}]]') as response:
        result = parse(response, provider)
    assert result["text"] == expected_text(3) and not result["terminated"]
    (error,) = result["errors"]
    if provider == "huggingface":
        assert error["error_type"] == "generation"
    elif provider == "openrouter":
        assert error["choices"][0]["finish_reason"] == "error" and error["error"]["message"]
    elif provider == "cloudflare":
        assert error["errors"][0]["code"] == 3050
    else:
        assert isinstance(error["error"], str)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_terminator(fake, provider):
    with post(fake, provider, 'x [[fake {"fault": "no_terminator", "tokens": 4}]]') as response:
        result = parse(response, provider)
    assert result["text"] == expected_text(4) and not result["terminated"]
    assert result["finish"] is None and result["usage"] is None


@pytest.mark.parametrize("provider, message", [
    ("huggingface", lambda b: b["error"]), ("cloudflare", lambda b: b["errors"][0]["message"]),
    ("openrouter", lambda b: b["error"]["message"]), ("ollama", lambda b: b["error"])])
def test_status_directive(fake, provider, message):
    directive = '{"status": 503, "body": "busy", "retry_after": 7}'
    with post(fake, provider, f"x [[fake {directive}]]") as response:
        assert response.status_code == 503 and response.headers["Retry-After"] == "7"
        assert "busy" in message(response.json())
    assert fake.requests()[0]["outcome"] == "error_status", fake.requests()


def test_status_directive_times(fake):
    """``times``: the status answers the first requests of the same directive, then it
    streams; another directive counts on its own."""
    directive = '{"status": 503, "body": "busy %s", "times": 2}'
    statuses = []
    for body in ("a", "a", "b", "a"):
        with post(fake, "ollama", "x [[fake " + directive % body + "]]") as response:
            statuses.append(response.status_code)
            response.content
    assert statuses == [503, 503, 503, 200]


@pytest.mark.parametrize("provider, body", [
    ("huggingface", {"error": "Invalid credentials in Authorization header"}),
    ("cloudflare", {"result": None, "success": False, "messages": [],
                    "errors": [{"code": 10000, "message": "Authentication error"}]}),
    ("openrouter", {"error": {"message": "No auth credentials found", "code": 401}})])
def test_wrong_key_gets_401(fake, provider, body):
    with post(fake, provider, headers={"Authorization": "Bearer nope"}) as response:
        assert (response.status_code, response.json()) == (401, body)


def test_ollama_ignores_auth(fake):
    with post(fake, "ollama", headers={}) as response:
        assert response.status_code == 200


def test_keep_alive_serves_several_requests_per_connection(fake):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    for _ in range(3):
        conn.request("POST", PATHS["ollama"], json.dumps(make_body("ollama", "Hi")))
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.read().count(b"\n") == 8
    conn.request("GET", "/api/version")
    assert json.loads(conn.getresponse().read()) == {"version": "0.12.3"}
    conn.close()


def test_metadata_unknown_path_and_control_endpoints(fake):
    assert requests.get(fake.base_url + "/api/tags", timeout=5).json()["models"]
    missing = requests.post(fake.base_url + "/v2/nothing", json={}, timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]
    log = requests.get(fake.base_url + "/_fake/requests", timeout=5).json()
    assert [entry["path"] for entry in log] == ["/v2/nothing"]
    assert requests.post(fake.base_url + "/_fake/reset", timeout=5).ok
    assert fake.requests() == []


def test_delays_pace_the_tokens(fake):
    started = time.monotonic()
    directive = '{"tokens": 3, "first_delay_ms": 60, "delay_ms": 40}'
    with post(fake, "cloudflare", f"x [[fake {directive}]]") as response:
        result = parse(response, "cloudflare")
    assert result["text"] == expected_text(3)
    assert 0.14 <= time.monotonic() - started < 1


def test_bad_directive_is_rejected(fake):
    with post(fake, "openrouter", 'x [[fake {"tokenz": 3}]]') as response:
        assert response.status_code == 400 and "tokenz" in response.json()["error"]["message"]
