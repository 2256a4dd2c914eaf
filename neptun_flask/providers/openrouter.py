"""OpenRouter adapter: OpenAI-style ``POST {base}/chat/completions`` with SSE.

Streams carry ``: OPENROUTER PROCESSING`` comments (dropped by the framing), chunks like
``{"choices":[{"delta":{"content":"Hi","reasoning":...},"finish_reason":null}]}``, a
separate usage chunk, then ``data: [DONE]``. A failure after HTTP 200 arrives as a chunk
with a top-level ``"error": {"code": 502, "message": "..."}``.
"""
from __future__ import annotations

from typing import Any

from .base import DONE, End, Event, ModelSpec, ProviderSettings, UpstreamError, UpstreamRequest
from .common import bearer, copy_params, error_text, parse_openai_chunk, read_error, require_dict
from .context import estimate_prompt_tokens, prepare_chat

APP_TITLE = "neptun-flask"
# Attribution needs some URL; a deployment sets its own through ProviderSettings.app_url.
DEFAULT_APP_URL = "http://localhost"


class OpenRouterAdapter:
    """Adapter for OpenRouter chat completions."""

    name = "openrouter"
    options = frozenset({"top_p", "stop", "seed"})

    def build_request(self, model: ModelSpec, messages: list[dict[str, str]],
                      settings: ProviderSettings, system_prompt: str) -> UpstreamRequest:
        """Build the streaming chat-completions request, with attribution headers."""
        parameters = model.parameters
        chat = prepare_chat(model, messages, system_prompt)
        body = copy_params({
            "model": model.upstream_id, "messages": chat, "stream": True,
            "max_tokens": parameters["max_new_tokens"], "usage": {"include": True}}, parameters,
            (("temperature", "temperature"), ("repetition_penalty", "repetition_penalty"),
             ("top_p", "top_p"), ("stop", "stop"), ("seed", "seed")))
        headers = bearer(settings.api_key)
        headers["HTTP-Referer"] = settings.app_url or DEFAULT_APP_URL
        headers["X-Title"] = APP_TITLE
        return UpstreamRequest(
            url=f"{settings.base_url.rstrip('/')}/chat/completions", json=body,
            headers=headers, framing="sse",
            prompt_tokens_estimate=estimate_prompt_tokens(chat))

    def parse_event(self, payload: Any) -> list[Event]:
        """Turn one chunk into events; a top-level ``error`` is an in-stream failure."""
        if payload is DONE:
            return [End()]
        event = require_dict(payload)
        error = event.get("error")
        if error:
            return [UpstreamError(error_text(error) or "OpenRouter reported an error")]
        return parse_openai_chunk(event, "reasoning")

    def error_message(self, status: int, body: bytes) -> str:
        """Read ``error.message``, or the provider's own ``error.metadata.raw`` text."""
        return read_error(status, body, _openrouter_error)


def _openrouter_error(data: dict) -> str | None:
    """``error.metadata.raw`` when present ("Provider returned error" says little), else
    ``error.message``."""
    error = data.get("error")
    metadata = error.get("metadata") if isinstance(error, dict) else None
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    return raw if isinstance(raw, str) and raw else error_text(error)


adapter = OpenRouterAdapter()
