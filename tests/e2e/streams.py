"""Reading the AI SDK data stream protocol in tests, strictly."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_PART = re.compile(r"^([0-9a-k]):(.*)$")


@dataclass
class Reply:
    """A parsed data stream."""

    text: str = ""
    reasoning: str = ""
    errors: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    finish: dict | None = None
    step: dict | None = None


def parse_data_stream(body: str) -> Reply:
    """Parse every line as ``CODE:JSON`` (as the AI SDK client does) and collect the parts."""
    reply = Reply()
    assert body.endswith("\n"), "every part ends with a newline"
    for line in body.split("\n"):
        if not line:
            continue
        match = _PART.match(line)
        assert match, f"not a data stream part: {line!r}"
        code, value = match.group(1), json.loads(match.group(2))
        reply.codes.append(code)
        if code == "0":
            reply.text += value
        elif code == "g":
            reply.reasoning += value
        elif code == "3":
            reply.errors.append(value)
        elif code == "e":
            reply.step = value
        elif code == "d":
            reply.finish = value
    assert reply.codes[-1] == "d", "the finish message is the last part"
    return reply


#: The UI message stream chunks this service sends, with exactly the fields each may carry
#: (ai@5.0.0 rejects any other field, and any other type).
UI_FIELDS = {
    "start": {"type", "messageId"}, "start-step": {"type"}, "finish-step": {"type"},
    "text-start": {"type", "id"}, "text-delta": {"type", "id", "delta"}, "text-end": {"type", "id"},
    "reasoning-start": {"type", "id"}, "reasoning-delta": {"type", "id", "delta"},
    "reasoning-end": {"type", "id"}, "error": {"type", "errorText"},
    "finish": {"type", "messageMetadata"},
}


@dataclass
class UIReply:
    """A parsed UI message stream."""

    chunks: list[dict] = field(default_factory=list)
    text: str = ""
    reasoning: str = ""
    errors: list[str] = field(default_factory=list)
    message_id: str | None = None
    metadata: dict | None = None


def parse_ui_stream(body: str) -> UIReply:
    """Parse ``data: {json}`` events strictly, as a 5.0 client would: known types, only their
    fields, deltas inside their open block, ``[DONE]`` last."""
    reply = UIReply()
    events = body.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]", "ends with data: [DONE]"
    open_blocks: dict[str, str] = {}
    for event in events[:-2]:
        if event.startswith(":"):
            continue   # an SSE comment (keep-alive)
        assert event.startswith("data: ") and "\n" not in event, repr(event)
        chunk = json.loads(event[len("data: "):])
        kind = chunk["type"]
        assert set(chunk) == UI_FIELDS[kind], chunk
        reply.chunks.append(chunk)
        if kind == "start":
            reply.message_id = chunk["messageId"]
        elif kind.endswith("-start") and kind != "start-step":
            open_blocks[chunk["id"]] = kind[:-len("-start")]
        elif kind.endswith("-delta"):
            assert open_blocks.get(chunk["id"]) == kind[:-len("-delta")], chunk
            if kind == "text-delta":
                reply.text += chunk["delta"]
            else:
                reply.reasoning += chunk["delta"]
        elif kind.endswith("-end") and kind != "finish-step":
            assert open_blocks.pop(chunk["id"]) == kind[:-len("-end")], chunk
        elif kind == "error":
            reply.errors.append(chunk["errorText"])
        elif kind == "finish":
            reply.metadata = chunk["messageMetadata"]
    assert reply.chunks[0]["type"] == "start"
    return reply
