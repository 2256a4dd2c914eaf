"""Byte framing for every upstream: split a byte stream into SSE or NDJSON payloads.

This is the hot path of the relay. It works a whole read at a time (one call per read, no
generator per layer): each event costs its share of one ``bytes.split``, a couple of prefix
checks and one JSON decode; there is no regex and no per-byte loop. Lines are split on
``b"\\n"`` before any decoding: that byte never occurs inside a multi-byte UTF-8 sequence, so
a character cut between two reads is simply re-joined with the rest of its line, and only
complete lines are decoded.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from .base import DONE, Adapter, Event


class MalformedEvent(ValueError):
    """An upstream event whose payload is not valid JSON."""


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
        # orjson decodes an event in a third of the json module's time, and checks the UTF-8
        # itself. It also refuses lone surrogates, which no client stream could carry anyway.
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _malformed(data) from None


class _Lines:
    """Split reads into complete lines, carrying a partial line over to the next read."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def _lines(self, chunk: bytes) -> list[bytes]:
        """Return the lines completed by this read (without their ``\\n``)."""
        lines = chunk.split(b"\n")
        if len(lines) == 1:      # no newline: the line continues in the next read
            if chunk:
                self._pending.append(chunk)
            return []
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = b"".join(self._pending)
            self._pending = []
        tail = lines.pop()
        if tail:
            self._pending.append(tail)
        return lines

    def _tail(self) -> bytes:
        """Return the unterminated last line left at EOF."""
        tail = b"".join(self._pending)
        self._pending = []
        return tail


def _sse_value(line: bytes) -> bytes:
    """Return the value of a ``data:`` line, with or without the space after the colon."""
    value = line[6:] if line[5:6] == b" " else line[5:]
    return value[:-1] if value.endswith(b"\r") else value


class SseFramer(_Lines):
    """Payloads of ``data:`` fields, one per SSE event (blank-line separated)."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        super().__init__()
        self._data: list[bytes] = []

    def single(self, chunk: bytes) -> bytes | None:
        """The payload when this read is exactly one whole one-line event (the common read)
        and nothing is held from earlier reads; None otherwise (then ``feed`` it)."""
        if (chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") and len(chunk) > 8
                and chunk.find(b"\n") == len(chunk) - 2 and chunk[-3] != 13
                and not self._pending and not self._data):
            return chunk[6:-2]
        return None

    def feed(self, chunk: bytes) -> list[bytes]:
        """The raw payloads completed by this read."""
        out = []
        data = self._data
        for line in self._lines(chunk):
            if line[:5] == b"data:":
                data.append(_sse_value(line))
            elif data and (not line or line == b"\r"):
                # Blank line: dispatch. An empty ``data:`` event carries nothing; skip it.
                payload = data[0] if len(data) == 1 else b"\n".join(data)
                data.clear()
                if payload:
                    out.append(payload)
            # Anything else is a comment (": OPENROUTER PROCESSING", ":" keep-alive),
            # an ignored field (event:, id:, retry:) or a blank line between events.
        return out

    def finish(self) -> list[bytes]:
        """At EOF: the payload of an event left without its blank line, if any."""
        tail = self._tail()
        if tail[:5] == b"data:":
            self._data.append(_sse_value(tail))
        payload = b"\n".join(self._data)
        self._data.clear()
        return [payload] if payload else []


class NdjsonFramer(_Lines):
    """One payload per non-blank line."""

    __slots__ = ()

    def single(self, chunk: bytes) -> bytes | None:
        """The line when this read is exactly one whole line and nothing is held; else None."""
        if chunk.find(b"\n") == len(chunk) - 1 and len(chunk) > 1 and not self._pending:
            return chunk[:-1]
        return None

    def feed(self, chunk: bytes) -> list[bytes]:
        """The raw payloads completed by this read."""
        # Blank lines are rare: they are skipped where decoding fails (see _decode_line).
        return self._lines(chunk)

    def finish(self) -> list[bytes]:
        """At EOF: a last line without its newline, if any."""
        tail = self._tail().strip()
        return [tail] if tail else []


_FRAMERS = {"sse": SseFramer, "ndjson": NdjsonFramer}


def _framer(framing: str):
    """A new framer for ``framing``."""
    try:
        return _FRAMERS[framing]()
    except KeyError:
        raise ValueError(f"unknown framing {framing!r}") from None


def _decode_line(line: bytes) -> object | None:
    """Decode one payload; None for a blank NDJSON line (checked only when decoding fails)."""
    try:
        return _decode(line)
    except MalformedEvent:
        if not line or line.isspace():
            return None
        raise


def _decode_at_eof(payload: bytes) -> object | None:
    """Decode what EOF left; a payload that fails to parse was cut short: None, and the relay,
    seeing no terminator, reports the stream as cut."""
    try:
        return _decode(payload)
    except MalformedEvent:
        return None


class EventDecoder:
    """Turns each upstream read into the adapter's events: framing, JSON, adapter, in one call.

    A malformed payload after good ones in the same read is raised on the next call, so the
    good events are applied first, as if every payload had been a read of its own."""

    __slots__ = ("_framer", "_parse", "_error")

    def __init__(self, adapter: Adapter, framing: str) -> None:
        self._framer = _framer(framing)
        self._parse = adapter.parse_event
        self._error: Exception | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by one read; raises MalformedEvent for a bad payload."""
        if self._error is not None:
            self._raise_pending()
        raw = self._framer.single(chunk)
        if raw is None:
            return self._all_events(_decode_line, self._framer.feed(chunk))
        # The common case, one JSON event per read, decoded and parsed right here; anything
        # else ([DONE], a blank NDJSON line, bad JSON) takes the general path.
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = _decode_line(raw)
            if value is None:
                return []
        return self._events(value)

    def finish(self) -> list[Event]:
        """The events of whatever EOF left in the buffer."""
        self._raise_pending()
        return self._all_events(_decode_at_eof, self._framer.finish())

    def _all_events(self, decode, items: list) -> list[Event]:
        """Events of several payloads; an error after some events waits for the next call."""
        events: list[Event] = []
        for item in items:
            try:
                value = decode(item)
                if value is not None:
                    events += self._events(value)
            except MalformedEvent as error:
                if not events:
                    raise
                self._error = error
                break
        return events

    def _events(self, value: object) -> list[Event]:
        """The adapter's events for one decoded payload."""
        try:
            return self._parse(value)
        except (AttributeError, TypeError, KeyError, IndexError) as error:
            # Valid JSON of an unexpected shape (e.g. "choices": ["x"]) is a malformed event
            # too; the relay handles ValueErrors, not every error a lookup can raise.
            raise MalformedEvent(
                f"unexpected event shape from upstream ({type(error).__name__})") from None

    def _raise_pending(self) -> None:
        """Raise an error held back from the previous read."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class _Payloads:
    """An adapter whose events are the decoded payloads themselves."""

    @staticmethod
    def parse_event(payload: object) -> list[object]:
        """The payload, as it is."""
        return [payload]


def iter_payloads(chunks: Iterable[bytes], framing: str) -> Iterator[object]:
    """Yield decoded JSON payloads (or DONE) from raw upstream reads."""
    return iter_events(chunks, _Payloads, framing)


def iter_events(chunks: Iterable[bytes], adapter: Adapter, framing: str) -> Iterator[Event]:
    """Yield the adapter's events for every payload of the stream (a bad framing fails here,
    not at the first read)."""
    return _iter_events(chunks, EventDecoder(adapter, framing))


def _iter_events(chunks: Iterable[bytes], decoder: EventDecoder) -> Iterator[Event]:
    """The generator behind iter_events."""
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.finish()
