"""End to end through the real AI SDK: replies read by the `ai` npm package's own useChat code.

tests/e2e/aisdk/read_stream.mjs hands each request to ``callChatApi`` from @ai-sdk/ui-utils
(the exact version ai@4.3.19 depends on and re-exports ``processDataStream`` from): the function
useChat runs to fetch, reject non-2xx answers, parse the data stream and assemble the message.
So a part the SDK would reject fails these tests, not only a part our own parser would reject.

The Node dependencies are installed from the lockfile on first use (``npm ci``); without node
and npm these tests fail rather than skip, so a CI without Node cannot pass silently.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.fakes.protocols import expected_text

from .node import node_with_packages
from .streams import parse_data_stream
from .test_streaming import MODEL_PATHS, directive

AISDK_DIR = Path(__file__).resolve().parent / "aisdk"
SCRIPT = AISDK_DIR / "read_stream.mjs"
#: Packages whose presence means ``npm ci`` has run (it removes node_modules before installing).
INSTALLED_MARKERS = ("ai/package.json", "@ai-sdk/ui-utils/package.json", "zod/package.json")


@pytest.fixture(scope="module")
def node():
    """The node executable, with the AI SDK installed next to the reader script."""
    return node_with_packages(AISDK_DIR, INSTALLED_MARKERS)


@pytest.fixture
def sdk_chat(node, api, server):
    """Send one chat request through the SDK's callChatApi; returns what the SDK produced."""

    def chat(path: str, content: str = "Hi") -> dict:
        # The body useChat posts: the chat id and its messages, each with id, createdAt, parts.
        body = {"id": f"chat-{uuid.uuid4().hex[:8]}",
                "messages": [{"id": "m1", "role": "user", "content": content,
                              "createdAt": "2025-01-01T00:00:00.000Z",
                              "parts": [{"type": "text", "text": content}]}]}
        url = f"{server.base_url}/api/ai/{path}/chat?chat_id=-1"
        result = subprocess.run([node, str(SCRIPT), url, api.cookie], input=json.dumps(body),
                                capture_output=True, text=True, encoding="utf-8", timeout=60,
                                cwd=AISDK_DIR, check=False)
        assert result.returncode == 0, f"read_stream.mjs crashed:\n{result.stderr}"
        return json.loads(result.stdout)

    return chat


def _assert_numeric_usage(usage: dict | None) -> None:
    """Token counts the SDK parsed as numbers (it makes non-numbers NaN, printed as null)."""
    assert usage is not None
    assert all(isinstance(usage[key], int) for key in
               ("promptTokens", "completionTokens", "totalTokens")), usage
    assert usage["promptTokens"] > 0
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"]


@pytest.mark.parametrize("provider", sorted(MODEL_PATHS))
def test_sdk_reads_a_normal_reply(sdk_chat, api, provider):
    """Every provider's reply is accepted whole by the SDK, with a "stop" finish and usage."""
    sent = parse_data_stream(api.chat(MODEL_PATHS[provider]).text).finish["usage"]
    result = sdk_chat(MODEL_PATHS[provider])
    assert result["error"] is None
    assert result["text"] == expected_text(5)
    assert result["reasoning"] == ""
    assert result["finishReason"] == "stop"
    _assert_numeric_usage(result["usage"])
    # The counts our d: part carried (TGI counts its EOS token, so not always 5).
    assert result["usage"] == {**sent, "totalTokens": sent["promptTokens"]
                               + sent["completionTokens"]}


def test_sdk_reads_deepseek_reasoning(sdk_chat):
    """g: parts become the SDK message's reasoning, 0: parts its content."""
    result = sdk_chat("huggingface/DeepSeek-R1-Distill-Qwen-32B",
                      directive(pieces=["Let me think", "</think>", "Answer"]))
    assert result["error"] is None
    assert result["reasoning"] == "Let me think"
    assert result["text"] == "Answer"
    assert result["finishReason"] == "stop"
    _assert_numeric_usage(result["usage"])


@pytest.mark.parametrize("provider", sorted(MODEL_PATHS))
def test_sdk_raises_our_in_stream_error(sdk_chat, api, provider):
    """A 3: part makes the SDK throw with exactly its text; the text before it stays."""
    content = directive(fault="error_event", at=2)
    raw = parse_data_stream(api.chat(MODEL_PATHS[provider], content).text)
    assert len(raw.errors) == 1
    result = sdk_chat(MODEL_PATHS[provider], content)
    assert result["error"] == raw.errors[0]
    assert result["text"] == expected_text(2)
    # The SDK throws at the 3: part, so the e:/d: parts after it (finishReason "error") are
    # never read: useChat's onFinish does not run and no finish reason or usage reaches it.
    assert result["finishReason"] is None
    assert result["usage"] is None


def test_sdk_raises_the_json_error_of_a_failed_request(sdk_chat):
    """A non-2xx answer makes the SDK throw with the raw JSON error body as the message."""
    result = sdk_chat(MODEL_PATHS["openrouter"], directive(status=401))
    assert result["error"] is not None
    assert json.loads(result["error"]) == {"statusCode": 502,
                                           "statusMessage": "Upstream authentication failed"}
    assert result["text"] == ""
    assert result["finishReason"] is None


TRICKY_PIECES = ["Line one\n", "line two says \"hi\"", " and C:\\temp\\new",
                 " \\n is not a newline", " 👋🏽 héllo ñ 中文 Ωμέγα", " \u2028\u2029\t end"]


@pytest.mark.parametrize("provider", sorted(MODEL_PATHS))
def test_sdk_receives_tricky_text_intact(sdk_chat, provider):
    """Newlines, quotes, backslashes, emoji and non-ASCII survive the SDK's line splitting."""
    result = sdk_chat(MODEL_PATHS[provider], directive(pieces=TRICKY_PIECES))
    assert result["error"] is None
    assert result["text"] == "".join(TRICKY_PIECES)
    assert result["finishReason"] == "stop"
    _assert_numeric_usage(result["usage"])


def test_sdk_stop_closes_the_upstream_and_stores_aborted(node, api, server, upstream):
    """useChat's stop() (an aborted fetch) closes the upstream within 1 s; the partial reply is
    stored ``aborted`` with the text generated so far."""
    chat_id = api.create_chat("ollama/rwkv-6-world")
    tag = uuid.uuid4().hex
    content = f"{tag} {directive(tokens=400, delay_ms=25)}"
    body = {"id": str(chat_id), "messages": [{"id": tag, "role": "user", "content": content}]}
    url = f"{server.base_url}/api/ai/{MODEL_PATHS['ollama']}/chat?chat_id={chat_id}"
    process = subprocess.Popen([node, str(SCRIPT), url, api.cookie, json.dumps(body)],
                               stdout=subprocess.PIPE, text=True, cwd=AISDK_DIR,
                               env={**os.environ, "ABORT_AFTER_CHARS": "20"})
    assert process.stdout.readline() == "aborted\n"
    aborted = time.monotonic()
    process.wait(timeout=30)
    entry = upstream.wait_for(lambda log: next(
        (e for e in log if tag in json.dumps(e["json"]) and e["closed_at"]), None), 10)
    assert entry["closed_at"] - aborted < 1.0
    deadline = time.monotonic() + 10
    while (stored := api.messages(chat_id))[-1]["finish_reason"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert stored[-1]["finish_reason"] == "aborted"
    assert len(stored[-1]["message"]) >= 20
    assert expected_text(400).startswith(stored[-1]["message"])
