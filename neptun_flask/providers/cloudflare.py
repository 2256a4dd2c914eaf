"""Cloudflare Workers AI adapter: ``POST {base}/accounts/{account}/ai/run/{model}``.

Model input schemas are strict: a property the schema does not declare is rejected with
400 code 5006, so only ``max_tokens``, ``repetition_penalty`` and ``temperature`` are sent.
Streams come in two shapes, both ending with ``data: [DONE]``:
native ``{"response":"Bon","p":"<padding>"}`` (usage in a last ``{"response":"","usage":...}``)
and OpenAI ``{"choices":[{"delta":{"content":"Hi","reasoning_content":...}}]}``.
"""
from __future__ import annotations

from typing import Any

from .base import (DONE, End, Event, ModelSpec, ProviderSettings, TextDelta, UpstreamError,
                   UpstreamRequest)
from .common import (bearer, copy_params, error_text, parse_openai_chunk, read_error, require_dict,
                     usage_from)
from .context import estimate_prompt_tokens, prepare_chat


class CloudflareAdapter:
    """Adapter for Cloudflare Workers AI text-generation models."""

    name = "cloudflare"
    options = frozenset({"top_p", "seed"})   # Workers AI text generation takes no stop

    def build_request(self, model: ModelSpec, messages: list[dict[str, str]],
                      settings: ProviderSettings, system_prompt: str) -> UpstreamRequest:
        """Build the streaming ``ai/run`` request with schema-declared parameters only."""
        if not settings.account_id:
            raise ValueError("Cloudflare account id is not configured")
        parameters = model.parameters
        chat = prepare_chat(model, messages, system_prompt)
        body = copy_params({"messages": chat, "stream": True,
                            "max_tokens": parameters["max_new_tokens"]}, parameters,
                           (("repetition_penalty", "repetition_penalty"),
                            ("temperature", "temperature"), ("top_p", "top_p"),
                            ("seed", "seed")))
        # The model id goes into the path verbatim ("@cf/meta/..."), as Cloudflare expects.
        url = (f"{settings.base_url.rstrip('/')}/accounts/{settings.account_id}"
               f"/ai/run/{model.upstream_id}")
        return UpstreamRequest(url=url, json=body, headers=bearer(settings.api_key),
                               framing="sse",
                               prompt_tokens_estimate=estimate_prompt_tokens(chat))

    def parse_event(self, payload: Any) -> list[Event]:
        """Turn one native or OpenAI-shaped event into events; ``[DONE]`` ends the reply."""
        if payload is DONE:
            return [End()]
        event = require_dict(payload)
        if event.get("errors") or event.get("error"):
            return [UpstreamError(_cloudflare_error(event) or "Cloudflare reported an error")]
        if "choices" in event:
            return parse_openai_chunk(event, "reasoning_content")
        # Native shape; the "p" padding field (and "p":"heartbeat" events) carry nothing.
        response = event.get("response")
        events: list[Event] = []
        if response and isinstance(response, str):
            events.append(TextDelta(response))
        usage = usage_from(event.get("usage"))
        if usage is not None:
            events.append(usage)
        return events

    def error_message(self, status: int, body: bytes) -> str:
        """Read ``errors[0].message`` of the v4 envelope."""
        return read_error(status, body, _cloudflare_error)


def _cloudflare_error(data: dict[str, Any]) -> str | None:
    """Return the first message of ``errors`` (or of a plain ``error``) in a body."""
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        message = error_text(errors[0])
    else:
        message = error_text(data.get("error"))
    # Workers AI prefixes its messages with "AiError: ", sometimes twice (see the 408 sample).
    while message and message.startswith("AiError: "):
        message = message[len("AiError: "):]
    return message


adapter = CloudflareAdapter()
