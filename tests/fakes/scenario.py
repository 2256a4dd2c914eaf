"""Reading a fake-upstream request: provider, prompt, and the test's ``[[fake {...}]]`` directive.

A test steers one request by ending its last user message with, for example,
``[[fake {"tokens": 3, "delay_ms": 10, "fault": "reset", "at": 2}]]``. Unknown keys and
wrong types are rejected with HTTP 400 so a typo fails loudly instead of being ignored.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

FAULTS = frozenset({"reset", "stall", "malformed", "error_event", "no_terminator"})

_DIRECTIVE = re.compile(r"\[\[fake\s+(\{.*?\})\s*\]\]", re.S)
_MAX_TOKENS = {"huggingface": ("parameters", "max_new_tokens"), "cloudflare": (None, "max_tokens"),
               "openrouter": (None, "max_tokens"), "ollama": ("options", "num_predict")}


class BadRequest(Exception):
    """A request the fake refuses; answered with the provider's error body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Scenario:
    """How to answer one request; every field defaults to the server's settings."""

    tokens: int
    delay_ms: float = 0.0
    first_delay_ms: float = 0.0
    tail_delay_ms: float = 0.0   # pause between the provider's terminator and the body's end
    delay_headers: bool = False
    pieces: list[str] | None = None
    status: int | None = None
    body: Any = None
    retry_after: int | str | None = None
    times: int | None = None   # ``status`` answers only this many requests of the same directive
    fault: str | None = None
    at: int = 0
    overrun: bool = False   # misbehave: send every token, past the request's max tokens


def route(path: str) -> str | None:
    """The provider (or Ollama metadata route) a path belongs to, by suffix; None if unknown."""
    if path.endswith("/chat/completions"):
        return "openrouter"
    if path.endswith("/api/chat"):
        return "ollama"
    if path.endswith("/api/tags"):
        return "ollama_tags"
    if path.endswith("/api/version"):
        return "ollama_version"
    if "/ai/run/" in path:
        return "cloudflare"
    if "/models/" in path or path.endswith("/generate_stream"):
        return "huggingface"
    return None


def read_prompt(provider: str, path: str, body: Any) -> tuple[str, str]:
    """Return ``(whole prompt, text to search for a directive)``; reject non-streaming bodies."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if provider == "huggingface":
        inputs = body.get("inputs")
        if not isinstance(inputs, str):
            raise BadRequest("`inputs` must be a string", 422)
        if body.get("stream") is not True and not path.endswith("/generate_stream"):
            raise BadRequest("fake upstream only streams: send \"stream\": true", 422)
        return inputs, inputs
    # A fake that silently answered non-streaming requests would hide a missing flag.
    if provider == "ollama" and body.get("stream") is False:
        raise BadRequest("fake upstream only streams: do not send \"stream\": false")
    if provider != "ollama" and body.get("stream") is not True:
        raise BadRequest("fake upstream only streams: send \"stream\": true")
    if provider != "ollama" and isinstance(body.get("prompt"), str) and "messages" not in body:
        return body["prompt"], body["prompt"]
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("`messages` must be a list of objects")
    texts = [(m.get("role"), _content_text(m.get("content"))) for m in messages]
    users = [text for role, text in texts if role == "user"]
    return "\n".join(text for _, text in texts), users[-1] if users else ""


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of an OpenAI content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def read_max_tokens(provider: str, body: dict) -> int | None:
    """The request's output-token limit, or None when unlimited."""
    section, key = _MAX_TOKENS[provider]
    holder = body.get(section) if section else body
    value = holder.get(key) if isinstance(holder, dict) else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"`{key}` must be an integer", 422 if provider == "huggingface" else 400)
    return None if value < 0 else value  # Ollama: -1 means no limit


def read_scenario(text: str, defaults: Scenario) -> Scenario:
    """Apply the last ``[[fake {...}]]`` directive in ``text`` to ``defaults``."""
    matches = _DIRECTIVE.findall(text)
    if not matches:
        return defaults
    try:
        given = json.loads(matches[-1])
    except ValueError as exc:
        raise BadRequest(f"fake directive is not valid JSON: {exc}") from None
    unknown = set(given) - set(Scenario.__dataclass_fields__)
    if unknown:
        raise BadRequest(f"unknown fake directive keys: {sorted(unknown)}")
    scenario = Scenario(**{**defaults.__dict__, **given})
    _check(scenario)
    return scenario


def _check(s: Scenario) -> None:
    """Reject directive values of the wrong type or range."""
    numbers = (s.delay_ms, s.first_delay_ms, s.tail_delay_ms)
    problems = [
        (not _is_int(s.tokens) or s.tokens < 0, "tokens must be an integer >= 0"),
        (not all(_is_number(n) and n >= 0 for n in numbers), "delays must be numbers >= 0"),
        (not isinstance(s.delay_headers, bool), "delay_headers must be true or false"),
        (not isinstance(s.overrun, bool), "overrun must be true or false"),
        (s.pieces is not None and not (isinstance(s.pieces, list)
                                       and all(isinstance(p, str) for p in s.pieces)),
         "pieces must be a list of strings"),
        (s.status is not None and not (_is_int(s.status) and 100 <= s.status <= 599),
         "status must be an HTTP status code"),
        (s.times is not None and not (_is_int(s.times) and s.times >= 0),
         "times must be an integer >= 0"),
        (s.fault is not None and s.fault not in FAULTS, f"fault must be one of {sorted(FAULTS)}"),
        (not _is_int(s.at), "at must be an integer"),
    ]
    for failed, message in problems:
        if failed:
            raise BadRequest(f"bad fake directive: {message}")


def _is_int(value: Any) -> bool:
    """True for JSON integers (not booleans)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """True for JSON numbers (not booleans)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
