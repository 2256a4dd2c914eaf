"""End to end: every model streams through gunicorn + gevent from the fake upstream."""
from __future__ import annotations

import json

import pytest
import requests

from tests.fakes.protocols import expected_text

from .streams import parse_data_stream

MODEL_PATHS = {
    "huggingface": "huggingface/Qwen2.5-72B-Instruct",
    "cloudflare": "cloudflare/llama-3.3-70b-instruct-fp8-fast",
    "openrouter": "openrouter/llama-3.3-70b-instruct",
    "ollama": "ollama/rwkv-6-world",
}


def directive(**scenario) -> str:
    """A user message that steers the fake upstream."""
    return f"Hi [[fake {json.dumps(scenario)}]]"


def all_chat_paths(base_url: str) -> list[str]:
    """Every advertised endpoint plus the router path of every model."""
    catalog = requests.get(f"{base_url}/api/models", timeout=5).json()
    paths = [path for paths in catalog["endpoints"].values() for path in paths]
    paths += [f"/api/ai/{model}/chat" for model in catalog["models"]]
    return paths


def test_every_endpoint_and_router_path_streams(api, server):
    """Each path of /api/models endpoints and each router path streams the whole reply."""
    paths = all_chat_paths(server.base_url)
    assert len(paths) == 24
    for path in paths:
        response = api.chat(path.removeprefix("/api/ai/").removesuffix("/chat"))
        assert response.status_code == 200, (path, response.text)
        reply = parse_data_stream(response.text)
        # DeepSeek-R1's prompt opens <think>, so its whole (tag-less) reply is reasoning.
        assert reply.reasoning + reply.text == expected_text(5), path
        assert reply.errors == []
        assert reply.finish["finishReason"] == "stop"
        assert reply.codes[0] == "f"


def test_long_huggingface_form(api):
    """/api/ai/huggingface/<publisher>/<name>/chat streams too."""
    reply = parse_data_stream(api.chat("huggingface/qwen/Qwen2.5-72B-Instruct").text)
    assert reply.text == expected_text(5)


def test_stream_headers(api):
    """The documents' content type, no caching or proxy buffering, the AI SDK marker, chunked."""
    response = api.chat(MODEL_PATHS["openrouter"], stream=True)
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["x-vercel-ai-data-stream"] == "v1"
    assert response.headers["Transfer-Encoding"] == "chunked"
    response.close()


@pytest.mark.parametrize("provider", sorted(MODEL_PATHS))
def test_usage_and_length_finish(api, upstream, provider):
    """Upstream token counts reach the finish parts; a max-token stop says "length"."""
    upstream.reset()
    reply = parse_data_stream(api.chat(MODEL_PATHS[provider], directive(tokens=2100)).text)
    assert reply.finish["finishReason"] == "length"
    sent = upstream.requests()[-1]["tokens_sent"]
    assert reply.finish["usage"]["completionTokens"] == sent
    assert reply.finish["usage"]["promptTokens"] > 0
    assert reply.step == {**reply.finish, "isContinued": False}


def test_text_protocol(api):
    """?stream_protocol=text is the bare reply."""
    response = api.chat(MODEL_PATHS["cloudflare"], stream_protocol="text")
    assert response.status_code == 200
    assert response.text == expected_text(5)
    assert "x-vercel-ai-data-stream" not in response.headers


def test_text_protocol_cuts_connection_on_failure(api):
    """Plain text has no error channel: a failed reply ends in a cut connection, not a clean end."""
    response = api.chat(MODEL_PATHS["ollama"], directive(fault="reset", at=2),
                        stream=True, stream_protocol="text")
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(response.iter_content(None))


@pytest.mark.parametrize("pieces,text", [
    (["Hello", "<|im", "_end|>"], "Hello"),
    (["Hi", "</", "s>", " there"], "Hi there"),
    (["A", "<end_of_turn>"], "A"),
    (["B", "<|eot", "_id|>"], "B"),
    (["C", "<｜end▁of▁sentence｜>"], "C"),
])
def test_control_tokens_never_reach_the_client(api, pieces, text):
    """Control tokens are removed, also when split across tokens."""
    for provider in ("huggingface", "openrouter"):
        reply = parse_data_stream(api.chat(MODEL_PATHS[provider], directive(pieces=pieces)).text)
        assert reply.text == text


def test_deepseek_reasoning_parts(api):
    """DeepSeek-R1's <think> section goes out as g: reasoning parts, the answer as text."""
    reply = parse_data_stream(api.chat(
        "huggingface/DeepSeek-R1-Distill-Qwen-32B",
        directive(pieces=["Let me", " think", "</th", "ink>", "\n\n", "The answer."])).text)
    assert reply.reasoning == "Let me think"
    assert reply.text == "The answer."
    assert "<" not in reply.text


def test_ai_sdk_extra_fields_are_ignored(api):
    """useChat sends id, createdAt and parts on each message; they are ignored."""
    messages = [{"id": "m1", "role": "user", "content": "Hi", "createdAt": "2025-01-01",
                 "parts": [{"type": "text", "text": "Hi"}]}]
    response = api.chat(MODEL_PATHS["ollama"], messages=messages)
    assert response.status_code == 200
    assert parse_data_stream(response.text).text == expected_text(5)
