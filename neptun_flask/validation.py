"""Request parsing: the one place that turns a body or query string into validated data."""
from __future__ import annotations

import json
import re
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import UnsupportedMediaType

from .errors import ApiError

#: Deepest nesting of arrays and objects a JSON body may have. Our bodies need three levels
#: (the AI SDK's extra message fields a few more); the JSON decoder recurses once per level,
#: so a body nested ~1,000 levels deep would end in a RecursionError (a 500).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_body() -> Any:
    """The decoded JSON body; None when the body is not JSON, is malformed or is nested
    deeper than MAX_JSON_DEPTH. For code that runs before a view (a rate-limit key)."""
    if not request.is_json or _too_deep(request.get_data(cache=True)):
        return None
    return request.get_json(silent=True)


def load_body(schema: Schema) -> Any:
    """Parse the JSON body with ``schema``: 415 if not JSON, 400 if malformed, nested too
    deeply or invalid."""
    if not request.is_json:
        raise UnsupportedMediaType()
    if _too_deep(request.get_data(cache=True)):
        raise ApiError(400, "JSON body nested too deeply")
    payload = request.get_json(silent=True)
    if payload is None:
        raise ApiError(400, "Malformed JSON body")
    return _load(schema, payload)


def load_args(schema: Schema) -> Any:
    """Validate the query string with ``schema`` (400 with field messages)."""
    return _load(schema, request.args.to_dict())


def _too_deep(data: bytes) -> bool:
    """Whether the body nests arrays and objects deeper than MAX_JSON_DEPTH, counted before
    decoding (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False  # fast path: too few openers to nest that deep, in any encoding
    text = data.decode(json.detect_encoding(data), "replace")
    depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def _load(schema: Schema, payload: Any) -> Any:
    """Run the schema and map its errors to the JSON error contract."""
    try:
        return schema.load(payload)
    except ValidationError as error:
        raise ApiError(400, "Validation failed", data=error.messages) from None
