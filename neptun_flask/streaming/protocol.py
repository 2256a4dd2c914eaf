"""Client stream encoders: the AI SDK data stream protocol (v1) and plain text."""
from __future__ import annotations

from typing import Protocol

import orjson

from .parts import ERROR, FINISH, REASONING, START

# Compact UTF-8 JSON as bytes, like json.dumps(ensure_ascii=False) encoded, in one C call.
_dumps = orjson.dumps


class Encoder(Protocol):
    """Turns reply parts into the bytes a client reads."""

    content_type: str
    headers: dict[str, str]

    def start(self, message_id: str) -> bytes:
        """Bytes that open the reply."""

    def text(self, piece: str) -> bytes:
        """A text delta."""

    def reasoning(self, piece: str) -> bytes:
        """A reasoning delta."""

    def error(self, message: str) -> bytes:
        """An in-band error."""

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        """Bytes that close the reply."""


_COMMON_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_EVENT_STREAM = "text/event-stream; charset=utf-8"


class DataStreamEncoder:
    """One ``CODE:JSON`` line per part, as ``useChat`` (ai@4, streamProtocol 'data') parses."""

    content_type = _EVENT_STREAM
    headers = {**_COMMON_HEADERS, "x-vercel-ai-data-stream": "v1"}

    def start(self, message_id: str) -> bytes:
        """``f:`` start-step part carrying the message id."""
        return b'f:{"messageId":' + _dumps(message_id) + b"}\n"

    def text(self, piece: str) -> bytes:
        """``0:`` text part."""
        return b"0:" + _dumps(piece) + b"\n"

    def reasoning(self, piece: str) -> bytes:
        """``g:`` reasoning part."""
        return b"g:" + _dumps(piece) + b"\n"

    def error(self, message: str) -> bytes:
        """``3:`` error part."""
        return b"3:" + _dumps(message) + b"\n"

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        """``e:`` finish-step then ``d:`` finish-message, which must be the last part."""
        usage = {"promptTokens": prompt_tokens, "completionTokens": completion_tokens}
        step = _dumps({"finishReason": reason, "usage": usage, "isContinued": False})
        message = _dumps({"finishReason": reason, "usage": usage})
        return b"e:" + step + b"\nd:" + message + b"\n"


class TextEncoder:
    """The bare reply text (``?stream_protocol=text``); reasoning and errors are not text."""

    content_type = _EVENT_STREAM
    headers = dict(_COMMON_HEADERS)

    def start(self, message_id: str) -> bytes:
        """Nothing opens a text stream."""
        return b""

    def text(self, piece: str) -> bytes:
        """The text itself."""
        return piece.encode()

    def reasoning(self, piece: str) -> bytes:
        """Reasoning is not part of the reply text."""
        return b""

    def error(self, message: str) -> bytes:
        """Plain text has no error channel; the relay cuts the connection instead."""
        return b""

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        """Nothing closes a text stream."""
        return b""


ENCODERS = {"data": DataStreamEncoder(), "text": TextEncoder()}


def encode(encoder: Encoder, parts) -> bytes:
    """The bytes of ``parts`` (see parts.py) in ``encoder``'s protocol."""
    text = encoder.text
    out = []
    for part in parts:
        if type(part) is str:
            out.append(text(part))
            continue
        kind = part[0]
        if kind == REASONING:
            out.append(encoder.reasoning(part[1]))
        elif kind == START:
            out.append(encoder.start(part[1]))
        elif kind == ERROR:
            out.append(encoder.error(part[1]))
        elif kind == FINISH:
            out.append(encoder.finish(part[1], part[2], part[3]))
    return b"".join(out)
