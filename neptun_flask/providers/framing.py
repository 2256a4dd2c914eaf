"""Byte framing for every upstream: split a byte stream into SSE or NDJSON payloads.

This is the hot path of the relay, so each event costs its share of one ``bytes.split``,
a couple of prefix checks and one JSON decode; there is no regex and no per-byte loop.
Lines are split on ``b"\\n"`` before any decoding: that byte never occurs inside a
multi-byte UTF-8 sequence, so a character cut between two reads is simply re-joined with
the rest of its line, and only complete lines are decoded.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from .base import DONE, Adapter, Event

# JSONDecoder.decode on str skips json.loads' keyword handling and its encoding sniffing of
# bytes (UTF-16/32 detection a JSON stream never needs): about a third of the per-event cost.
_json_decode = json.JSONDecoder().decode


class MalformedEvent(ValueError):
    """An upstream event whose payload is not valid JSON."""


def iter_payloads(chunks: Iterable[bytes], framing: str) -> Iterator[object]:
    """Yield decoded JSON payloads (or DONE) from raw upstream reads."""
    if framing == "sse":
        return _iter_sse(chunks)
    if framing == "ndjson":
        return _iter_ndjson(chunks)
    raise ValueError(f"unknown framing {framing!r}")


def iter_events(chunks: Iterable[bytes], adapter: Adapter, framing: str) -> Iterator[Event]:
    """Yield the adapter's events for every payload of the stream."""
    parse = adapter.parse_event
    for payload in iter_payloads(chunks, framing):
        try:
            events = parse(payload)
        except (AttributeError, TypeError, KeyError, IndexError) as error:
            # Valid JSON of an unexpected shape (e.g. "choices": ["x"]) is a malformed event
            # too; the relay handles ValueErrors, not every error a lookup can raise.
            raise MalformedEvent(
                f"unexpected event shape from upstream ({type(error).__name__})") from None
        yield from events


def _malformed(data: bytes) -> MalformedEvent:
    """Build the error for a bad payload, quoting only its start."""
    head = data[:60].decode("utf-8", "replace")
    more = "..." if len(data) > 60 else ""
    return MalformedEvent(f"upstream sent invalid JSON: {head!r}{more}")


def _decode(data: bytes) -> object:
    """Decode one complete payload: ``[DONE]`` or JSON."""
    if data == b"[DONE]":
        return DONE
    try:
        return _json_decode(data.decode())
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        raise _malformed(data) from None


class _LineSplitter:
    """Split reads into complete lines, carrying a partial line over to the next read."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the lines completed by this read (without their ``\\n``)."""
        lines = chunk.split(b"\n")
        if len(lines) == 1:      # no newline: the line continues in the next read
            if chunk:
                self.pending.append(chunk)
            return []
        if self.pending:
            self.pending.append(lines[0])
            lines[0] = b"".join(self.pending)
            self.pending = []
        tail = lines.pop()
        if tail:
            self.pending.append(tail)
        return lines

    def tail(self) -> bytes:
        """Return the unterminated last line left at EOF."""
        return b"".join(self.pending)


def _sse_value(line: bytes) -> bytes:
    """Return the value of a ``data:`` line, with or without the space after the colon."""
    value = line[6:] if line[5:6] == b" " else line[5:]
    return value[:-1] if value.endswith(b"\r") else value


def _iter_sse(chunks: Iterable[bytes]) -> Iterator[object]:
    """Yield payloads of ``data:`` fields, one per SSE event (blank-line separated)."""
    splitter = _LineSplitter()
    feed = splitter.feed
    data: list[bytes] = []
    for chunk in chunks:
        for line in feed(chunk):
            if line[:5] == b"data:":
                data.append(_sse_value(line))
            elif data and (not line or line == b"\r"):
                # Blank line: dispatch. An empty ``data:`` event carries nothing; skip it.
                payload = data[0] if len(data) == 1 else b"\n".join(data)
                data = []
                if payload:
                    yield _decode(payload)
            # Anything else is a comment (": OPENROUTER PROCESSING", ":" keep-alive),
            # an ignored field (event:, id:, retry:) or a blank line between events.
    tail = splitter.tail()
    if tail[:5] == b"data:":
        data.append(_sse_value(tail))
    if data:
        yield from _decode_truncated(b"\n".join(data))


def _decode_truncated(payload: bytes) -> Iterator[object]:
    """Decode an event cut off by EOF; one that fails to parse was truncated: drop it."""
    if not payload:
        return
    try:
        value = _decode(payload)
    except MalformedEvent:
        return  # the relay sees no terminator and reports the stream as cut
    yield value


def _iter_ndjson(chunks: Iterable[bytes]) -> Iterator[object]:
    """Yield one JSON payload per non-blank line."""
    splitter = _LineSplitter()
    feed = splitter.feed
    for chunk in chunks:
        for line in feed(chunk):
            try:
                value = _json_decode(line.decode())
            except ValueError:
                # Checking for blank lines only on failure keeps the common path lean.
                if not line or line.isspace():
                    continue
                raise _malformed(line) from None
            yield value
    # A last line without its newline is still an event, unless EOF cut it short.
    yield from _decode_truncated(splitter.tail().strip())
