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
