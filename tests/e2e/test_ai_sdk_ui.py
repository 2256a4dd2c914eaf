"""End to end through AI SDK 5 and 7: the ``Chat`` class of @ai-sdk/vue with its
``DefaultChatTransport`` (the code ``useChat`` runs), in Node, against the live service.

tests/e2e/aisdk_ui/v5 pins the earliest AI SDK 5 (ai 5.0.0, the strictest reader: unknown
fields and types throw) and v7 the current ai 7 with @ai-sdk/vue 4; chat.mjs drives either.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.fakes.protocols import expected_text

from .node import node_with_packages
from .proxy import TcpProxy
from .streams import parse_data_stream
from .test_streaming import MODEL_PATHS, directive

HERE = Path(__file__).resolve().parent / "aisdk_ui"
SCRIPT = HERE / "chat.mjs"
MARKERS = ("ai/package.json", "@ai-sdk/vue/package.json", "vue/package.json")
PATH = MODEL_PATHS["ollama"]


@pytest.fixture(scope="module", params=["v5", "v7"])
def sdk(request):
    """(node, version folder), with that version's packages installed."""
    return node_with_packages(HERE / request.param, MARKERS), request.param


@pytest.fixture
def run_chat(sdk, api, server):
    """Run chat.mjs COMMAND on a chat of the test's user; returns what the Chat ended with."""
    node, version = sdk

    def run(command: str, chat_id: int, text: str = "Hi", path: str = PATH,
            base_url: str | None = None) -> dict:
        api_url = f"{base_url or server.base_url}/api/ai/{path}/chat"
        result = subprocess.run([node, str(SCRIPT), version, command, api_url, api.cookie,
                                 str(chat_id), text], capture_output=True, text=True,
                                encoding="utf-8", timeout=60, cwd=HERE, check=False)
        assert result.returncode == 0, f"chat.mjs failed:\n{result.stderr}"
        return json.loads(result.stdout)

    return run


def test_a_turn_gets_exactly_the_upstream_text_with_usage(run_chat, api):
    """sendMessage: the reply is the upstream's text, the status ready, usage in metadata; the
    message id names the stored reply."""
    chat_id = api.create_chat("ollama/rwkv-6-world")
    result = run_chat("send", chat_id, "Hello")
    assert (result["status"], result["error"]) == ("ready", None)
    assert result["text"] == expected_text(5)
    metadata = result["metadata"]
    assert metadata["finishReason"] == "stop"
    assert metadata["usage"]["inputTokens"] > 0 and metadata["usage"]["outputTokens"] > 0
    stored = api.messages(chat_id)
    assert [(m["actor"], m["message"]) for m in stored] == [("user", "Hello"),
                                                            ("assistant", expected_text(5))]
    assert result["messageId"] == f"msg-{stored[1]['id']}"


def test_deepseek_reasoning_becomes_a_reasoning_part(run_chat, api):
    """The thinking arrives as the message's reasoning part, the answer as its text."""
    chat_id = api.create_chat("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B")
    result = run_chat("send", chat_id, directive(pieces=["Let me think", "</think>", "Answer"]),
                      path="huggingface/DeepSeek-R1-Distill-Qwen-32B")
    assert result["error"] is None
    assert (result["reasoning"], result["text"]) == ("Let me think", "Answer")


@pytest.mark.parametrize("provider", sorted(MODEL_PATHS))
def test_a_failure_mid_stream_reaches_on_error_with_our_message(run_chat, api, provider):
    """onError gets exactly our error text; the text before it stays; status error."""
    chat_id = api.create_chat("ollama/rwkv-6-world")
    content = directive(fault="error_event", at=2)
    (ours,) = parse_data_stream(api.chat(MODEL_PATHS[provider], content).text).errors
    result = run_chat("send", chat_id, content, path=MODEL_PATHS[provider])
    assert result["status"] == "error"
    assert result["error"] == ours
    assert result["text"] == expected_text(2)
    assert api.messages(chat_id)[-1]["finish_reason"] == "error"


def test_multi_byte_characters_split_across_reads_arrive_whole(run_chat, api, server):
    """Emoji, accents and CJK sent one byte per read come out of the SDK whole."""
    proxy = TcpProxy(int(server.base_url.rsplit(":", 1)[1]), mode="bytewise")
    try:
        chat_id = api.create_chat("ollama/rwkv-6-world")
        pieces = ["👋🏽 héllo", " 中文", " Ωμέγα ✓"]
        result = run_chat("send", chat_id, directive(pieces=pieces),
                          base_url=f"http://127.0.0.1:{proxy.port}")
        assert result["error"] is None
        assert result["text"] == "".join(pieces)
    finally:
        proxy.close()


def test_resume_stream_reattaches_to_a_running_generation(run_chat, api):
    """resumeStream() after a reload: the whole reply, once, with the original message id."""
    chat_id = api.create_chat("ollama/rwkv-6-world")
    body = {"id": str(chat_id), "trigger": "submit-message", "messages": [
        {"id": uuid.uuid4().hex, "role": "user",
         "parts": [{"type": "text", "text": directive(tokens=80, delay_ms=25)}]}]}
    original = api.http.post(f"{api.base_url}/api/ai/{PATH}/chat", json=body, stream=True,
                             timeout=30)
    first = json.loads(next(original.iter_lines()).decode()[len("data: "):])
    original.close()   # the page reloads
    result = run_chat("resume", chat_id)
    assert (result["status"], result["error"]) == ("ready", None)
    assert result["text"] == expected_text(80)
    assert result["messageId"] == first["messageId"]
    assert [m["role"] for m in result["messages"]] == ["assistant"]


def test_stop_stops_the_generation(run_chat, api, upstream):
    """stop() with the stop route (a Stop button): the upstream closes, the reply keeps its
    text and is stored ``stopped``; the chat is ready again."""
    chat_id = api.create_chat("ollama/rwkv-6-world")
    tag = uuid.uuid4().hex
    result = run_chat("stop", chat_id, f"{tag} {directive(tokens=400, delay_ms=25)}")
    assert result["error"] is None and result["status"] == "ready"
    entry = upstream.wait_for(lambda log: next(
        (e for e in log if tag in json.dumps(e["json"]) and e["closed_at"]), None), 10)
    assert entry["tokens_sent"] < 400
    deadline = time.monotonic() + 10
    while (stored := api.messages(chat_id))[-1]["finish_reason"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert stored[-1]["finish_reason"] == "stopped"
    assert len(stored[-1]["message"]) >= 20
    assert stored[-1]["message"].startswith(result["text"][:20])
