"""Client stream encoders: the AI SDK data stream protocol (ai@4), the UI message stream
protocol (AI SDK 5 to 7) and plain text. Each reader has an encoder of its own (the UI
protocol's encoder remembers which block is open)."""
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
    #: Bytes every client of the protocol ignores, written to find out whether a client that
    #: closed its sending side still reads (streaming/reader.py); empty when there are none.
    keepalive: bytes

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
#: An SSE comment: every SSE parser skips it (AI SDK 5+ rejects unknown ``data:`` chunks).
_SSE_COMMENT = b": \n\n"


class DataStreamEncoder:
    """One ``CODE:JSON`` line per part, as ``useChat`` (ai@4, streamProtocol 'data') parses."""

    content_type = _EVENT_STREAM
    headers = {**_COMMON_HEADERS, "x-vercel-ai-data-stream": "v1"}
    #: Every line must be ``CODE:JSON``; an empty ``2:`` data part adds nothing to useChat's
    #: ``data`` (ai@4 appends the array's items).
    keepalive = b"2:[]\n"

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
    keepalive = b""   # every byte is reply text

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


class UIMessageStreamEncoder:
    """SSE ``data: {json}`` chunks of the UI message stream (v1), with only the fields every
    5.x-7.x client accepts: text and reasoning go in blocks opened by ``*-start`` and closed
    by ``*-end``; usage and the finish reason travel in the finish chunk's metadata."""

    content_type = "text/event-stream"
    headers = {**_COMMON_HEADERS, "x-vercel-ai-ui-message-stream": "v1"}
    keepalive = _SSE_COMMENT

    def __init__(self) -> None:
        self._open: str | None = None     # "text" or "reasoning"
        self._block = ""                  # the open block's id
        self._blocks = 0
        self._failed = False

    def start(self, message_id: str) -> bytes:
        """``start`` with the message id, then ``start-step``."""
        return (b'data: {"type":"start","messageId":' + _dumps(message_id) + b'}\n\n'
                b'data: {"type":"start-step"}\n\n')

    def text(self, piece: str) -> bytes:
        """A ``text-delta``, opening a text block first when none is open."""
        head = b"" if self._open == "text" else self._switch("text")
        return (head + b'data: {"type":"text-delta","id":"' + self._block.encode()
                + b'","delta":' + _dumps(piece) + b"}\n\n")

    def reasoning(self, piece: str) -> bytes:
        """A ``reasoning-delta``, opening a reasoning block first when none is open."""
        head = b"" if self._open == "reasoning" else self._switch("reasoning")
        return (head + b'data: {"type":"reasoning-delta","id":"' + self._block.encode()
                + b'","delta":' + _dumps(piece) + b"}\n\n")

    def error(self, message: str) -> bytes:
        """``error``: the client ends the reply there (its status becomes ``error``)."""
        self._failed = True
        return self._close() + b"data: " + _dumps({"type": "error", "errorText": message}) + b"\n\n"

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        """``finish-step`` and ``finish`` (reason and usage in ``messageMetadata``), then the
        stream's ``[DONE]``; after an error only ``[DONE]``."""
        if self._failed:
            return b"data: [DONE]\n\n"
        metadata = {"finishReason": reason,
                    "usage": {"inputTokens": prompt_tokens, "outputTokens": completion_tokens}}
        return (self._close() + b'data: {"type":"finish-step"}\n\n'
                + b"data: " + _dumps({"type": "finish", "messageMetadata": metadata})
                + b"\n\ndata: [DONE]\n\n")

    def _switch(self, kind: str) -> bytes:
        """Close the open block, open one of ``kind``."""
        closing = self._close()
        self._open = kind
        self._block = f"{kind[0]}{self._blocks}"
        self._blocks += 1
        return closing + (b'data: {"type":"' + kind.encode() + b'-start","id":"'
                          + self._block.encode() + b'"}\n\n')

    def _close(self) -> bytes:
        """``text-end`` or ``reasoning-end`` of the open block, if any."""
        if self._open is None:
            return b""
        kind, self._open = self._open, None
        return b'data: {"type":"' + kind.encode() + b'-end","id":"' + self._block.encode() + b'"}\n\n'


#: OpenAI's finish reasons for ours (a stopped or cut reply ended normally for the client).
OPENAI_FINISH = {"length": "length", "content-filter": "content_filter",
                 "tool-calls": "tool_calls"}


class OpenAIChunkEncoder:
    """``chat.completion.chunk`` events of OpenAI's streaming API, then ``data: [DONE]``;
    reasoning goes out as ``reasoning_content`` deltas, a failure as an ``error`` event."""

    content_type = "text/event-stream"
    headers = dict(_COMMON_HEADERS)
    keepalive = _SSE_COMMENT   # as OpenAI's and OpenRouter's own streams send

    def __init__(self, completion_id: str, model: str, created: int, include_usage: bool):
        self._include_usage = include_usage
        self._failed = False
        self._head = (b'data: {"id":' + _dumps(completion_id)
                      + b',"object":"chat.completion.chunk","created":' + str(created).encode()
                      + b',"model":' + _dumps(model) + b',"choices":')
        self._delta = self._head + b'[{"index":0,"delta":{'

    def _chunk(self, delta: bytes) -> bytes:
        return self._delta + delta + b'},"finish_reason":null}]}\n\n'

    def start(self, message_id: str) -> bytes:
        """The first chunk names the role."""
        return self._chunk(b'"role":"assistant","content":""')

    def text(self, piece: str) -> bytes:
        """A ``content`` delta."""
        return self._chunk(b'"content":' + _dumps(piece))

    def reasoning(self, piece: str) -> bytes:
        """A ``reasoning_content`` delta (DeepSeek's name, which OpenAI clients pass on)."""
        return self._chunk(b'"reasoning_content":' + _dumps(piece))

    def error(self, message: str) -> bytes:
        """An ``error`` event, as OpenAI sends after the first byte."""
        self._failed = True
        return b"data: " + _dumps({"error": {"message": message, "type": "api_error",
                                             "param": None, "code": None}}) + b"\n\n"

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        if self._failed:
            return b"data: [DONE]\n\n"
        finish = OPENAI_FINISH.get(reason, "stop")
        out = self._delta + b'},"finish_reason":' + _dumps(finish) + b"}]}\n\n"
        if self._include_usage:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                     "total_tokens": prompt_tokens + completion_tokens}
            out += self._head + b'[],"usage":' + _dumps(usage) + b"}\n\n"
        return out + b"data: [DONE]\n\n"


#: The protocols by name: a new encoder per reader.
ENCODERS = {"data": DataStreamEncoder, "text": TextEncoder, "ui": UIMessageStreamEncoder}


def new_encoder(protocol: str) -> Encoder:
    """An encoder for one reader in ``protocol``."""
    return ENCODERS[protocol]()


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
