"""Retries and fallbacks before the first token (streaming/retry.py), against the fake upstream
over real HTTP: which failures are asked again, the waits, the fallbacks' order, the model
stored and named, and that nothing is asked again after the first byte."""
from __future__ import annotations

import copy
import json
import logging
import time
import uuid

import pytest

from neptun_flask.catalog import CatalogError
from neptun_flask.startup import StartupError
from tests.api.helpers import assert_error, create_chat
from tests.api.test_catalog import built_in, write_catalog
from tests.conftest import sign_up
from tests.fakes.protocols import expected_text
from tests.fakes.upstream import FakeUpstream

CLOSED = "http://127.0.0.1:9"   # nothing listens on the discard port: connections are refused
PRIMARY = "ollama/rwkv-6-world"
FIRST_FALLBACK = "openrouter/deepseek-chat"
SECOND_FALLBACK = "openrouter/llama-3.3-70b-instruct"
CHAT_PATH = "/api/ai/ollama/rwkv-6-world/chat"
#: The upstream model ids the fake is asked for, by catalog id.
UPSTREAM_IDS = {PRIMARY: "mollysama/rwkv-6-world:1.6b",
                FIRST_FALLBACK: "deepseek/deepseek-chat:free",
                SECOND_FALLBACK: "meta-llama/llama-3.3-70b-instruct:free"}


@pytest.fixture(scope="module")
def fake():
    """The module's fake upstream (5 tokens per reply)."""
    with FakeUpstream(tokens=5) as server:
        yield server


def catalog_with(tmp_path, fallbacks: dict[str, list[str]]) -> str:
    """The built-in catalog with ``fallbacks`` set on the given models; its file's path."""
    document = copy.deepcopy(built_in())
    for model_id, ids in fallbacks.items():
        publisher, name = model_id.split("/", 1)
        document[publisher][name]["fallbacks"] = ids
    return write_catalog(tmp_path, document)


@pytest.fixture
def make_client(app_factory, fake, tmp_path):
    """A logged-in client of an app whose providers point at the fake (``ollama_url`` may
    point Ollama elsewhere), with the primary's fallbacks set (none if ``fallbacks=()``)."""

    def make(fallbacks=(FIRST_FALLBACK, SECOND_FALLBACK), ollama_url=None, **config):
        config = {"UPSTREAM_CONNECT_TIMEOUT": 2.0, "UPSTREAM_FIRST_TOKEN_TIMEOUT": 5.0, **config}
        app = app_factory(
            OPENROUTER_API_KEY="or-key", OPENROUTER_BASE_URL=fake.base_url,
            OLLAMA_BASE_URL=ollama_url or fake.base_url,
            NEPTUN_MODELS_FILE=catalog_with(tmp_path, {PRIMARY: list(fallbacks)}), **config)
        client = app.test_client()
        client.user_id = sign_up(client, f"{uuid.uuid4().hex[:10]}@example.com")
        fake.reset()
        return client

    return make


def steer(**scenario) -> str:
    """A user message steering the fake; a unique body keeps ``times`` counts apart."""
    scenario.setdefault("body", f"busy {uuid.uuid4().hex[:8]}")
    return f"Hi [[fake {json.dumps(scenario)}]]"


def chat(client, content: str, chat_id: int = -1):
    """POST one chat turn to the primary model."""
    return client.post(f"{CHAT_PATH}?chat_id={chat_id}",
                       json={"messages": [{"role": "user", "content": content}]})


def text_of(response) -> str:
    """The text parts of a data stream reply."""
    assert response.status_code == 200, response.get_data(as_text=True)
    lines = response.get_data(as_text=True).splitlines()
    return "".join(json.loads(line[2:]) for line in lines if line.startswith("0:"))


def asked(fake) -> list[str]:
    """The catalog ids of the models the fake was asked for, in order."""
    by_upstream = {upstream: model for model, upstream in UPSTREAM_IDS.items()}
    return [by_upstream[entry["json"]["model"]] for entry in fake.requests()]


def stored_reply(client, chat_id: int) -> dict:
    """The chat's last stored message."""
    response = client.get(f"/api/users/{client.user_id}/chats/{chat_id}/messages")
    assert response.status_code == 200
    return response.get_json()["chatMessages"][-1]


def test_503_twice_then_200_is_one_complete_reply(make_client, fake):
    """Two 503s, then the stream: the reply is whole, after three upstream requests of the
    requested model; the stored reply names it."""
    client = make_client(fallbacks=())
    chat_id = create_chat(client, client.user_id, model=PRIMARY)["id"]
    assert text_of(chat(client, steer(status=503, times=2), chat_id)) == expected_text(5)
    assert asked(fake) == [PRIMARY] * 3
    stored = stored_reply(client, chat_id)
    assert (stored["message"], stored["model"], stored["finish_reason"]) == (
        expected_text(5), PRIMARY, "stop")


@pytest.mark.parametrize("status", [429, 500, 502, 504])
def test_429_and_5xx_are_retried(make_client, fake, status):
    """429 and any 5xx are asked again."""
    client = make_client(fallbacks=())
    assert text_of(chat(client, steer(status=status, times=1))) == expected_text(5)
    assert asked(fake) == [PRIMARY] * 2


def test_connection_refused_is_retried_then_answered(make_client, caplog):
    """An upstream nobody listens on is tried 1 + UPSTREAM_RETRIES times, then 503."""
    client = make_client(fallbacks=(), ollama_url=CLOSED)
    with caplog.at_level(logging.WARNING, logger="neptun_flask.streaming.upstream"):
        assert_error(chat(client, "Hi"), 503, "Provider ollama is unreachable")
    assert [r.getMessage() for r in caplog.records
            if r.name == "neptun_flask.streaming.upstream"] == [
        "upstream ollama unreachable: ConnectionError"] * 3


def test_connection_refused_falls_back(make_client, fake):
    """An unreachable model's fallback answers; the stored reply names the fallback."""
    client = make_client(ollama_url=CLOSED)
    chat_id = create_chat(client, client.user_id, model=PRIMARY)["id"]
    assert text_of(chat(client, "Hi", chat_id)) == expected_text(5)
    assert asked(fake) == [FIRST_FALLBACK]
    stored = stored_reply(client, chat_id)
    assert (stored["message"], stored["model"]) == (expected_text(5), FIRST_FALLBACK)


def test_retry_after_is_waited(make_client, fake):
    """A 429 with ``Retry-After: 1`` is asked again after at least 1 s."""
    client = make_client(fallbacks=())
    started = time.monotonic()
    assert text_of(chat(client, steer(status=429, retry_after=1, times=1))) == expected_text(5)
    assert time.monotonic() - started >= 1.0
    log = fake.requests()
    assert len(log) == 2 and log[1]["started"] - log[0]["started"] >= 1.0


def test_retry_after_past_the_cap_is_answered_at_once(make_client, fake):
    """A Retry-After longer than UPSTREAM_RETRY_MAX_WAIT is not waited: with no fallback, the
    429 and its Retry-After reach the client at once."""
    client = make_client(fallbacks=(), UPSTREAM_RETRY_MAX_WAIT=2.0)
    started = time.monotonic()
    response = chat(client, steer(status=429, retry_after=3))
    assert_error(response, 429)
    assert response.headers["Retry-After"] == "3"
    assert time.monotonic() - started < 1.0
    assert asked(fake) == [PRIMARY]


def test_retry_after_past_the_cap_goes_to_the_fallback_at_once(make_client, fake):
    """With fallbacks, a Retry-After past the cap moves on to the first one at once."""
    client = make_client(UPSTREAM_RETRY_MAX_WAIT=2.0)
    started = time.monotonic()
    assert text_of(chat(client, steer(status=429, retry_after=30, times=1))) == expected_text(5)
    assert time.monotonic() - started < 1.0
    assert asked(fake) == [PRIMARY, FIRST_FALLBACK]


def test_retries_exhausted_fall_back_in_order(make_client, fake):
    """After 1 + UPSTREAM_RETRIES tries of the model, each fallback is asked once, in order;
    the one that answers is the stored reply's model."""
    client = make_client()
    chat_id = create_chat(client, client.user_id, model=PRIMARY)["id"]
    assert text_of(chat(client, steer(status=503, times=4), chat_id)) == expected_text(5)
    assert asked(fake) == [PRIMARY] * 3 + [FIRST_FALLBACK, SECOND_FALLBACK]
    stored = stored_reply(client, chat_id)
    assert (stored["message"], stored["model"]) == (expected_text(5), SECOND_FALLBACK)


def test_every_model_failing_answers_the_requested_models_error(make_client, fake):
    """When the fallbacks fail too, the client gets the requested model's last error."""
    client = make_client()
    assert_error(chat(client, steer(status=503, body="all busy")), 503, "all busy")
    assert asked(fake) == [PRIMARY] * 3 + [FIRST_FALLBACK, SECOND_FALLBACK]


@pytest.mark.parametrize("status,expected", [(400, 502), (401, 502), (404, 400)])
def test_client_errors_are_not_retried(make_client, fake, status, expected):
    """400, 401 and 404 are answered at once: one request, no fallback."""
    client = make_client()
    assert_error(chat(client, steer(status=status)), expected)
    assert asked(fake) == [PRIMARY]


def test_first_token_timeout_is_not_retried(make_client, fake):
    """An upstream that sends no answer within the first-token timeout spent the budget:
    504 after one request."""
    client = make_client(UPSTREAM_FIRST_TOKEN_TIMEOUT=0.5)
    assert_error(chat(client, steer(first_delay_ms=1500, delay_headers=True)), 504)
    assert asked(fake) == [PRIMARY]


def test_failure_after_the_first_byte_is_not_retried(make_client, fake):
    """An error after content streamed ends the reply as an error, as before; the upstream is
    asked once, and the stored reply keeps the requested model."""
    client = make_client()
    chat_id = create_chat(client, client.user_id, model=PRIMARY)["id"]
    assert text_of(chat(client, steer(fault="error_event", at=2), chat_id)) == expected_text(2)
    assert asked(fake) == [PRIMARY]
    stored = stored_reply(client, chat_id)
    assert (stored["message"], stored["finish_reason"], stored["model"]) == (
        expected_text(2), "error", PRIMARY)


def test_no_retries_when_disabled(make_client, fake):
    """UPSTREAM_RETRIES=0: a 503 is answered after one request (fallbacks are still asked)."""
    client = make_client(fallbacks=(), UPSTREAM_RETRIES=0)
    assert_error(chat(client, steer(status=503, times=1)), 503)
    assert asked(fake) == [PRIMARY]
    client = make_client(UPSTREAM_RETRIES=0)
    assert text_of(chat(client, steer(status=503, times=1))) == expected_text(5)
    assert asked(fake) == [PRIMARY, FIRST_FALLBACK]


@pytest.mark.parametrize("stream", [True, False])
def test_openai_api_names_the_fallback(make_client, fake, stream):
    """The OpenAI API retries and falls back the same way; its chunks (or completion) name
    the model that answered."""
    client = make_client()
    response = client.post("/v1/chat/completions", json={
        "model": PRIMARY, "stream": stream,
        "messages": [{"role": "user", "content": steer(status=503, times=3)}]})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert asked(fake) == [PRIMARY] * 3 + [FIRST_FALLBACK]
    if not stream:
        completion = response.get_json()
        assert completion["model"] == FIRST_FALLBACK
        assert completion["choices"][0]["message"]["content"] == expected_text(5)
        return
    chunks = [json.loads(line[6:]) for line in response.get_data(as_text=True).splitlines()
              if line.startswith("data: {")]
    assert chunks and {chunk["model"] for chunk in chunks} == {FIRST_FALLBACK}
    assert "".join(chunk["choices"][0]["delta"].get("content") or ""
                   for chunk in chunks if chunk["choices"]) == expected_text(5)


@pytest.mark.parametrize("fallbacks,match", [
    (["ollama/no-such-model"], r"ollama/rwkv-6-world: fallback 'ollama/no-such-model' is not "
                               r"a model of the catalog"),
    ([PRIMARY], r"fallback 'ollama/rwkv-6-world' is the model itself"),
    ([FIRST_FALLBACK, FIRST_FALLBACK], r"fallbacks repeat a model"),
    (["qwen/Qwen2.5-Coder-32B-Instruct"], r"is retired"),
    ("openrouter/deepseek-chat", r"fallbacks"),
], ids=["unknown", "itself", "repeated", "retired", "not-a-list"])
def test_bad_fallbacks_stop_startup(app_factory, tmp_path, fallbacks, match):
    """Fallbacks must name other, live models of the catalog, in a list."""
    document = copy.deepcopy(built_in())
    document["ollama"]["rwkv-6-world"]["fallbacks"] = fallbacks
    document["qwen"]["Qwen2.5-Coder-32B-Instruct"]["retired"] = True
    with pytest.raises(CatalogError, match=match):
        app_factory(NEPTUN_MODELS_FILE=write_catalog(tmp_path, document))


def test_fallbacks_are_not_in_the_models_document(app_factory, tmp_path):
    """``fallbacks`` is the server's routing: /api/models shows the entry without it."""
    app = app_factory(NEPTUN_MODELS_FILE=catalog_with(tmp_path, {PRIMARY: [FIRST_FALLBACK]}))
    document = app.test_client().get("/api/models").get_json()
    assert document["configurations"]["ollama"]["rwkv-6-world"] == \
        built_in()["ollama"]["rwkv-6-world"]


@pytest.mark.parametrize("name,value", [("UPSTREAM_RETRIES", "-1"),
                                        ("UPSTREAM_RETRIES", "two"),
                                        ("UPSTREAM_RETRY_MAX_WAIT", "-0.5")])
def test_bad_retry_settings_stop_startup(name, value):
    """The retry settings are non-negative numbers."""
    from neptun_flask.config import load_config
    with pytest.raises(StartupError, match=name):
        load_config({name: value})


def test_a_fallback_that_cannot_be_asked_is_skipped(make_client, fake, caplog):
    """A fallback whose provider is not configured (Hugging Face has no key here) is skipped
    with a warning; the next one answers."""
    client = make_client(fallbacks=("qwen/Qwen2.5-72B-Instruct", FIRST_FALLBACK),
                         ollama_url=CLOSED)
    with caplog.at_level(logging.WARNING, logger="neptun_flask.streaming.retry"):
        assert text_of(chat(client, "Hi")) == expected_text(5)
    assert asked(fake) == [FIRST_FALLBACK]
    assert "fallback qwen/Qwen2.5-72B-Instruct skipped: Provider huggingface is not " \
           "configured" in caplog.text


def test_an_error_event_before_any_content_is_not_retried(make_client, fake):
    """An upstream that answered 200 and then an error event before any text is not asked
    again (the rule covers the answer's status only): 502 after one request."""
    client = make_client()
    assert_error(chat(client, steer(fault="error_event", at=0)), 502)
    assert asked(fake) == [PRIMARY]


@pytest.mark.parametrize("header,low,high", [
    ("3", 3.0, 3.0), ("0", 0.0, 0.0), (None, None, None), ("", None, None),
    ("soon", None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0)])
def test_retry_after_header_in_seconds(header, low, high):
    """Retry-After as delay-seconds or an HTTP date (a past one is 0); unreadable is None."""
    from neptun_flask.streaming.upstream import retry_after_seconds
    seconds = retry_after_seconds(header)
    if low is None:
        assert seconds is None
    else:
        assert low <= seconds <= high


def test_retry_after_http_date_in_the_future():
    """An HTTP date 30 s ahead is about 30 s."""
    from email.utils import formatdate

    from neptun_flask.streaming.upstream import retry_after_seconds
    assert 28 <= retry_after_seconds(formatdate(time.time() + 30, usegmt=True)) <= 30
