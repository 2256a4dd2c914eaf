"""Wire bytes the fake upstream sends for each provider: token events, endings, faults, errors.

Every event is returned already framed as one HTTP/1.1 chunk. Events for generated tokens
depend only on the provider, the model and the token index, so they are built once and
cached: the streaming loop then only writes ready-made bytes.
"""
from __future__ import annotations

import json
import random
import string
import threading
import time
from collections.abc import Iterator
from typing import Any

#: Kinds of event a reply yields; faults are placed relative to TOKEN events.
PRE, TOKEN, END = "pre", "token", "end"

#: One process-wide creation time, so cached events never need a clock read.
_CREATED = int(time.time())
_CREATED_AT = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(_CREATED))
_PAD_ALPHABET = string.ascii_letters + string.digits


def token_text(i: int) -> str:
    """Text of reply token ``i`` (0-based); every 5th holds "é", every 7th "👋"."""
    text = f"t{i}"
    if (i + 1) % 5 == 0:
        text += "é"
    if (i + 1) % 7 == 0:
        text += "👋"
    return text if i == 0 else " " + text


def expected_text(n: int) -> str:
    """The full reply made of the first ``n`` generated tokens."""
    return "".join(token_text(i) for i in range(n))


def count_prompt_tokens(text: str) -> int:
    """The fake's prompt token count: whitespace-separated words, at least 1."""
    return max(1, len(text.split()))


def dumps(obj: Any) -> bytes:
    """Compact JSON with raw UTF-8, as serde_json and Go write it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def sse(obj: Any) -> bytes:
    """One SSE ``data:`` event holding ``obj`` as JSON, chunk-framed."""
    return chunk(b"data: " + dumps(obj) + b"\n\n")


SSE_DONE = chunk(b"data: [DONE]\n\n")
SSE_MALFORMED = chunk(b'data: {"broken": "no closing brace\n\n')

_token_cache: dict[tuple[str, str], list[bytes]] = {}
_cache_lock = threading.Lock()


class Reply:
    """One streamed reply of one provider; subclasses fill in the event shapes."""

    name = ""
    content_type = "text/event-stream"

    def __init__(self, body: dict, prompt_text: str) -> None:
        self.model = str(body.get("model") or "fake-model")
        self.prompt_tokens = count_prompt_tokens(prompt_text)
        self.started_ns = time.monotonic_ns()

    def headers(self) -> list[tuple[str, str]]:
        """Provider-specific response headers for a stream."""
        return [("Cache-Control", "no-cache")]

    def events(self, pieces: list[str] | None, count: int, reason: str,
               terminate: bool = True) -> Iterator[tuple[str, bytes]]:
        """Yield ``(kind, chunk)`` for the whole stream; ``reason`` is "stop" or "length"."""
        yield from self.preamble()
        if pieces is None:
            cached = _token_cache.setdefault((self.name, self.model), [])
            for i in range(count):
                if i >= len(cached):  # built on first use, so a huge `tokens` costs nothing upfront
                    self._extend_cache(cached, i)
                yield TOKEN, cached[i]
        else:
            for i in range(count):
                yield TOKEN, self.token_event(i, pieces[i])
        if terminate:
            text = expected_text(count) if pieces is None else "".join(pieces[:count])
            for data in self.ending(text, count, reason):
                yield END, data

    def _extend_cache(self, cached: list[bytes], i: int) -> None:
        """Cache token events up to ``i``; locked, as several fakes may run in one process."""
        with _cache_lock:
            while len(cached) <= i:
                cached.append(self.token_event(len(cached), token_text(len(cached))))

    def usage(self, completion: int) -> dict:
        """OpenAI-style usage counts."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def preamble(self) -> Iterator[tuple[str, bytes]]:
        """Events sent with the headers, before any token."""
        return iter(())

    def token_event(self, i: int, text: str) -> bytes:
        """The framed event carrying token ``i``."""
        raise NotImplementedError

    def ending(self, text: str, count: int, reason: str) -> list[bytes]:
        """The framed events that end a complete stream."""
        raise NotImplementedError

    def error_event(self) -> bytes:
        """The provider's in-stream error event."""
        raise NotImplementedError

    def malformed_event(self) -> bytes:
        """An event whose JSON does not parse."""
        return SSE_MALFORMED

    @classmethod
    def error_body(cls, status: int, message: str) -> dict:
        """The provider's JSON error body for an HTTP error status."""
        return {"error": message}


class HuggingFaceReply(Reply):
    """TGI ``generate_stream`` / hosted Inference API: SSE, no ``[DONE]``."""

    name = "huggingface"

    def __init__(self, body: dict, prompt_text: str) -> None:
        super().__init__(body, prompt_text)
        params = body.get("parameters") or {}
        self.details = params.get("details") is True
        self.prefix = body["inputs"] if params.get("return_full_text") is True else ""

    def headers(self) -> list[tuple[str, str]]:
        """TGI's stream headers."""
        return [("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]

    def _event(self, i: int, text: str, special: bool = False,
               generated: str | None = None, details: dict | None = None) -> bytes:
        """One TGI StreamResponse; ``index`` counts from 1 as TGI does."""
        return sse({"index": i + 1,
                    "token": {"id": 1000 + i, "text": text, "logprob": -0.25, "special": special},
                    "generated_text": generated, "details": details})

    def token_event(self, i: int, text: str) -> bytes:
        """A plain, non-final token."""
        return self._event(i, text)

    def events(self, pieces: list[str] | None, count: int, reason: str,
               terminate: bool = True) -> Iterator[tuple[str, bytes]]:
        """Like the base, but on "length" the last real token is itself the final event."""
        if not (terminate and reason == "length" and count > 0):
            yield from super().events(pieces, count, reason, terminate)
            return
        # TGI stops without an EOS token here, so the last text token carries generated_text.
        yield from super().events(pieces, count - 1, reason, terminate=False)
        text = expected_text(count) if pieces is None else "".join(pieces[:count])
        last = token_text(count - 1) if pieces is None else pieces[count - 1]
        yield TOKEN, self._event(count - 1, last, generated=self.prefix + text,
                                 details=self._details("length", count))

    def _details(self, reason: str, generated: int) -> dict | None:
        """The final ``details`` object, only when the request asked for it."""
        if not self.details:
            return None
        return {"finish_reason": reason, "generated_tokens": generated, "seed": None,
                "input_length": self.prompt_tokens}

    def ending(self, text: str, count: int, reason: str) -> list[bytes]:
        """A special EOS token carrying the full text (length endings never get here)."""
        return [self._event(count, "</s>", special=True, generated=self.prefix + text,
                            details=self._details("eos_token", count + 1))]

    def error_event(self) -> bytes:
        """TGI's mid-stream generation error."""
        return sse({"error": "Request failed during generation: Server error: fake upstream fault",
                    "error_type": "generation"})


class CloudflareReply(Reply):
    """Workers AI native ``/ai/run/`` stream: ``response`` + ``p`` padding, usage, ``[DONE]``."""

    name = "cloudflare"

    def token_event(self, i: int, text: str) -> bytes:
        """A token with padding of a random-looking but repeatable length."""
        rng = random.Random(i)
        pad = "".join(rng.choices(_PAD_ALPHABET, k=rng.randint(1, 48)))
        return sse({"response": text, "p": pad})

    def ending(self, text: str, count: int, reason: str) -> list[bytes]:
        """Native streams carry no finish reason: usage, then ``[DONE]``."""
        return [sse({"response": "", "usage": self.usage(count)}), SSE_DONE]

    def error_event(self) -> bytes:
        """An in-band error in the v4 envelope's ``errors`` shape."""
        return sse({"errors": [{"message": "AiError: Max retries exhausted", "code": 3050}]})

    @classmethod
    def error_body(cls, status: int, message: str) -> dict:
        """The Cloudflare v4 envelope."""
        if status == 401:
            return {"result": None, "success": False,
                    "errors": [{"code": 10000, "message": message}], "messages": []}
        code = _CLOUDFLARE_CODES.get(status, 3050)
        return {"errors": [{"message": f"AiError: {message}", "code": code}],
                "success": False, "result": {}, "messages": []}


_CLOUDFLARE_CODES = {400: 5007, 403: 5016, 404: 3042, 408: 3046, 413: 3006, 429: 3036}


class OpenRouterReply(Reply):
    """OpenRouter chat completions: processing comment, chunks, finish, usage, ``[DONE]``."""

    name = "openrouter"
    _id = "gen-fake-upstream"

    def headers(self) -> list[tuple[str, str]]:
        """OpenRouter names the generation in a header."""
        return [("Cache-Control", "no-cache"), ("X-Generation-Id", self._id)]

    def _chunk(self, delta: dict, finish: str | None = None, **extra: Any) -> bytes:
        """One chat.completion.chunk event."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish,
                  "native_finish_reason": finish, "logprobs": None}
        return sse({"id": self._id, "provider": "FakeProvider", "model": self.model,
                    "object": "chat.completion.chunk", "created": _CREATED,
                    "choices": [choice], **extra})

    def preamble(self) -> Iterator[tuple[str, bytes]]:
        """The keep-alive comment, then the empty role chunk real streams open with."""
        yield PRE, chunk(b": OPENROUTER PROCESSING\n\n")
        yield PRE, self._chunk({"role": "assistant", "content": ""})

    def token_event(self, i: int, text: str) -> bytes:
        """A content delta."""
        return self._chunk({"role": "assistant", "content": text})

    def ending(self, text: str, count: int, reason: str) -> list[bytes]:
        """Finish chunk and usage chunk are separate; usage has empty choices, per the docs."""
        usage = sse({"id": self._id, "provider": "FakeProvider", "model": self.model,
                     "object": "chat.completion.chunk", "created": _CREATED, "choices": [],
                     "usage": {**self.usage(count), "cost": 0, "is_byok": False}})
        return [self._chunk({"role": "assistant", "content": ""}, reason), usage, SSE_DONE]

    def error_event(self) -> bytes:
        """A chunk with a top-level ``error`` and finish_reason "error"."""
        error = {"code": 502, "message": "Provider disconnected unexpectedly",
                 "metadata": {"error_type": "provider_unavailable"}}
        return self._chunk({"content": ""}, "error", error=error)

    @classmethod
    def error_body(cls, status: int, message: str) -> dict:
        """OpenRouter's ``{"error": {"message", "code"}}``."""
        return {"error": {"message": message, "code": status}}


class OllamaReply(Reply):
    """Ollama ``/api/chat``: NDJSON lines, final ``done: true`` line with metrics."""

    name = "ollama"
    content_type = "application/x-ndjson"

    def headers(self) -> list[tuple[str, str]]:
        """Ollama sends no cache headers."""
        return []

    def _line(self, obj: dict) -> bytes:
        """One NDJSON line; Go's encoder escapes <, > and & (outside strings they never occur)."""
        data = dumps(obj).replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
        return chunk(data.replace(b"&", b"\\u0026") + b"\n")

    def token_event(self, i: int, text: str) -> bytes:
        """A ``done: false`` line with one content piece."""
        return self._line({"model": self.model, "created_at": _CREATED_AT,
                           "message": {"role": "assistant", "content": text}, "done": False})

    def ending(self, text: str, count: int, reason: str) -> list[bytes]:
        """The ``done: true`` line with usage and durations in nanoseconds."""
        elapsed = max(1, time.monotonic_ns() - self.started_ns)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return [self._line({"model": self.model, "created_at": now,
                            "message": {"role": "assistant", "content": ""}, "done": True,
                            "done_reason": reason, "total_duration": elapsed,
                            "load_duration": 1000, "prompt_eval_count": self.prompt_tokens,
                            "prompt_eval_duration": elapsed // 10, "eval_count": count,
                            "eval_duration": elapsed - elapsed // 10})]

    def error_event(self) -> bytes:
        """An ``{"error": ...}`` line."""
        return self._line({"error": "an error was encountered while running the model"})

    def malformed_event(self) -> bytes:
        """A line that stops mid-object."""
        return chunk(b'{"model":"broken","message":{"role":"assistant"\n')


REPLIES: dict[str, type[Reply]] = {
    cls.name: cls for cls in (HuggingFaceReply, CloudflareReply, OpenRouterReply, OllamaReply)}

OLLAMA_TAGS = {"models": [{
    "name": "llama3.2:latest", "model": "llama3.2:latest",
    "modified_at": "2025-05-04T17:37:44.706015396-07:00", "size": 2019393189,
    "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
    "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}}]}
OLLAMA_VERSION = {"version": "0.12.3"}
