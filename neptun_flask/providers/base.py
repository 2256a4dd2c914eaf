"""The one interface every provider adapter implements, and the events adapters emit.

An adapter is pure: it imports neither Flask nor ``requests``. It turns a catalog entry and
the chat messages into an :class:`UpstreamRequest`, and turns each decoded upstream event
(a JSON object, or :data:`DONE` for an SSE ``[DONE]`` line) into a list of events below.
Byte framing (SSE / NDJSON) is done once, in :mod:`neptun_flask.providers.framing`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

#: Sentinel payload for an SSE ``data: [DONE]`` line.
DONE = object()


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What an adapter needs to know of one catalog model."""

    provider: str            # huggingface | cloudflare | openrouter | ollama
    publisher: str
    name: str
    upstream_id: str         # configuration.model, e.g. "Qwen/Qwen2.5-72B-Instruct"
    parameters: dict[str, Any]  # configuration.parameters as in the catalog (-1 = provider default)

    @property
    def model_id(self) -> str:
        """The catalog id ``publisher/name``."""
        return f"{self.publisher}/{self.name}"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Credentials and base URL of one provider, from the app config."""

    base_url: str
    api_key: str | None = None
    account_id: str | None = None      # Cloudflare only
    app_url: str | None = None         # OpenRouter attribution (HTTP-Referer) only


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """An HTTP POST to send upstream; the relay sends it with ``requests``."""

    url: str
    json: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    framing: str = "sse"               # "sse" or "ndjson"
    prompt_tokens_estimate: int = 0    # used when the upstream reports no usage
    starts_in_reasoning: bool = False  # prompt ended inside <think> (DeepSeek-R1)


@dataclass(slots=True)
class TextDelta:
    """A piece of reply text."""

    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of model reasoning, sent to the client as an AI SDK reasoning part."""

    text: str


@dataclass(slots=True)
class Usage:
    """Token counts reported by the upstream; None where it gave none."""

    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(slots=True)
class FinishReason:
    """The upstream's finish reason, already mapped to the AI SDK vocabulary."""

    reason: str   # stop | length | content-filter | tool-calls | error | other | unknown


@dataclass(slots=True)
class End:
    """The upstream's own terminator was seen: the reply is complete."""


@dataclass(slots=True)
class UpstreamError:
    """An error reported inside the stream (after HTTP 200)."""

    message: str


# Events are made per token, so they are plain slotted dataclasses: a frozen one costs twice
# as much to create. Nothing changes them after an adapter made them.
Event = TextDelta | ReasoningDelta | Usage | FinishReason | End | UpstreamError


#: Generation options any adapter takes (as catalog parameters): the reply's length and
#: temperature; ``Adapter.options`` names the others it takes (top_p, stop, seed).
COMMON_OPTIONS = frozenset({"max_new_tokens", "temperature"})


class Adapter(Protocol):
    """One provider: build the request, parse events, read error bodies."""

    name: str
    options: frozenset[str]   # generation options beyond COMMON_OPTIONS it maps upstream

    def build_request(self, model: ModelSpec, messages: list[dict[str, str]],
                      settings: ProviderSettings, system_prompt: str) -> UpstreamRequest:
        """Return the upstream request for these chat messages (role/content dicts)."""

    def parse_event(self, payload: Any) -> list[Event]:
        """Turn one decoded event (dict, or DONE) into events; raise ValueError if malformed."""

    def error_message(self, status: int, body: bytes) -> str:
        """Extract a human-readable message from an upstream error response body."""


class RequestTooLarge(ValueError):
    """The last message alone does not fit the model's context."""
