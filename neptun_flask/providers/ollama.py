"""Ollama adapter: ``POST {base}/api/chat``, answered with NDJSON (not SSE).

Lines look like ``{"message":{"role":"assistant","content":"Le"},"done":false}``; the last
has ``"done":true``, ``done_reason`` and the counts ``prompt_eval_count``/``eval_count``
(either may be missing, e.g. for a cached prompt) and may still carry text. A failure
after HTTP 200 is one last line ``{"error":"..."}``.
"""
from __future__ import annotations

from typing import Any

from .base import (End, Event, FinishReason, ModelSpec, ProviderSettings, ReasoningDelta,
                   TextDelta, UpstreamError, UpstreamRequest, Usage)
from .common import bearer, copy_params, error_text, read_error, require_dict, top_level_error
from .context import estimate_prompt_tokens, prepare_chat

# Catalog parameter -> Ollama option.
_OPTIONS = (("temperature", "temperature"), ("typical_p", "typical_p"),
            ("repetition_penalty", "repeat_penalty"), ("top_p", "top_p"), ("stop", "stop"),
            ("seed", "seed"))


class OllamaAdapter:
    """Adapter for an Ollama server's chat API."""

    name = "ollama"
    options = frozenset({"top_p", "stop", "seed"})

    def build_request(self, model: ModelSpec, messages: list[dict[str, str]],
                      settings: ProviderSettings, system_prompt: str) -> UpstreamRequest:
        """Build the streaming ``/api/chat`` request; sampling options only where set."""
        parameters = model.parameters
        chat = prepare_chat(model, messages, system_prompt)
        options = copy_params({"num_predict": parameters["max_new_tokens"]}, parameters,
                              _OPTIONS)
        return UpstreamRequest(
            url=f"{settings.base_url.rstrip('/')}/api/chat",
            json={"model": model.upstream_id, "messages": chat, "stream": True,
                  "options": options},
            headers=bearer(settings.api_key), framing="ndjson",
            prompt_tokens_estimate=estimate_prompt_tokens(chat))

    def parse_event(self, payload: Any) -> list[Event]:
        """Turn one NDJSON line into events; ``done: true`` brings usage and the end."""
        line = require_dict(payload)
        error = line.get("error")
        if error:
            return [UpstreamError(error_text(error) or str(error))]
        events: list[Event] = []
        message = line.get("message")
        if message:
            thinking = message.get("thinking")
            if thinking:
                events.append(ReasoningDelta(thinking))
            content = message.get("content")
            if content:
                events.append(TextDelta(content))
        if line.get("done"):
            events.append(Usage(line.get("prompt_eval_count"), line.get("eval_count")))
            reason = line.get("done_reason")
            events.append(FinishReason("length" if reason == "length" else "stop"))
            events.append(End())
        return events

    def error_message(self, status: int, body: bytes) -> str:
        """Read ``{"error": "..."}``."""
        return read_error(status, body, top_level_error)


adapter = OllamaAdapter()
