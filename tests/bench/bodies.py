"""Reading a recorded raw HTTP response after the fact: status, de-chunked body, reply text.

The load generator only timestamps and stores network reads while streams run; everything
here runs once the stream is over, so parsing never slows the measurement down.
"""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class Parsed:
    """A response split into its parts; ``body_start`` maps body offsets to raw offsets."""

    status: int | None
    body: bytes
    body_start: int                 # raw offset of the first body byte
    spans: list[tuple[int, int]]    # (body offset, raw offset) where each chunk's data starts


def parse_response(raw: bytes) -> Parsed:
    """Split the status line, headers and the (possibly chunked) body."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return Parsed(None, b"", len(raw), [])
    head = raw[:end].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return Parsed(None, b"", len(raw), [])
    start = end + 4
    chunked = any(line.lower().replace(" ", "") == "transfer-encoding:chunked" for line in head)
    if not chunked:
        return Parsed(status, raw[start:], start, [(0, start)])
    body, spans = _dechunk(raw, start)
    return Parsed(status, body, start, spans)


def _dechunk(raw: bytes, pos: int) -> tuple[bytes, list[tuple[int, int]]]:
    """Join chunk data; a truncated body keeps what arrived."""
    parts: list[bytes] = []
    spans: list[tuple[int, int]] = []
    size_done = 0
    while True:
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            break
        try:
            size = int(raw[pos:line_end].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        data_start = line_end + 2
        spans.append((size_done, data_start))
        parts.append(raw[data_start:data_start + size])
        size_done += len(parts[-1])
        pos = data_start + size + 2
    return b"".join(parts), spans


def raw_offset(parsed: Parsed, body_offset: int) -> int:
    """The raw offset of a body offset."""
    raw = parsed.body_start
    for body_at, raw_at in parsed.spans:
        if body_at > body_offset:
            break
        raw = raw_at + (body_offset - body_at)
    return raw


def _lines(body: bytes) -> tuple[list[bytes], bool]:
    """The body's complete lines, and whether it ended with one (an unterminated last line
    was cut short: it is not read)."""
    *lines, tail = body.split(b"\n")
    return lines, not tail


def read_data_stream(body: bytes) -> tuple[str, bool, int | None]:
    """AI SDK data stream: (text of ``0:`` parts, ended with ``d:``, offset of the first ``0:``).
    A line that is not JSON ends the reading: the stream is broken, so not finished."""
    text, first, offset = [], None, 0
    lines, whole = _lines(body)
    for line in lines:
        if line.startswith(b"0:"):
            try:
                text.append(json.loads(line[2:]))
            except ValueError:
                return "".join(text), False, first
            if first is None:
                first = offset
        offset += len(line) + 1
    finished = whole and bool(lines) and lines[-1].startswith(b"d:")
    return "".join(text), finished, first


def read_upstream(body: bytes, provider: str) -> tuple[str, bool, int | None]:
    """A provider's own stream: (reply text, whether it reached its end marker, offset of the
    first line carrying text). Comments and empty events (OpenRouter's processing comment and
    role chunk) are not content; a line that is not JSON ends the reading, as not finished."""
    text, finished, first, offset = [], False, None, 0
    for line in _lines(body)[0]:
        at, offset = offset, offset + len(line) + 1
        try:
            if provider == "ollama":
                if not line.strip():
                    continue
                event = json.loads(line)
            elif line.startswith(b"data:"):
                data = line[5:].strip()
                event = "[DONE]" if data == b"[DONE]" else json.loads(data)
            else:
                continue
        except ValueError:
            return "".join(text), False, first
        piece, end = _upstream_event(event, provider)
        if piece and first is None:
            first = at
        text.append(piece)
        finished = finished or end
    return "".join(text), finished, first


def _upstream_event(event, provider: str) -> tuple[str, bool]:
    """(text, is the end) of one decoded upstream event."""
    if event == "[DONE]":
        return "", True
    if provider == "ollama":
        return event.get("message", {}).get("content", ""), event.get("done") is True
    if provider == "huggingface":
        token = event.get("token") or {}
        text = "" if token.get("special") else token.get("text", "")
        return text, event.get("generated_text") is not None
    if provider == "cloudflare":
        return event.get("response") or "", False
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or "", False
