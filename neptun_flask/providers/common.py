"""Small helpers shared by the provider adapters: parameters, auth, OpenAI chunks, errors."""
from __future__ import annotations

import html
import json
import re
from typing import Any, Callable, Iterable

from .base import Event, FinishReason, ReasoningDelta, TextDelta, Usage
from .framing import MalformedEvent

#: Longest upstream error text passed on to clients.
MAX_ERROR_MESSAGE = 300
# An HTML page's parts that are not its text. Each pattern stops at the next tag of its kind,
# so a page of unclosed tags costs linear time.
_HIDDEN = re.compile(r"<(head|script|style)\b(?:(?!</?\1\b).)*</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<(?:[!/?]|[A-Za-z])[^<>]*>")
_SPACE = re.compile(r"\s+")

# OpenAI-style finish reasons -> AI SDK vocabulary (hyphens, not underscores).
_OPENAI_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
    "error": "error",
}


def param(parameters: dict[str, Any], key: str) -> Any:
    """Return a catalog parameter, or None when absent, null or -1 (provider default)."""
    value = parameters.get(key)
    if value is None or value == -1:
        return None
    return value


def bearer(api_key: str | None) -> dict[str, str]:
    """Return the Authorization header for an API key, or nothing without one."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def require_dict(payload: Any) -> dict[str, Any]:
    """Return the payload if it is a JSON object; raise MalformedEvent otherwise."""
    if not isinstance(payload, dict):
        raise MalformedEvent(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def map_openai_finish(reason: str) -> str:
    """Map an OpenAI-style finish_reason to the AI SDK vocabulary."""
    return _OPENAI_FINISH.get(reason, "other")


def usage_from(usage: Any) -> Usage | None:
    """Build Usage from an OpenAI-style usage object, or None if there is none."""
    if not isinstance(usage, dict):
        return None
    return Usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))


def parse_openai_chunk(payload: dict[str, Any], reasoning_key: str) -> list[Event]:
    """Turn one ``chat.completion.chunk`` into events (reasoning, text, finish, usage)."""
    events: list[Event] = []
    choices = payload.get("choices")
    if choices:
        choice = choices[0]
        delta = choice.get("delta")
        if delta:
            reasoning = delta.get(reasoning_key)
            if reasoning:
                events.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if content:
                events.append(TextDelta(content))
        reason = choice.get("finish_reason")
        if reason:
            events.append(FinishReason(map_openai_finish(reason)))
    usage = payload.get("usage")
    if usage:
        events.append(usage_from(usage) or Usage(None, None))
    return events


def error_text(error: Any) -> str | None:
    """Return the message of an ``error`` field that is a string or ``{"message": ...}``."""
    if isinstance(error, str):
        return error or None
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
    return None


def read_error(status: int, body: bytes, extract: Callable[[dict], str | None]) -> str:
    """The message ``extract`` finds in a JSON error body, else the body's start; never raises."""
    try:
        data = json.loads(body)
        message = extract(data) if isinstance(data, dict) else None
    except Exception:  # noqa: BLE001 - an error path must never raise
        message = None
    return plain_text(message or "") or fallback_message(status, body)


def top_level_error(data: dict) -> str | None:
    """The message of a body's ``error`` field (Hugging Face, Ollama)."""
    return error_text(data.get("error"))


def copy_params(target: dict[str, Any], parameters: dict[str, Any],
                names: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Copy the catalog parameters that are set into ``target``, under the provider's names."""
    for key, name in names:
        value = param(parameters, key)
        if value is not None:
            target[name] = value
    return target


def fallback_message(status: int, body: bytes) -> str:
    """Return the body as plain text, or ``HTTP <status>`` when it has none."""
    return plain_text(body.decode("utf-8", "replace")) or f"HTTP {status}"


def plain_text(text: str) -> str:
    """Upstream error text as clients see it: an HTML page's text (no head, script, style or
    tags; entities decoded), whitespace collapsed, at most MAX_ERROR_MESSAGE characters."""
    text = html.unescape(_TAG.sub(" ", _HIDDEN.sub(" ", text)))
    return _SPACE.sub(" ", text).strip()[:MAX_ERROR_MESSAGE].rstrip()
