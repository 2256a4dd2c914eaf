"""Schemathesis over every operation of /api/openapi.json, against the live app under gunicorn +
gevent talking to the fake upstream (5 tokens per reply, short upstream timeouts): no 5xx,
status codes, content types and bodies as documented, and every error response JSON.

Bounded: a few generated cases per operation and generation mode (``MAX_EXAMPLES``). Path
values are random, so half of the cases get real ones (the session's user, a fresh chat of
theirs, a catalog model of the route's shape) to reach past the 403/404/400 answers.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from .conftest import Client

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
#: Statuses seen per operation, printed at the end (``-s``) to show what the run reached.
STATUSES: dict[str, Counter] = defaultdict(Counter)
#: A catalog model per shape of chat route (see neptun_flask/ai/routes.py).
_MODELS = {
    "/api/ai/huggingface/{publisher}/{name}/": {"publisher": "qwen", "name": "Qwen2.5-72B-Instruct"},
    "/api/ai/huggingface/{name}/": {"name": "Qwen2.5-72B-Instruct"},
    "/api/ai/cloudflare/{name}/": {"name": "llama-3.3-70b-instruct-fp8-fast"},
    "/api/ai/openrouter/{name}/": {"name": "deepseek-chat"},
    "/api/ai/ollama/{name}/": {"name": "rwkv-6-world"},
    "/api/ai/{publisher}/{name}/": {"publisher": "ollama", "name": "rwkv-6-world"},
}


@schemathesis.check
def errors_are_json(ctx, response, case):
    """Every 4xx/5xx answer is the JSON error ``{statusCode, statusMessage, data?}``."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), f"error as {content_type!r}"
    body = json.loads(response.content)
    if case.path.startswith("/v1/"):   # OpenAI's shape there
        assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["type"], str)
        return True
    assert body["statusCode"] == response.status_code and isinstance(body["statusMessage"], str)
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, errors_are_json]


@pytest.fixture(scope="module")
def fuzz_user(server):
    """The user whose session cookie authenticated cases carry."""
    return Client(server.base_url)


def _coin(*values) -> bool:
    """A fair, reproducible coin from a case's generated values."""
    return hashlib.sha256(repr(values).encode()).digest()[0] % 2 == 0


def _realistic(case, user: Client) -> None:
    """Give half of the cases real path values: the user, a fresh chat of theirs, a model (and
    half of the completions a real model and message)."""
    if case.path == "/v1/chat/completions" and isinstance(case.body, dict) and _coin(case.body):
        case.body.update(model="ollama/rwkv-6-world",
                         messages=[{"role": "user", "content": "Hi"}])
        for name in ("tools", "tool_choice", "functions", "function_call", "audio", "logprobs",
                     "top_logprobs", "prediction", "logit_bias", "n", "response_format"):
            case.body.pop(name, None)
    path = case.path_parameters
    if not path:
        return
    if "user_id" in path:
        path["user_id"] = user.user_id
        if case.method.upper() == "POST" and isinstance(case.body, dict) and _coin(case.body):
            case.body["model"] = "ollama/rwkv-6-world"  # create a chat (else 400)
    if "chat_id" in path and _coin(path["chat_id"]):
        path["chat_id"] = user.create_chat("ollama/rwkv-6-world")
    for prefix, values in _MODELS.items():
        if case.path.startswith(prefix) and _coin(*(path.get(name) for name in values)):
            path.update(values)
            _real_chat_request(case, user)
            break


def _real_chat_request(case, user: Client) -> None:
    """A chat request for a real model: a real chat (or none), and a POST body of one user
    message that keeps the generated text, so that half of them stream."""
    query = case.query if case.query is not None else {}
    if "chat_id" not in case.path_parameters and _coin(query.get("chat_id"), "chat"):
        query["chat_id"] = user.create_chat("ollama/rwkv-6-world") if _coin(query) else -1
        case.query = query
    if case.method.upper() == "POST" and isinstance(case.body, dict):
        messages = case.body.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else {}
        content = first.get("content") if isinstance(first, dict) else None
        case.body = {"messages": [{"role": "user", "content": content
                                   if isinstance(content, str) and content else "Hi"}]}


def _fuzz(operation, mode: GenerationMode, user: Client) -> None:
    """Up to MAX_EXAMPLES cases of one operation in one generation mode, each checked."""
    cookies = {"neptun-session": user.cookie} if operation.definition.raw.get("security") else None

    @given(case=operation.as_strategy(generation_mode=mode, cookies=cookies))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case):
        _realistic(case, user)
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        STATUSES[operation.label][response.status_code] += 1

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing of it can be invalid (no input)


def test_api_conforms_to_its_document(server, fuzz_user):
    schema = schemathesis.openapi.from_url(f"{server.base_url}/api/openapi.json")
    failures = []
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            count += 1
            try:
                _fuzz(operation, mode, fuzz_user)
            except Exception as error:  # noqa: BLE001 - every operation's failures, together
                failures.append(f"{operation.label} [{mode.value}]: {error}")
    for label, statuses in sorted(STATUSES.items()):
        print(f"{label}: {dict(sorted(statuses.items()))}")
    assert count >= 2 * 40
    assert not failures, "\n\n".join(failures)
