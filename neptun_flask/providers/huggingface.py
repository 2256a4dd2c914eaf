"""Hugging Face adapter: TGI text-generation with ``generate_stream`` semantics.

Request: ``{"inputs": prompt, "parameters": {...}, "stream": true}`` to
``{base}/models/{model}``; the prompt is rendered here from the model's chat template.
Stream: SSE events like
``{"index":3,"token":{"text":" is","special":false},"generated_text":null,"details":null}``;
the event with a non-null ``generated_text`` is the last one (there is no ``[DONE]``).
Errors, even validation errors, arrive as ``{"error": "...", "error_type": "..."}`` events
after HTTP 200.
"""
from __future__ import annotations

from typing import Any

from .base import (DONE, End, Event, FinishReason, ModelSpec, ProviderSettings, TextDelta,
                   UpstreamError, UpstreamRequest, Usage)
from .common import bearer, error_text, param, read_error, require_dict, top_level_error
from .context import estimate_tokens
from .prompts import get_template, normalize_turns

_FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}


def tgi_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Map catalog parameters to TGI ``parameters``, leaving out values TGI rejects."""
    out: dict[str, Any] = {"max_new_tokens": parameters["max_new_tokens"]}
    typical_p = param(parameters, "typical_p")
    if typical_p is not None and 0 < typical_p < 1:   # TGI: must be in (0, 1)
        out["typical_p"] = typical_p
    repetition_penalty = param(parameters, "repetition_penalty")
    if repetition_penalty is not None and repetition_penalty > 0:
        out["repetition_penalty"] = repetition_penalty
    temperature = param(parameters, "temperature")
    if temperature is not None and temperature > 0:   # TGI: strictly positive
        out["temperature"] = temperature
    top_p = param(parameters, "top_p")
    if top_p is not None and 0 < top_p < 1:   # TGI: must be in (0, 1); 1 means no filter
        out["top_p"] = top_p
    for name in ("stop", "seed"):
        if param(parameters, name) is not None:
            out[name] = parameters[name]
    if parameters.get("truncate") is not None:
        out["truncate"] = parameters["truncate"]
    # The compat route defaults return_full_text to true, which would echo the prompt.
    out["return_full_text"] = False
    out["details"] = True   # the only way to get token usage in the final event
    return out


class HuggingFaceAdapter:
    """Adapter for Hugging Face text-generation (TGI) endpoints."""

    name = "huggingface"
    options = frozenset({"top_p", "stop", "seed"})

    def build_request(self, model: ModelSpec, messages: list[dict[str, str]],
                      settings: ProviderSettings, system_prompt: str) -> UpstreamRequest:
        """Render the prompt and build the streaming text-generation request."""
        template = get_template(model.name)
        prompt = template.render(system_prompt, normalize_turns(messages))
        return UpstreamRequest(
            url=f"{settings.base_url.rstrip('/')}/models/{model.upstream_id}",
            json={"inputs": prompt, "parameters": tgi_parameters(model.parameters),
                  "stream": True},
            headers=bearer(settings.api_key),
            framing="sse",
            prompt_tokens_estimate=estimate_tokens(prompt),
            starts_in_reasoning=template.starts_in_reasoning,
        )

    def parse_event(self, payload: Any) -> list[Event]:
        """Turn one TGI stream event into text, and usage/finish/end on the last one."""
        if payload is DONE:
            return []   # only TGI's /v1 routes send it; the last token event already ended
        event = require_dict(payload)
        error = event.get("error")
        if error is not None:
            return [UpstreamError(error_text(error) or str(error))]
        token = event.get("token")
        text = token.get("text") if token and not token.get("special") else None
        if event.get("generated_text") is None:
            return [TextDelta(text)] if text else []
        return _final_events(text, event.get("details"))

    def error_message(self, status: int, body: bytes) -> str:
        """Read ``{"error": str}`` or ``{"error": {"message": str}}``."""
        return read_error(status, body, top_level_error)


def _final_events(text: str | None, details: Any) -> list[Event]:
    """Events for the terminating event: its text, usage, finish reason, then End."""
    events: list[Event] = [TextDelta(text)] if text else []
    if isinstance(details, dict):
        events.append(Usage(details.get("input_length"), details.get("generated_tokens")))
        reason = details.get("finish_reason")
        if reason:
            events.append(FinishReason(_FINISH.get(reason, "other")))
    events.append(End())
    return events


adapter = HuggingFaceAdapter()
