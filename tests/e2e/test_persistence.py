"""End to end: what a streamed reply stores, and what playground requests do not."""
from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path

import pytest
import requests

from tests.fakes.protocols import expected_text

from .conftest import Client
from .streams import parse_data_stream
from .test_streaming import MODEL_PATHS, directive

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seeds"


@pytest.mark.parametrize("provider", sorted(MODEL_PATHS))
def test_reply_is_stored_once_with_model_reason_and_usage(api, provider):
    """The user message and the whole reply are stored; the chat's updated_at moves."""
    chat_id = api.create_chat("google/gemma-2-27b-it")
    before = api.http.get(f"{api.base_url}/api/users/{api.user_id}/chats/{chat_id}").json()
    reply = parse_data_stream(api.chat(MODEL_PATHS[provider], "Hello there", chat_id).text)
    stored = api.messages(chat_id)
    assert [(m["actor"], m["message"]) for m in stored] == [
        ("user", "Hello there"), ("assistant", expected_text(5))]
    assistant = stored[1]
    model = MODEL_PATHS[provider].replace("huggingface/", "qwen/")
    assert assistant["model"] == model
    assert assistant["finish_reason"] == "stop"
    assert assistant["usage"] == {**reply.finish["usage"], "estimated": False}  # the upstream's
    after = api.http.get(f"{api.base_url}/api/users/{api.user_id}/chats/{chat_id}").json()
    assert after["chat"]["updated_at"] > before["chat"]["updated_at"]


@pytest.mark.parametrize("params", [{"is_playground": "true"}, {}])
def test_playground_and_minus_one_store_nothing(api, params):
    """is_playground=true (even with a real chat) and chat_id=-1 store nothing."""
    chat_id = api.create_chat("google/gemma-2-27b-it")
    target = chat_id if params else -1
    response = api.chat(MODEL_PATHS["ollama"], chat_id=target, **params)
    assert parse_data_stream(response.text).text == expected_text(5)
    assert api.messages(chat_id) == []


def _seed_python_example() -> str:
    """The Python example of the Cloudflare chat document, as published."""
    document = (SEEDS / "cloudflare-chat-endpoint.md").read_text()
    section = document.split("### Python Example", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_seed_httpx_example_runs_unchanged_but_for_its_url(api, server):
    """The documents' httpx client streams a reply from this server."""
    code = _seed_python_example().replace("https://neptun-webui.vercel.app", server.base_url)
    namespace: dict = {"__name__": "seed_example"}
    exec(compile(code, "seed_example.py", "exec", dont_inherit=True), namespace)  # noqa: S102 - our own test data
    chat_id = api.create_chat("cloudflare/llama-3.3-70b-instruct-fp8-fast")
    message = namespace["Message"](role="user", content="Hello, how are you?")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        asyncio.run(namespace["stream_chat_completion"](
            session_cookie=api.cookie, chat_id=chat_id,
            model_name="llama-3.3-70b-instruct-fp8-fast", messages=[message]))
    assert parse_data_stream(printed.getvalue()).text == expected_text(5)
    assert api.messages(chat_id)[0]["message"] == "Hello, how are you?"


def test_reply_is_stored_before_the_finish_parts(api, server):
    """A client that reloads the chat as soon as it reads the finish part finds the reply,
    even when the upstream is slow to end its body after its terminator."""
    chat_id = api.create_chat("google/gemma-2-27b-it")
    response = api.chat(MODEL_PATHS["openrouter"], 'Hi [[fake {"tail_delay_ms": 1500}]]',
                        chat_id, stream=True)
    lines = response.iter_lines()
    assert any(line.startswith(b"d:") for line in lines)
    other = Client.__new__(Client)  # a second connection, same session cookie
    other.base_url, other.user_id = api.base_url, api.user_id
    other.http = requests.Session()
    other.http.cookies.set("neptun-session", api.cookie)
    stored = other.messages(chat_id)
    response.close()
    assert [m["actor"] for m in stored][-1] == "assistant"
    assert stored[-1]["message"] == expected_text(5)


def test_a_reply_with_nul_characters_is_stored_without_them(api):
    """PostgreSQL refuses U+0000 in text: a model's output holding it is stored (and its
    text so far, while it streams) with the NUL removed, instead of being lost."""
    chat_id = api.create_chat("ollama/rwkv-6-world")
    pieces = ["before\x00", " mid\x00dle", " after"]
    reply = parse_data_stream(api.chat(MODEL_PATHS["ollama"], directive(pieces=pieces),
                                       chat_id).text)
    assert reply.text == "".join(pieces)   # the client gets what the model said
    stored = api.messages(chat_id)[-1]
    assert (stored["message"], stored["finish_reason"]) == ("before middle after", "stop")
