"""End to end: the OpenAI-compatible API with the real OpenAI SDKs, and API keys.

The ``openai`` Python SDK runs in its newest major (the test extra) and in its current 1.x
(installed by pip into a folder of this run's own), each through clients/openai_sdk.py; the
AI SDK's @ai-sdk/openai-compatible provider through aisdk_ui/openai_compat.mjs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.fakes.protocols import expected_text

from .conftest import Client
from .node import node_with_packages
from .test_streaming import directive

HERE = Path(__file__).resolve().parent
SDK_SCRIPT = HERE / "clients" / "openai_sdk.py"
OPENAI_1X = "openai==1.109.1"
MODEL = "ollama/rwkv-6-world"


@pytest.fixture(scope="session")
def openai_1x(tmp_path_factory) -> Path:
    """A folder holding the current 1.x of the openai SDK (and its dependencies)."""
    target = tmp_path_factory.mktemp("openai-1x")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target",
                             str(target), OPENAI_1X], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def new_key(api: Client, name: str = "test key") -> dict:
    """Create an API key for the user."""
    response = api.http.post(f"{api.base_url}/api/users/{api.user_id}/api-keys",
                             json={"name": name}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("sdk", ["newest", "1.x"])
def test_the_openai_sdk_works_unmodified(server, api, sdk, request):
    """Models, a stream with usage, a whole completion, and the SDK's own exceptions for an
    upstream 429 (with our message and Retry-After), a bad key, an unknown model, tools."""
    env = dict(os.environ)
    if sdk == "1.x":
        env["PYTHONPATH"] = str(request.getfixturevalue("openai_1x"))
    key = new_key(api)["key"]
    limited = directive(status=429, body="slow down", retry_after=7)
    result = subprocess.run([sys.executable, str(SDK_SCRIPT), server.base_url, key, MODEL,
                             limited], capture_output=True, text=True, timeout=120, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["version"].startswith("1.") == (sdk == "1.x")
    assert (MODEL, "ollama") in [tuple(model) for model in out["models"]]
    assert ("qwen/Qwen2.5-72B-Instruct", "qwen") in [tuple(model) for model in out["models"]]
    assert out["stream"]["text"] == expected_text(5)
    assert out["stream"]["finish"] == "stop"
    usage = out["stream"]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert out["complete"]["object"] == "chat.completion"
    assert out["complete"]["text"] == expected_text(3)   # max_tokens reached the upstream
    assert out["complete"]["finish"] == "length"
    limited_error = out["rate_limited"]
    assert (limited_error["class"], limited_error["status"]) == ("RateLimitError", 429)
    assert limited_error["body"]["message"] == "slow down"
    assert limited_error["retry_after"] == "7"
    assert out["bad_key"]["class"] == "AuthenticationError"
    assert out["bad_key"]["body"]["code"] == "invalid_api_key"
    assert out["unknown_model"]["class"] == "NotFoundError"
    assert out["tools"]["class"] == "BadRequestError"
    assert out["tools"]["body"]["param"] == "tools"


def test_keys_are_shown_once_listed_without_the_key_and_revoked_at_once(server, api):
    """Create returns the key once (prefix nf_, 256 bits); list shows name, prefix, created,
    last used and usage; a revoked key is refused by every worker at once."""
    created = new_key(api, "laptop")
    key = created["key"]
    assert key.startswith("nf_") and len(key) >= 3 + 43
    headers = {"Authorization": f"Bearer {key}"}
    assert requests.get(f"{server.base_url}/v1/models", headers=headers, timeout=10).ok
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    completion = requests.post(f"{server.base_url}/v1/chat/completions", json=body,
                               headers=headers, timeout=30).json()
    listed = api.http.get(f"{api.base_url}/api/users/{api.user_id}/api-keys", timeout=10).json()
    (entry,) = listed["apiKeys"]
    assert entry["name"] == "laptop" and entry["prefix"] == key[:10]
    assert key not in json.dumps(listed) and entry["last_used_at"] is not None
    assert entry["usage"] == {"promptTokens": completion["usage"]["prompt_tokens"],
                              "completionTokens": completion["usage"]["completion_tokens"]}
    gone = api.http.delete(f"{api.base_url}/api/users/{api.user_id}/api-keys/{entry['id']}",
                           timeout=10)
    assert gone.status_code == 204
    for _ in range(4):   # whichever worker answers
        refused = requests.get(f"{server.base_url}/v1/models", headers=headers, timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
    other = Client(server.base_url)
    assert other.http.delete(f"{api.base_url}/api/users/{api.user_id}/api-keys/{entry['id']}",
                             timeout=10).status_code == 403


def test_the_session_cookie_also_works_and_errors_keep_the_openai_shape(server, api):
    """/v1 with the cookie (browser tools); without any: 401 in OpenAI's shape; a body that
    is not valid names the parameter."""
    models = api.http.get(f"{server.base_url}/v1/models", timeout=10)
    assert models.status_code == 200 and models.json()["object"] == "list"
    anonymous = requests.get(f"{server.base_url}/v1/models", timeout=10)
    assert anonymous.status_code == 401
    assert set(anonymous.json()["error"]) == {"message", "type", "param", "code"}
    bad = api.http.post(f"{server.base_url}/v1/chat/completions", timeout=10,
                        json={"model": MODEL, "messages": [], "n": 2})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    image = api.http.post(f"{server.base_url}/v1/chat/completions", timeout=10, json={
        "model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]})
    assert image.status_code == 400 and "image_url" in image.json()["error"]["message"]
    stop = api.http.post(f"{server.base_url}/v1/chat/completions", timeout=10, json={
        "model": "cloudflare/llama-3.3-70b-instruct-fp8-fast", "stop": ["x"],
        "messages": [{"role": "user", "content": "Hi"}]})
    assert stop.status_code == 400 and stop.json()["error"]["message"].startswith("stop ")


def test_options_and_system_messages_reach_the_upstream_in_its_names(server, api, upstream):
    """max_tokens (capped by the catalog), temperature, top_p, stop, seed under each
    provider's own names; system messages replace the default instruction."""
    tag = uuid.uuid4().hex
    body = {"model": "openrouter/llama-3.3-70b-instruct", "max_tokens": 10**6,
            "temperature": 0.5, "top_p": 0.9, "stop": "END", "seed": 7,
            "messages": [{"role": "system", "content": f"You are {tag}."},
                         {"role": "user", "content": "Hi"}]}
    response = api.http.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    sent = upstream.wait_for(lambda log: next(
        (e["json"] for e in log if tag in json.dumps(e["json"])), None))
    assert sent["messages"][0] == {"role": "system", "content": f"You are {tag}."}
    assert len([m for m in sent["messages"] if m["role"] == "system"]) == 1
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["seed"]) == (
        0.5, 0.9, ["END"], 7)
    assert sent["max_tokens"] < 10**6
    tag = uuid.uuid4().hex
    body = {**body, "model": MODEL, "messages": [{"role": "developer", "content": tag},
                                                 {"role": "user", "content": "Hi"}]}
    assert api.http.post(f"{server.base_url}/v1/chat/completions", json=body,
                         timeout=30).status_code == 200
    sent = upstream.wait_for(lambda log: next(
        (e["json"] for e in log if tag in json.dumps(e["json"])), None))
    assert {key: sent["options"][key] for key in ("temperature", "top_p", "stop", "seed")} == {
        "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "seed": 7}


def test_reasoning_is_sent_as_reasoning_content(server, api):
    """DeepSeek-R1's thinking: reasoning_content deltas, then content deltas."""
    body = {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "stream": True,
            "messages": [{"role": "user",
                          "content": directive(pieces=["Let me think", "</think>", "Answer"])}]}
    response = api.http.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
    events = [line[len("data: "):] for line in response.content.decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Let me think"
    assert "".join(d.get("content", "") for d in deltas) == "Answer"
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}


def test_a_failure_after_the_first_byte_is_an_error_event(server, api):
    """After streaming began, a failure is a ``data: {"error": ...}`` event, then [DONE]."""
    body = {"model": MODEL, "stream": True, "messages": [
        {"role": "user", "content": directive(fault="error_event", at=2)}]}
    text = api.http.post(f"{server.base_url}/v1/chat/completions", json=body,
                         timeout=30).content.decode()
    events = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    assert set(events[-1]) == {"error"} and events[-1]["error"]["message"]
    assert text.endswith("data: [DONE]\n\n")


def test_nothing_is_stored_in_chats(server, api):
    """A completion stores no chat message."""
    chat_id = api.create_chat(MODEL)
    before = time.monotonic()
    api.http.post(f"{server.base_url}/v1/chat/completions", timeout=30, json={
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    assert api.messages(chat_id) == [] and time.monotonic() - before < 30


def test_the_ai_sdk_openai_compatible_provider_works(server, api):
    """@ai-sdk/openai-compatible: streamText with usage, generateText, and its APICallError
    carrying our message for an upstream 429 and a bad key."""
    folder = HERE / "aisdk_ui"
    node = node_with_packages(folder / "v7", ("ai/package.json",
                                              "@ai-sdk/openai-compatible/package.json"))
    key = new_key(api)["key"]
    result = subprocess.run([node, str(folder / "openai_compat.mjs"), server.base_url, key,
                             MODEL, directive(status=429, body="slow down")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["stream"]["text"] == expected_text(5)
    assert out["stream"]["finishReason"] == "stop"
    assert out["stream"]["usage"]["inputTokens"] > 0
    assert out["stream"]["usage"]["outputTokens"] > 0
    assert out["complete"]["text"] == expected_text(5)
    assert out["rateLimited"]["apiCallError"] and out["rateLimited"]["status"] == 429
    assert "slow down" in out["rateLimited"]["message"]
    assert out["badKey"]["status"] == 401
